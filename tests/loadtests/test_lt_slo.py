"""The SLO file format and the release gate's evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.config import Protocol
from loadtests.errors import LoadTestError
from loadtests.slo import Bounds, check_failures, evaluate, load_slo_file
from loadtests.stats import ClientStats

EXAMPLE = Path(__file__).resolve().parents[2] / "loadtests" / "slo.example.yaml"


def stats(requests: int = 1000, failures: int = 0, rps: float = 500.0, p99: float = 8.0) -> ClientStats:
    latency: dict[str, float | None] = {"p50": 1.0, "p90": 3.0, "p95": 5.0, "p99": p99, "max": 40.0}
    return ClientStats(
        requests=requests,
        failures=failures,
        error_rate=failures / requests if requests else 0.0,
        rps=rps,
        latency_ms=latency,
        mean_ms=1.5,
        locust_latency_ms={"p50": 1.0, "p90": 3.0, "p95": 5.0, "p99": round(p99), "max": 40.0},
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "slo.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_file_is_valid() -> None:
    slo = load_slo_file(EXAMPLE)
    assert slo.bounds_for("digits_mlp", Protocol.REST) is not None


def test_protocol_overrides_and_default(tmp_path: Path) -> None:
    slo = load_slo_file(
        write(
            tmp_path,
            "default: {max_error_rate: 0.0}\n"
            "models:\n  digits_mlp:\n    p99_ms: 50\n    min_rps: 100\n    protocols:\n      grpc: {p99_ms: 20}\n",
        )
    )
    assert slo.bounds_for("digits_mlp", Protocol.REST) == Bounds(p99_ms=50, min_rps=100)
    assert slo.bounds_for("digits_mlp", Protocol.GRPC) == Bounds(p99_ms=20, min_rps=100)
    assert slo.bounds_for("other", Protocol.REST) == Bounds(max_error_rate=0.0)


def test_model_without_slo_and_no_default_has_no_bounds(tmp_path: Path) -> None:
    slo = load_slo_file(write(tmp_path, "models:\n  digits_mlp: {p95_ms: 10}\n"))
    assert slo.bounds_for("other", Protocol.REST) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: [\n", r"not valid YAML at line 2"),
        ("models:\n  digits_mlp:\n    p95: 3\n", r"models\.digits_mlp\.p95: Extra inputs"),
        ("models:\n  digits_mlp: {p99_ms: -1}\n", r"models\.digits_mlp\.p99_ms: Input should be greater than 0"),
        ("models:\n  digits_mlp: {max_error_rate: 2}\n", r"max_error_rate"),
        ("models:\n  m: {protocols: {http2: {p99_ms: 3}}}\n", r"models\.m\.protocols\.http2"),
        ("- just a list\n", r"expected a mapping"),
        ("slos: {}\n", r"slos: Extra inputs"),
    ],
)
def test_malformed_file_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(LoadTestError, match=message):
        load_slo_file(write(tmp_path, text))


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LoadTestError, match="cannot read"):
        load_slo_file(tmp_path / "absent.yaml")


def test_run_within_bounds_passes() -> None:
    bounds = Bounds(p95_ms=10, p99_ms=10, max_error_rate=0.01, min_rps=100)
    assert evaluate("m", Protocol.REST, bounds, stats()) == []


def test_each_breached_bound_is_reported() -> None:
    bounds = Bounds(p95_ms=2, p99_ms=5, max_error_rate=0.001, min_rps=1000)
    breaches = evaluate("m", Protocol.GRPC, bounds, stats(failures=10, p99=8.0))
    assert [b.metric for b in breaches] == ["p95_ms", "p99_ms", "max_error_rate", "min_rps"]
    assert str(breaches[1]) == "SLO breach: m [grpc] p99_ms: 8 > 5"
    assert str(breaches[3]) == "SLO breach: m [grpc] min_rps: 500 < 1000"


def test_empty_run_breaches_rather_than_passes() -> None:
    empty = ClientStats(
        requests=0,
        failures=0,
        error_rate=0.0,
        rps=0.0,
        latency_ms={"p50": None, "p90": None, "p95": None, "p99": None, "max": None},
        mean_ms=None,
        locust_latency_ms={},
    )
    breaches = evaluate("m", Protocol.REST, Bounds(p99_ms=5, max_error_rate=0.5, min_rps=1), empty)
    assert [(b.metric, b.actual) for b in breaches] == [("p99_ms", None), ("max_error_rate", None), ("min_rps", 0.0)]
    assert str(breaches[0]) == "SLO breach: m [rest] p99_ms: no data > 5"


def test_failed_checks_gate_applies_without_an_error_bound() -> None:
    assert check_failures("m", Protocol.REST, None, stats()) == []
    [breach] = check_failures("m", Protocol.REST, None, stats(failures=3))
    assert str(breach) == "failed checks: m [rest] 3 responses failed their checks"
    assert check_failures("m", Protocol.REST, Bounds(max_error_rate=0.01), stats(failures=3)) == []
    [empty] = check_failures("m", Protocol.REST, Bounds(p99_ms=3), stats(requests=0))
    assert "completed no requests" in str(empty)
