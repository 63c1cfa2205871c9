"""Short headless Locust runs against a real ``modelgate serve`` (seconds each)."""

from __future__ import annotations

import csv
import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from loadtests import prometheus
from tests.e2e.server_process import ServerProcess
from tests.loadtests.conftest import WRONG_MODEL, RunModelgate

pytestmark = pytest.mark.e2e

REPORT_FILES = (
    "summary.json",
    "report.md",
    "locust_stats.csv",
    "locust_stats_history.csv",
    "locust_failures.csv",
    "locust_report.html",
    "latencies.npz",
    "latency_over_time.png",
    "throughput_over_time.png",
    "latency_histogram.png",
    "client_vs_server.png",
)


def metrics_url(gateway: ServerProcess) -> str:
    return f"http://127.0.0.1:{gateway.metrics}/metrics"


def grpc_url(gateway: ServerProcess) -> str:
    return f"grpc://127.0.0.1:{gateway.grpc}"


def gateway_count(gateway: ServerProcess, model: str, protocol: str) -> float:
    """The gateway's own ``modelgate_requests_total`` for a model and protocol, scraped by the test."""
    snapshot = prometheus.parse(httpx.get(metrics_url(gateway), timeout=5).text)
    return snapshot.total(prometheus.REQUESTS, model=model, protocol=protocol)


