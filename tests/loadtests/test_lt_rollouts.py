"""``modelgate loadtest-rollouts``: rollouts under steady Locust load on a real gateway, judged by its history.

The end-to-end test serves the demo MLP as version 1 and, as candidates, real ONNX versions built
from it (``tests/lifecycle_models.py``): two good copies, one that fails on real digits, one that
answers differently (caught in a shadow phase), and one whose artifact is not an ONNX model. Every
rollout step advances on request counts (``min_requests``), never on seconds. The report must name
exactly the rollouts and rollbacks the gateway's history records, and count failed requests as the
gateway's metrics do.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from loadtests import prometheus
from loadtests.errors import LoadTestError
from loadtests.rollout_plan import Expect, load_plan
from loadtests.rollout_report import RolloutRow, client_counts, evaluate, failed_status, server_counts, success_rate
from loadtests.slo import RolloutBounds, load_slo_file
from loadtests.stats import Samples
from tests.e2e.server_process import ServerProcess
from tests.lifecycle_models import add_variant
from tests.loadtests.conftest import RunModelgate
from tests.onnx_models import write_digits_repo

MODEL = "digits_mlp"
POLL_ENV = {"MODELGATE_DEPLOYMENT_POLL_SECONDS": "0.2"}
PLAN: dict[str, Any] = {
    "defaults": {
        "steps": [20, 50, 100], "min_requests": 15,
        # only the error rate (and the shadow's disagreement) decide here: latency on a busy machine is noise
        "slo": {"max_error_rate": 0.05, "max_p99_ratio": None},
    },
    "rollouts": [
        {"version": 2, "expect": "good"},
        {"version": 3, "expect": "errors"},
        {"version": 4, "expect": "fails_to_load"},
        {"version": 5, "expect": "wrong",
         "plan": {"shadow": {"share": 1.0, "min_requests": 15}, "slo": {"max_disagreement": 0.02}}},
        {"version": 6, "expect": "good"},
    ],
}  # fmt: skip
TERMINAL = {"rollout_promote": "promoted", "rollout_rollback": "rolled_back"}


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# -- the plan file and the gate (no gateway) -------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ({"rollouts": []}, "rollouts: List should have at least 1 item"),
        ({"rollouts": [{"version": 2, "expect": "fine"}]}, "rollouts.0.expect: Input should be 'good'"),
        ({"rollouts": [{"version": 2, "expect": "good", "plan": {"version": 3}}]}, "'version' is set by the rollout"),
        ({"defaults": {"steps": [50, 10]}, "rollouts": [{"version": 2, "expect": "good"}]}, "steps must increase"),
        ({"defaults": {"stepz": [100]}, "rollouts": [{"version": 2, "expect": "good"}]}, "stepz"),
        ({"rollouts": [{"version": 2, "expect": "good"}], "extra": 1}, "extra: Extra inputs are not permitted"),
    ],
)
def test_a_bad_plan_file_is_refused_naming_the_field(tmp_path: Path, plan: dict[str, Any], message: str) -> None:
    with pytest.raises(LoadTestError) as caught:
        load_plan(write_yaml(tmp_path / "plan.yaml", plan))
    assert message in str(caught.value) and str(caught.value).startswith("--plan ")


def test_each_expectation_maps_to_an_outcome_and_reasons(tmp_path: Path) -> None:
    plan = load_plan(write_yaml(tmp_path / "plan.yaml", PLAN))
    assert [r.expect.outcome for r in plan.rollouts] == [
        "promoted", "rolled_back", "failed_to_load", "rolled_back", "promoted",
    ]  # fmt: skip
    assert Expect.SLOW.reasons == {"latency"} and Expect.ERRORS.reasons == {"error_rate"}
    assert plan.body(3)["shadow"] == {"share": 1.0, "min_requests": 15} and plan.body(3)["version"] == "5"
    assert plan.body(0)["min_requests"] == 15 and "shadow" not in plan.body(0)


def row(expect: str, outcome: str, *, reason: str | None = None, failed: tuple[int, int] = (0, 0),
        seconds: float | None = 1.0) -> RolloutRow:  # fmt: skip
    e = Expect(expect)
    as_expected = outcome == e.outcome and (outcome != "rolled_back" or reason in e.reasons)
    return RolloutRow(0, 2, expect, e.outcome, sorted(e.reasons), outcome, "", reason, as_expected, seconds, 1, 1.0,
                      10, failed[0], 10, failed[1], 0, [], 200)  # fmt: skip


def test_the_gate_checks_every_rollout_bound() -> None:
    rows = [
        row("good", "promoted", failed=(0, 1), seconds=30.0),
        row("errors", "rolled_back", reason="error_rate", failed=(5, 5)),
        row("slow", "promoted"),
        row("good", "rolled_back", reason="latency"),
    ]
    bounds = RolloutBounds(max_failed_requests_good_rollout=0, max_failed_requests_bad_rollout=3,
                           max_rollout_seconds=20, min_success_rate=1.0)  # fmt: skip
    rate = success_rate(rows)
    assert rate == 0.5
    messages = [str(b) for b in evaluate(bounds, rows, rate)]
    assert messages == [
        "SLO breach: rollouts max_failed_requests_good_rollout: version 2 (good, rollout 1) 1 failed requests > 0",
        "SLO breach: rollouts max_rollout_seconds: version 2 (good, rollout 1) 30 s > 20 s",
        "SLO breach: rollouts max_failed_requests_bad_rollout: version 2 (errors, rollout 1) 5 failed requests > 3",
        "SLO breach: rollouts outcomes_as_expected: version 2 (slow, rollout 1) expected rolled_back (latency), "
        "got promoted",
        "SLO breach: rollouts outcomes_as_expected: version 2 (good, rollout 1) expected promoted, "
        "got rolled_back (latency)",
        "SLO breach: rollouts min_success_rate: 0.5 < 1",
    ]
    assert evaluate(RolloutBounds(outcomes_as_expected=False), rows, rate) == []


def test_the_slo_file_takes_a_rollouts_section_and_refuses_unknown_keys(tmp_path: Path) -> None:
    good = write_yaml(tmp_path / "slo.yaml", {"rollouts": {"max_failed_requests_good_rollout": 0}})
    assert load_slo_file(good).rollouts == RolloutBounds(max_failed_requests_good_rollout=0)
    bad = write_yaml(tmp_path / "bad.yaml", {"rollouts": {"max_failed_requests": 0}})
    with pytest.raises(LoadTestError, match=r"rollouts\.max_failed_requests: Extra inputs are not permitted"):
        load_slo_file(bad)


def test_failed_requests_are_the_non_2xx_statuses_between_two_scrapes() -> None:
    before = prometheus.parse('modelgate_requests_total{model="m",protocol="rest",status="200"} 10\n')
    after = prometheus.parse(
        'modelgate_requests_total{model="m",protocol="rest",status="200"} 25\n'
        'modelgate_requests_total{model="m",protocol="rest",status="500"} 3\n'
        'modelgate_requests_total{model="m",protocol="grpc",status="INTERNAL"} 7\n'
        'modelgate_requests_total{model="other",protocol="rest",status="500"} 9\n'
    )
    counts = server_counts(before, after, "m", "rest")
    assert (counts.requests, counts.failed) == (18, 3)
    assert [failed_status(s) for s in ("200", "204", "OK", "500", "429", "INTERNAL")] == [
        False, False, False, True, True, True,
    ]  # fmt: skip


def test_the_client_counts_a_request_in_the_window_it_was_sent_in() -> None:
    # sent at 9.5 s (answered at 10.5 s), 10.2 s, 11.9 s (answered at 12.4 s, after the window), 12.0 s
    samples = Samples(
        response_ms=np.array([1000.0, 100.0, 500.0, 10.0]),
        success=np.array([False, True, False, False]),
        lag_ms=np.zeros(4),
        end_s=np.array([10.5, 10.3, 12.4, 12.01]),
    )
    counts = client_counts(samples, 10.0, 12.0)
    assert (counts.requests, counts.failed) == (2, 1)


# -- end to end: a real gateway, real ONNX versions, real Locust -------------------------------------


@pytest.fixture
def rollout_gateway(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    repo = tmp_path / "repo"
    model_dir = write_digits_repo(repo)
    config = model_dir / "config.yaml"
    config.write_text(config.read_text().replace("{latest: 1}", "{specific: [1]}"))  # candidates only by rollout
    for version, kind in ((2, "same"), (3, "errors"), (5, "wrong"), (6, "same")):
        add_variant(repo, version, kind)
    (model_dir / "4").mkdir()
    (model_dir / "4" / "model.onnx").write_bytes(b"this is not an ONNX model")
    with ServerProcess(repo, env=POLL_ENV) as server:
        yield server, repo
        server.terminate()
    shutil.rmtree(repo / ".modelgate", ignore_errors=True)


def gateway_failed(server: ServerProcess) -> tuple[int, int]:
    """The gateway's own requests and failed requests for the model over V2 REST, scraped by the test."""
    snapshot = prometheus.parse(httpx.get(f"http://127.0.0.1:{server.metrics}/metrics", timeout=5).text)
    samples = list(snapshot.select(prometheus.REQUESTS, {"model": MODEL, "protocol": "rest"}))
    total = sum(s.value for s in samples)
    failed = sum(s.value for s in samples if not (s.labels["status"].startswith("2")))
    return round(total), round(failed)


