"""Latency versus load: a real concurrency sweep against a gateway, and the rate stepping logic on its own."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from loadtests.config import Protocol
from loadtests.errors import LoadTestError
from loadtests.loadgen import LoadgenStats
from loadtests.report import RunReport
from loadtests.runner import RunOptions
from loadtests.stats import ClientStats
from loadtests.sweep import SweepPlan, check_plan, knee, saturation_rate, sweep_rates, users_for_rate
from tests.e2e.server_process import ServerProcess
from tests.loadtests.conftest import RunModelgate
from tests.loadtests.test_lt_e2e import gateway_count, metrics_url


@pytest.mark.e2e
def test_concurrency_sweep_writes_one_row_per_level_with_consistent_counts(
    gateway: ServerProcess, run_modelgate: RunModelgate, tmp_path: Path
) -> None:
    out = tmp_path / "sweep"
    before = gateway_count(gateway, "digits_mlp", "rest")
    result = run_modelgate(
        "loadtest-sweep", "--host", gateway.url, "--model", "digits_mlp", "--protocol", "binary",
        "--users", "1,3", "--duration", "2", "--out", str(out), "--metrics-url", metrics_url(gateway),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((out / "sweep.json").read_text(encoding="utf-8"))
    rows = data["sweeps"]["users"]["levels"]
    assert [r["level"] for r in rows] == [1.0, 3.0]
    with (out / "sweep_users.csv").open(newline="", encoding="utf-8") as handle:
        assert [int(float(r["level"])) for r in csv.DictReader(handle)] == [1, 3]
    for row in rows:
        level = json.loads((out / row["folder"] / "summary.json").read_text(encoding="utf-8"))
        [entry] = level["results"]
        assert level["run"]["shape"] == f"constant:users={int(row['level'])}"
        assert row["requests"] == entry["requests"] == level["server"]["requests"] == row["server_requests"] > 0
        assert row["failures"] == 0
    assert sum(r["requests"] for r in rows) == gateway_count(gateway, "digits_mlp", "rest") - before
    assert data["sweeps"]["users"]["saturation"]["level"] in (1.0, 3.0)
    assert (out / "sweep_users.png").read_bytes().startswith(b"\x89PNG")
    assert "◀ knee" in (out / "sweep.md").read_text(encoding="utf-8")


def fake_report(offered: float, capacity: float, base_ms: float = 2.0) -> RunReport:
    """What a server of ``capacity`` req/s would measure at ``offered`` req/s: queueing beyond capacity."""
    achieved = min(offered, capacity)
    p99 = base_ms if offered <= capacity else base_ms * 100
    client = ClientStats(
        requests=int(achieved * 10), failures=0, error_rate=0.0, rps=achieved,
        latency_ms={"p50": base_ms / 2, "p95": base_ms, "p99": p99}, mean_ms=base_ms, locust_latency_ms={},
        intended_latency_ms={"p99": p99},
    )  # fmt: skip
    loadgen = LoadgenStats(cpu_seconds=1.0, wall_seconds=10.0, mean_percent=20.0, max_percent=30.0)
    return RunReport({"shape": f"rate:rps={offered:g}"}, client, None, loadgen, {"late_fraction": 0.0}, [], [])


def test_rate_steps_up_to_saturation_then_bisects(tmp_path: Path) -> None:
    offered: list[float] = []

    def runner(options: RunOptions) -> RunReport:
        rate = float(options.shape.split("rps=")[1].split(",")[0])
        offered.append(rate)
        return fake_report(rate, capacity=700.0)

    base = RunOptions("http://h:1", "m", Protocol.REST, "constant:users=1", 1.0, tmp_path)
    plan = SweepPlan(rate_start=100, rate_factor=2, p99_ms=10, refine=2)
    rows = sweep_rates(base, plan, runner)
    assert offered == [100, 200, 400, 800, 600, 700]  # stops at the first miss, then bisects twice
    assert [r.level for r in rows] == sorted(offered)
    best = saturation_rate(rows)
    assert best is not None and best.level == 700 and not rows[-1].meets_bound


def test_knee_is_the_smallest_level_near_the_best_throughput(tmp_path: Path) -> None:
    def runner(options: RunOptions) -> RunReport:
        return fake_report(float(options.shape.split("=")[1]) * 100, capacity=1000.0)

    from loadtests.sweep import sweep_users

    base = RunOptions("http://h:1", "m", Protocol.REST, "constant:users=1", 1.0, tmp_path)
    rows = sweep_users(base, SweepPlan(users=(1, 8, 32, 64)), runner)
    assert [r.rps for r in rows] == [100, 800, 1000, 1000]
    marked = knee(rows)
    assert marked is not None and marked.level == 32


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (SweepPlan(), "give --users and/or --rates"),
        (SweepPlan(rates=(100,)), "needs --p99-ms"),
        (SweepPlan(users=(1,), rate_factor=1.0), "--rate-factor must be above 1"),
    ],
)
def test_bad_plans_are_clear_errors(plan: SweepPlan, message: str) -> None:
    with pytest.raises(LoadTestError, match=message):
        check_plan(plan)


def test_open_loop_levels_get_enough_users() -> None:
    plan = SweepPlan(rates=(1,), p99_ms=50)
    assert users_for_rate(10, plan) == 8
    assert users_for_rate(1000, plan) == 200
    assert users_for_rate(1000, replace(plan, rate_users=5)) == 5
    assert np.isfinite(users_for_rate(10**9, plan))
