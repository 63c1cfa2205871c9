"""Latency versus load: one run per load level, a table and plots, and the saturation point.

Two kinds of sweep, both made of ordinary runs (each level has its own report folder):

- **concurrency** (closed loop): ``constant:users=N`` for each N of ``--users``. Throughput grows with
  N until the server saturates; the *knee* is the smallest N that reaches 95% of the highest
  throughput measured, and beyond it more users only add queueing latency;
- **rate** (open loop): ``rate:rps=R`` (or Poisson) for rising R, given as ``--rates`` or as steps
  from ``--rate-start`` multiplied by ``--rate-factor`` until a level misses the bound. A level
  *meets* the bound when its p99 from the scheduled send time (so queueing in front of a busy
  server counts) is within ``--p99-ms``, no request failed, and the achieved rate is at least 90%
  of the offered one. The saturation point is the highest rate that met it; with ``--refine`` the
  gap between it and the first miss is bisected.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from loadtests.errors import LoadTestError
from loadtests.report import RunReport, build_report, finite, write_report
from loadtests.runner import RunOptions, execute
from loadtests.slo import SloFile

#: A level counts as saturated throughput when it reaches this share of the highest one measured.
KNEE_SHARE = 0.95
#: An open-loop level must achieve this share of the offered rate to meet the bound.
MIN_ACHIEVED_SHARE = 0.9
MAX_RATE_LEVELS = 12
MAX_USERS = 1_000


@dataclass(frozen=True)
class SweepPlan:
    """What to sweep; ``users`` and ``rates`` may both be given (two sweeps, one command)."""

    users: tuple[int, ...] = ()
    rates: tuple[float, ...] = ()
    rate_start: float | None = None
    rate_factor: float = 2.0
    rate_max: float = 50_000.0
    p99_ms: float | None = None
    poisson: bool = False
    rate_users: int | None = None
    refine: int = 0


@dataclass(frozen=True)
class Level:
    """One row of the table: a load level and what it measured."""

    kind: str
    level: float
    shape: str
    requests: int
    failures: int
    error_rate: float
    rps: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    intended_p99_ms: float | None
    server_requests: int | None
    server_p50_ms: float | None
    server_p99_ms: float | None
    loadgen_cpu_percent: float
    late_fraction: float | None
    meets_bound: bool | None
    folder: str

    def bound_p99(self) -> float | None:
        """The p99 judged against the bound: from the scheduled send time in open loop."""
        return self.intended_p99_ms if self.kind == "rate" and self.intended_p99_ms is not None else self.p99_ms


def parse_list(text: str, flag: str, cast: Callable[[str], float]) -> tuple[Any, ...]:
    """``1,8,32`` as numbers; every value positive."""
    try:
        values = tuple(cast(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise LoadTestError(f"{flag} {text!r}: expected comma-separated numbers, e.g. 1,8,32,64") from None
    if not values or any(v <= 0 for v in values):
        raise LoadTestError(f"{flag} {text!r}: every value must be positive")
    return values


def check_plan(plan: SweepPlan) -> None:
    if not plan.users and not plan.rates and plan.rate_start is None:
        raise LoadTestError("give --users and/or --rates (or --rate-start) to sweep")
    if (plan.rates or plan.rate_start is not None) and (plan.p99_ms is None or plan.p99_ms <= 0):
        raise LoadTestError("a rate sweep needs --p99-ms, the latency bound that defines saturation")
    if plan.rate_factor <= 1:
        raise LoadTestError(f"--rate-factor must be above 1, got {plan.rate_factor:g}")
    if any(u > MAX_USERS for u in plan.users):
        raise LoadTestError(f"--users: at most {MAX_USERS} users per level")


def users_for_rate(rate: float, plan: SweepPlan) -> int:
    """Enough users that arrivals rarely wait for a free one: rate x 4 x the bound, at least 8."""
    if plan.rate_users is not None:
        return plan.rate_users
    bound_s = (plan.p99_ms or 100.0) / 1000.0
    return int(min(MAX_USERS, max(8, math.ceil(rate * bound_s * 4))))


def level_row(kind: str, level: float, report: RunReport, plan: SweepPlan, folder: Path) -> Level:
    c = report.client
    server = report.server
    row = Level(
        kind=kind,
        level=level,
        shape=str(report.run["shape"]),
        requests=c.requests,
        failures=c.failures,
        error_rate=c.error_rate,
        rps=c.rps,
        p50_ms=c.latency_ms.get("p50"),
        p95_ms=c.latency_ms.get("p95"),
        p99_ms=c.latency_ms.get("p99"),
        intended_p99_ms=(c.intended_latency_ms or {}).get("p99"),
        server_requests=server.requests if server is not None else None,
        server_p50_ms=server.latency_ms.get("p50") if server is not None else None,
        server_p99_ms=server.latency_ms.get("p99") if server is not None else None,
        loadgen_cpu_percent=report.loadgen.mean_percent,
        late_fraction=report.schedule.get("late_fraction") if report.schedule else None,
        meets_bound=None,
        folder=folder.name,
    )
    return replace(row, meets_bound=meets(row, plan))


def meets(row: Level, plan: SweepPlan) -> bool | None:
    if plan.p99_ms is None:
        return None
    p99 = row.bound_p99()
    achieved = row.kind != "rate" or row.rps >= MIN_ACHIEVED_SHARE * row.level
    return p99 is not None and p99 <= plan.p99_ms and row.failures == 0 and row.requests > 0 and achieved


def knee(rows: list[Level]) -> Level | None:
    """The smallest concurrency reaching ``KNEE_SHARE`` of the highest throughput."""
    if not rows:
        return None
    best = max(r.rps for r in rows)
    return next((r for r in sorted(rows, key=lambda r: r.level) if r.rps >= KNEE_SHARE * best), None)


def saturation_rate(rows: list[Level]) -> Level | None:
    """The highest offered rate that met the bound."""
    good = [r for r in rows if r.meets_bound]
    return max(good, key=lambda r: r.level) if good else None


Runner = Callable[[RunOptions], RunReport]


def run_one(options: RunOptions, slo: SloFile | None) -> RunReport:
    artifacts = execute(options)
    report = build_report(artifacts, slo)
    write_report(report, artifacts)
    return report


def _rate_shape(rate: float, plan: SweepPlan) -> str:
    kind = "poisson" if plan.poisson else "rate"
    return f"{kind}:rps={rate:g},users={users_for_rate(rate, plan)}"


def sweep_users(base: RunOptions, plan: SweepPlan, run: Runner) -> list[Level]:
    rows = []
    for users in plan.users:
        folder = base.out / f"users-{users}"
        print(f"== concurrency {users}", flush=True)
        report = run(replace(base, shape=f"constant:users={users}", out=folder))
        rows.append(level_row("users", float(users), report, plan, folder))
    return rows


def _rate_level(base: RunOptions, plan: SweepPlan, rate: float, run: Runner) -> Level:
    folder = base.out / f"rate-{rate:g}"
    print(f"== rate {rate:g} req/s", flush=True)
    report = run(replace(base, shape=_rate_shape(rate, plan), out=folder))
    return level_row("rate", rate, report, plan, folder)


def sweep_rates(base: RunOptions, plan: SweepPlan, run: Runner) -> list[Level]:
    """Explicit rates all run; stepped rates stop at the first level that misses the bound."""
    rows: list[Level] = []
    if plan.rates:
        rows = [_rate_level(base, plan, rate, run) for rate in plan.rates]
    elif plan.rate_start is not None:
        rate = plan.rate_start
        while len(rows) < MAX_RATE_LEVELS and rate <= plan.rate_max:
            rows.append(_rate_level(base, plan, rate, run))
            if not rows[-1].meets_bound:
                break
            rate *= plan.rate_factor
    for _ in range(plan.refine):
        best = saturation_rate(rows)
        misses = [r.level for r in rows if not r.meets_bound and (best is None or r.level > best.level)]
        if best is None or not misses:
            break
        rows.append(_rate_level(base, plan, round((best.level + min(misses)) / 2, 1), run))
    return sorted(rows, key=lambda r: r.level)


def run_sweep(base: RunOptions, plan: SweepPlan, slo: SloFile | None = None) -> dict[str, list[Level]]:
    check_plan(plan)
    runner: Runner = lambda options: run_one(options, slo)  # noqa: E731
    result: dict[str, list[Level]] = {}
    if plan.users:
        result["users"] = sweep_users(base, plan, runner)
    if plan.rates or plan.rate_start is not None:
        result["rate"] = sweep_rates(base, plan, runner)
    write_sweep(base.out, result, plan)
    return result


# -- output ------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def markdown_table(rows: list[Level], marked: Level | None) -> list[str]:
    rate = bool(rows) and rows[0].kind == "rate"
    head = "offered req/s" if rate else "users"
    lines = [
        f"| {head} | requests | failures | req/s | p50 ms | p95 ms | p99 ms |"
        + (" p99 from schedule ms | late % |" if rate else "")
        + " gateway p50 / p99 ms | Locust CPU % | meets bound |",
        "|---" * (10 + (2 if rate else 0)) + "|",
    ]
    for r in rows:
        level = _fmt(r.level, 0) + ((" ◀ saturation" if rate else " ◀ knee") if r is marked else "")
        extra = f" {_fmt(r.intended_p99_ms)} | {_fmt(None if r.late_fraction is None else 100 * r.late_fraction, 1)} |"
        lines.append(
            f"| {level} | {r.requests} | {r.failures} | {_fmt(r.rps, 1)} | {_fmt(r.p50_ms)} | {_fmt(r.p95_ms)} | "
            f"{_fmt(r.p99_ms)} |{extra if rate else ''} {_fmt(r.server_p50_ms)} / {_fmt(r.server_p99_ms)} | "
            f"{_fmt(r.loadgen_cpu_percent, 0)} | {_fmt(r.meets_bound)} |"
        )
    return lines


def marked_level(kind: str, rows: list[Level]) -> Level | None:
    return knee(rows) if kind == "users" else saturation_rate(rows)


def write_sweep(out: Path, result: dict[str, list[Level]], plan: SweepPlan) -> list[Path]:
    from loadtests.plots import plot_sweep

    out.mkdir(parents=True, exist_ok=True)
    lines = ["# Latency versus load", ""]
    summary: dict[str, Any] = {"p99_bound_ms": plan.p99_ms, "sweeps": {}}
    written = []
    for kind, rows in result.items():
        marked = marked_level(kind, rows)
        title = "Concurrency (closed loop)" if kind == "users" else "Request rate (open loop)"
        what = (
            f"knee: {marked.level:g} users ({KNEE_SHARE:.0%} of the highest throughput)"
            if kind == "users" and marked
            else f"saturation: {marked.level:g} req/s is the highest rate meeting p99 <= {plan.p99_ms:g} ms"
            if marked
            else "saturation: no level met the bound"
        )
        plot = plot_sweep(rows, marked, kind, plan.p99_ms, out / f"sweep_{kind}.png")
        written.append(plot)
        lines += [f"## {title}", "", what, "", *markdown_table(rows, marked), "", f"![{plot.name}]({plot.name})", ""]
        summary["sweeps"][kind] = {
            "levels": [asdict(r) for r in rows],
            "saturation": asdict(marked) if marked else None,
        }
        with (out / f"sweep_{kind}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(asdict(rows[0]))) if rows else None
            if writer is not None:
                writer.writeheader()
                writer.writerows(asdict(r) for r in rows)
        written.append(out / f"sweep_{kind}.csv")
    (out / "sweep.md").write_text("\n".join(lines), encoding="utf-8")
    (out / "sweep.json").write_text(json.dumps(finite(summary), indent=2) + "\n", encoding="utf-8")
    return [out / "sweep.md", out / "sweep.json", *written]


def console_table(result: dict[str, list[Level]], plan: SweepPlan) -> str:
    lines: list[str] = []
    for kind, rows in result.items():
        lines += markdown_table(rows, marked_level(kind, rows))
        lines.append("")
    return "\n".join(lines).rstrip()