def history_outcomes(server: ServerProcess) -> list[tuple[str, str, str, Any]]:
    """(version, outcome, reason, duration) of every finished deployment attempt, read from the gateway's API."""
    records = httpx.get(f"{server.management_url}/api/history?model={MODEL}", timeout=10).json()["records"]
    out = []
    for r in records:
        if r["action"] in TERMINAL:
            out.append((r["version"], TERMINAL[r["action"]], r["reason"], r["duration_seconds"]))
        elif r["action"] == "rollout_load" and r["outcome"] == "failed":
            out.append((r["version"], "failed_to_load", r["reason"], r["duration_seconds"]))
    return out


@pytest.mark.e2e
def test_rollouts_under_load_report_what_the_gateway_recorded(
    rollout_gateway: tuple[ServerProcess, Path], run_modelgate: RunModelgate, tmp_path: Path
) -> None:
    server, _ = rollout_gateway
    plan = write_yaml(tmp_path / "plan.yaml", PLAN)
    slo = write_yaml(tmp_path / "slo.yaml", {"rollouts": {"max_failed_requests_good_rollout": 0,
                                                          "min_success_rate": 1.0}})  # fmt: skip
    out = tmp_path / "report"
    requests_before, failed_before = gateway_failed(server)
    result = run_modelgate(
        "loadtest-rollouts", "--host", server.url, "--model", MODEL, "--protocol", "binary",
        "--shape", "rate:rps=80,users=8", "--plan", str(plan), "--deploy-url", server.management_url,
        "--metrics-url", f"http://127.0.0.1:{server.metrics}/metrics", "--slo", str(slo),
        "--warmup-requests", "20", "--settle-requests", "60", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    requests_after, failed_after = gateway_failed(server)
    report = json.loads((out / "rollouts.json").read_text(encoding="utf-8"))
    rows = report["rollouts"]
    for name in ("rollouts.md", "timeline.png", "report.md", "summary.json"):
        assert (out / name).stat().st_size > 0, name

    # exactly the rollouts and rollbacks the gateway's own history records, reasons and times verbatim
    recorded = history_outcomes(server)
    assert [(str(r["version"]), r["outcome"], r["reason"], r["time_to_roll_out_s"]) for r in rows] == recorded
    assert [(v, o) for v, o, _, _ in recorded] == [
        ("2", "promoted"), ("3", "rolled_back"), ("4", "failed_to_load"), ("5", "rolled_back"), ("6", "promoted"),
    ]  # fmt: skip
    assert [r["rollback_reason"] for r in rows] == [None, "error_rate", None, "disagreement", None]
    assert all(r["as_expected"] for r in rows)
    assert report["success_rate"] == 1.0 and report["rollbacks"] == 2 and report["gate"]["passed"]

    # failed requests counted as the gateway's metrics count them, per window and over the run
    assert report["totals"]["server_requests"] == requests_after - requests_before
    assert report["totals"]["server_failed"] == failed_after - failed_before
    assert report["totals"]["client_requests"] == report["totals"]["server_requests"]
    assert report["totals"]["client_failed"] == report["totals"]["server_failed"]
    assert [r["server_failed"] for r in rows] == [r["client_failed"] for r in rows]
    assert report["before_first_rollout"]["server_failed"] + sum(r["server_failed"] for r in rows) == (
        failed_after - failed_before
    )
    failed = [r["server_failed"] for r in rows]
    assert failed[0] == failed[2] == failed[3] == failed[4] == 0 and failed[1] >= 1
    assert rows[1]["gateway_rollout_failed"] >= 1
    page = (out / "rollouts.md").read_text(encoding="utf-8")
    assert recorded[1][2] in page and "deployment success rate: 100% (2 of 2 good rollouts promoted)" in page


EXAMPLES = Path(__file__).resolve().parents[2] / "loadtests"


def test_the_example_plan_and_slo_files_are_valid() -> None:
    plan = load_plan(EXAMPLES / "rollouts.example.yaml")
    assert {r.expect for r in plan.rollouts} == set(Expect)
    bounds = load_slo_file(EXAMPLES / "slo.example.yaml").rollouts
    assert bounds is not None and bounds.max_failed_requests_good_rollout == 0


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("extra", "plan", "message"),
    [
        ((), {"rollouts": [{"version": 2}]}, "--plan {plan}: rollouts.0.expect: Field required"),
        (("--model-version", "1"), PLAN, "--model-version: not for rollouts"),
        (("--settle-requests", "0"), PLAN, "--settle-requests must be at least 1, got 0"),
        ((), PLAN, "deployment API http://127.0.0.1:{port} unreachable"),
    ],
)
def test_unusable_arguments_exit_2_with_one_line_before_any_load(
    run_modelgate: RunModelgate, tmp_path: Path, extra: tuple[str, ...], plan: dict[str, Any], message: str
) -> None:
    plan_file = write_yaml(tmp_path / "plan.yaml", plan)
    port = closed_port()
    out = tmp_path / "report"
    result = run_modelgate(
        "loadtest-rollouts", "--host", f"http://127.0.0.1:{closed_port()}", "--model", MODEL, "--plan", str(plan_file),
        "--deploy-url", f"http://127.0.0.1:{port}", "--out", str(out), *extra,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("modelgate loadtest-rollouts: error: ")
    assert message.format(plan=plan_file, port=port) in lines[0] and "Traceback" not in result.stderr
    assert not out.exists()  # refused before any load (nothing written)


@pytest.mark.e2e
def test_a_wrong_management_token_exits_2_before_any_load(
    demo_repo: Path, run_modelgate: RunModelgate, tmp_path: Path
) -> None:
    token_file = tmp_path / "token.txt"
    token_file.write_text("not-the-token\n", encoding="utf-8")
    out = tmp_path / "report"
    with ServerProcess(demo_repo, env={"MODELGATE_MANAGEMENT_TOKEN": "s3cret-token"}) as server:
        requests_before, _ = gateway_failed(server)
        result = run_modelgate(
            "loadtest-rollouts", "--host", server.url, "--model", MODEL,
            "--plan", str(write_yaml(tmp_path / "plan.yaml", PLAN)), "--deploy-url", server.management_url,
            "--metrics-url", f"http://127.0.0.1:{server.metrics}/metrics", "--token-file", str(token_file),
            "--out", str(out),
        )  # fmt: skip
        requests_after, _ = gateway_failed(server)
        server.terminate()
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (
        f"modelgate loadtest-rollouts: error: deployment API {server.management_url}: missing or wrong token "
        "(--token-file or $MODELGATE_MANAGEMENT_TOKEN)"
    )
    assert "s3cret" not in result.stderr and not out.exists() and requests_after == requests_before