def csv_row(path: Path, name: str) -> dict[str, str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return next(row for row in csv.DictReader(handle) if row["Name"] == name)


def summary(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return data


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_rest_run_writes_every_file_with_consistent_counts(
    gateway: ServerProcess, run_modelgate: RunModelgate, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    before = gateway_count(gateway, "digits_mlp", "rest")
    result = run_modelgate(
        "loadtest", "--host", gateway.url, "--model", "digits_mlp", "--protocol", "rest",
        "--shape", "step:start=1,step=1,every=1,max=3", "--duration", "3", "--out", str(out),
        "--metrics-url", metrics_url(gateway),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    counted_by_gateway = gateway_count(gateway, "digits_mlp", "rest") - before
    for name in REPORT_FILES:
        assert (out / name).stat().st_size > 0, name
    for name in REPORT_FILES:
        if name.endswith(".png"):
            assert (out / name).read_bytes().startswith(b"\x89PNG"), name
    data = summary(out)
    [entry] = data["results"]
    row = csv_row(out / "locust_stats.csv", "digits_mlp [rest]")
    assert entry["requests"] > 0 and entry["failures"] == 0
    assert entry["requests"] == int(row["Request Count"]) == data["server"]["requests"] == counted_by_gateway
    assert data["server"]["by_status"] == {"200": entry["requests"]}
    assert entry["p50_ms"] <= entry["p90_ms"] <= entry["p95_ms"] <= entry["p99_ms"] <= entry["max_ms"]
    assert data["gate"] == {"passed": True, "breaches": []}
    assert data["loadgen"]["cpu_seconds"] > 0
    assert "digits_mlp [rest]" in (out / "locust_report.html").read_text(encoding="utf-8")
    assert "PASS" in result.stdout


def test_impossible_slo_fails_the_gate(gateway: ServerProcess, run_modelgate: RunModelgate, tmp_path: Path) -> None:
    slo = tmp_path / "slo.yaml"
    slo.write_text("models:\n  digits_mlp:\n    p99_ms: 0.001\n    min_rps: 1000000\n", encoding="utf-8")
    out = tmp_path / "report"
    result = run_modelgate(
        "loadtest", "--host", gateway.url, "--model", "digits_mlp", "--protocol", "binary",
        "--shape", "constant:users=2", "--duration", "2", "--out", str(out), "--slo", str(slo),
        "--metrics-url", metrics_url(gateway),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "SLO breach: digits_mlp [binary] p99_ms" in result.stdout
    assert "SLO breach: digits_mlp [binary] min_rps" in result.stdout
    data = summary(out)
    assert data["results"][0]["failures"] == 0  # the answers were right; only the bounds failed
    assert not data["gate"]["passed"]
    assert {b["metric"] for b in data["gate"]["breaches"]} == {"p99_ms", "min_rps"}


def test_wrong_answers_fail_the_response_checks(
    gateway: ServerProcess, run_modelgate: RunModelgate, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    result = run_modelgate(
        "loadtest", "--host", grpc_url(gateway), "--model", WRONG_MODEL, "--protocol", "grpc",
        "--shape", "constant:users=2", "--duration", "2", "--out", str(out), "--metrics-url", metrics_url(gateway),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"failed checks: {WRONG_MODEL} [grpc]" in result.stdout
    data = summary(out)
    [entry] = data["results"]
    row = csv_row(out / "locust_stats.csv", f"{WRONG_MODEL} [grpc]")
    assert 0 < entry["failures"] == int(row["Failure Count"]) < entry["requests"]  # images of a 0 are right
    assert data["server"]["by_status"] == {"OK": entry["requests"]}  # every call succeeded at the gRPC level
    assert any("wrong answer: expected digit" in f["error"] for f in data["failures"])


@pytest.mark.parametrize("problem", ["unknown model", "unreachable host", "malformed SLO file"])
def test_bad_arguments_are_one_clear_line(
    gateway: ServerProcess, run_modelgate: RunModelgate, tmp_path: Path, problem: str
) -> None:
    out = tmp_path / "report"
    host, model, extra, expected = gateway.url, "digits_mlp", [], ""
    if problem == "unknown model":
        model, expected = "no_such_model", "unknown model 'no_such_model'"
    elif problem == "unreachable host":
        host, expected = f"http://127.0.0.1:{closed_port()}", "cannot reach"
    else:
        slo = tmp_path / "slo.yaml"
        slo.write_text("models:\n  digits_mlp:\n    p99: 10\n", encoding="utf-8")
        extra, expected = ["--slo", str(slo)], "models.digits_mlp.p99: Extra inputs are not permitted"
    result = run_modelgate("loadtest", "--host", host, "--model", model, "--out", str(out), *extra)
    assert result.returncode == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert not out.exists()


def test_compare_runs_targets_side_by_side_open_loop(
    gateway: ServerProcess, run_modelgate: RunModelgate, tmp_path: Path
) -> None:
    out = tmp_path / "bench"
    result = run_modelgate(
        "loadtest-compare", "--model", "digits_mlp",
        "--target", f"rest=rest@{gateway.url}", "--target", f"grpc=grpc@{grpc_url(gateway)}",
        "--shape", "poisson:rps=60,users=4", "--duration", "2", "--out", str(out),
        "--metrics-url", metrics_url(gateway),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rps x" in result.stdout and "ratios are relative to rest" in result.stdout
    comparison = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    rest, grpc = comparison["targets"]
    assert (rest["label"], grpc["label"]) == ("rest", "grpc")
    assert rest["rps_ratio"] == pytest.approx(1.0)
    assert grpc["rps_ratio"] == pytest.approx(grpc["rps"] / rest["rps"])
    for label in ("rest", "grpc"):
        data = summary(out / label)
        [entry] = data["results"]
        assert entry["requests"] == data["server"]["requests"] > 0
        assert data["open_loop"]["claimed"] >= entry["requests"]
        assert entry["intended_latency_ms"]["p50"] >= entry["p50_ms"]


def test_tfs_rest_wrong_digits_fail_the_checks(
    gateway: ServerProcess, run_modelgate: RunModelgate, tmp_path: Path
) -> None:
    """Right answers over TF Serving REST are covered by the every-protocol test; here wrong ones must fail."""
    wrong = tmp_path / "wrong"
    bad = run_modelgate(
        "loadtest", "--host", gateway.url, "--model", WRONG_MODEL, "--protocol", "tfs", "--batch-size", "4",
        "--shape", "constant:users=2", "--duration", "2", "--out", str(wrong), "--metrics-url", metrics_url(gateway),
    )  # fmt: skip
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"failed checks: {WRONG_MODEL} [tfs]" in bad.stdout
    data = summary(wrong)
    assert data["run"]["answers_checked"] == "digits"
    assert data["server"]["by_status"] == {"200": data["results"][0]["requests"]}
