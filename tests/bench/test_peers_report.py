"""The peer benchmark's parsing, ratios, verdict and docs section (no server is started, nothing is timed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.peers.envs import PINS, env_for
from bench.peers.load import Point, points
from bench.peers.report import (
    BEGIN,
    END,
    Row,
    best_peer,
    console_table,
    markdown_section,
    markdown_table,
    ratios,
    replace_section,
    verdicts,
)
from bench.v2_overhead import parse_h2load, parse_wrk

# wrk 4.1 with the WRK_DONE hook (its percentile line is in microseconds).
WRK_OUT = """Running 1s test @ http://127.0.0.1:18979/
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.67ms    3.15ms  26.16ms   89.54%
    Req/Sec     0.95k   207.79     1.36k    60.00%
  951 requests in 1.02s, 515.43KB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:    936.00
Transfer/sec:    507.30KB
PERCENTILES 1427 8266 16728
"""

H2LOAD_OUT = """finished in 3.05s, 202.67 req/s, 64.52KB/s
requests: 608 total, 608 started, 608 done, 607 succeeded, 1 failed, 0 errored, 0 timeout
status codes: 607 2xx, 0 3xx, 0 4xx, 1 5xx
"""


def test_parse_wrk_reads_rate_percentiles_and_every_kind_of_error() -> None:
    figures = parse_wrk(WRK_OUT)
    assert figures.rps == 936.0
    assert (figures.p50_ms, figures.p95_ms, figures.p99_ms) == (1.427, 8.266, 16.728)
    assert figures.errors == 7 + 3  # non-2xx plus socket errors


def test_parse_wrk_rejects_output_without_the_percentile_line() -> None:
    with pytest.raises(RuntimeError, match="unexpected wrk output"):
        parse_wrk(WRK_OUT.replace("PERCENTILES 1427 8266 16728\n", ""))


def test_parse_h2load_takes_its_rate_and_the_log_percentiles() -> None:
    # 100 requests of 1..100 ms (log: start µs, status, duration µs), one of them a 503.
    log = "".join(f"{i}\t{503 if i == 50 else 200}\t{i * 1000}\n" for i in range(1, 101))
    figures = parse_h2load(H2LOAD_OUT, log)
    assert figures.rps == 202.67
    assert figures.p50_ms == pytest.approx(50.5)
    assert 94.0 < figures.p95_ms < 96.0 and 98.0 < figures.p99_ms < 100.0
    assert figures.errors == 1


def test_parse_h2load_refuses_responses_it_could_not_read() -> None:
    log = "".join(f"{i}\t0\t{i * 1000}\n" for i in range(1, 11))
    with pytest.raises(RuntimeError, match="could not parse"):
        parse_h2load(H2LOAD_OUT, log)


def _rows() -> list[Row]:
    return [
        Row("gateway", "V2 JSON", "c=8", 4000.0, 1.5, 2.5, 3.0),
        Row("mlserver", "V2 JSON", "c=8", 1000.0, 6.0, 8.0, 12.0),
        Row("kserve", "V2 JSON", "c=8", 800.0, 7.0, 9.0, 10.0),
        Row("bentoml", "V2 JSON", "c=8", 5000.0, 1.0, 2.0, 2.5, errors=3),  # errors: never the best peer
        Row("gateway", "V2 JSON", "c=32", 3000.0, 9.0, 20.0, 40.0),
        Row("mlserver", "V2 JSON", "c=32", 1000.0, 30.0, 32.0, 35.0),
        Row("rayserve", "V2 JSON", "all", note="not run: its virtualenv is not built"),
    ]


def test_ratios_are_against_the_gateway_at_the_same_point() -> None:
    rows = _rows()
    assert ratios(rows[1], rows[0]) == (0.25, 4.0)
    assert ratios(rows[-1], rows[0]) == (None, None)
    assert ratios(rows[1], None) == (None, None)


def test_best_peer_ignores_the_gateway_floors_and_peers_with_errors() -> None:
    rows = _rows()
    peers = {"mlserver", "kserve", "bentoml", "rayserve"}
    best = best_peer(rows, peers, "V2 JSON", "c=8")
    assert best is not None and best.target == "mlserver"
    assert best_peer(rows, peers, "V2 gRPC", "c=8") is None


def test_verdict_needs_four_times_the_throughput_and_a_lower_p99() -> None:
    c8, c32 = verdicts(_rows(), {"mlserver", "kserve", "bentoml"}, "V2 JSON")
    assert "4.00x the best peer (mlserver" in c8 and "-> meets" in c8
    assert "3.00x" in c32 and "MISSES" in c32  # 3x, and p99 40 ms against 35 ms
    assert verdicts(_rows(), {"mlserver"}, "V2 gRPC")[0].endswith("no verdict (gateway or every peer missing)")


def test_a_gateway_with_two_workers_gets_its_own_verdicts() -> None:
    rows = [
        *_rows(),
        *(
            Row("gateway-w2", "V2 JSON", r.point, (r.rps or 0) * 2, r.p50_ms, r.p95_ms, r.p99_ms)
            for r in _rows()
            if r.target == "gateway" and r.protocol == "V2 JSON"
        ),
    ]
    lines = verdicts(rows, {"mlserver", "kserve", "bentoml"}, "V2 JSON")
    assert len(lines) == 4 and lines[2].startswith("V2 JSON c=8: gateway-w2") and "8.00x" in lines[2]
    assert len(verdicts(rows, {"mlserver"}, "V2 gRPC")) == 2  # no gateway-w2 rows on gRPC: no lines for it


def test_tables_show_figures_ratios_and_reasons() -> None:
    rows = _rows()
    text = console_table(rows)
    assert "0.25x" in text and "4.00x" in text
    assert text.splitlines()[-1] == "rayserve  V2 JSON  all  not run: its virtualenv is not built"
    md = markdown_table(rows)
    assert md[0].startswith("| target | protocol | load | req/s |")
    assert "| mlserver | V2 JSON | c=8 | 1,000 | 6.00 | 8.00 | 12.00 | 0 | 0.25x | 4.00x |" in md
    assert "| rayserve | V2 JSON | all | *not run: its virtualenv is not built* |" in md[-1]


def test_docs_section_is_appended_once_then_replaced_in_place() -> None:
    doc = "# Performance\n\nIntro.\n\n## Later section\n\nKept.\n"
    first = replace_section(doc, markdown_section(_rows(), ["Measured today."], ["- gateway"], ["ok"], ["how"]))
    assert first.startswith(doc.rstrip("\n")) and first.count(BEGIN) == 1 and "Measured today." in first
    second = replace_section(first, markdown_section(_rows()[:2], ["Measured again."], [], [], []))
    assert second.count(BEGIN) == 1 and second.count(END) == 1
    assert "Measured again." in second and "Measured today." not in second
    assert second.startswith(doc.rstrip("\n"))


def test_points_label_concurrency_and_rate() -> None:
    assert [p.label for p in points([1, 8], 200)] == ["c=1", "c=8", "200/s"]
    assert points([32], 0) == [Point(concurrency=32)]


def test_a_peer_venv_is_reused_only_when_built_with_the_same_pins(tmp_path: Path) -> None:
    env = env_for("mlserver", tmp_path)
    assert not env.ready()
    env.python.parent.mkdir(parents=True)
    env.python.write_text("")
    env.stamp.write_text(env.wanted())
    assert env.ready()
    env.stamp.write_text("mlserver==0.0.1\n")
    assert not env.ready()
    assert all(any(pin.startswith("onnxruntime==") for pin in pins) for pins in PINS.values())
