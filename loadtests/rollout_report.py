"""The rollout scenario's report: ``rollouts.json``, ``rollouts.md`` and ``timeline.png``, and its gate.

What happened to each rollout (outcome, rollback reason, time to roll out, step) is read from the
gateway's own deployment history, verbatim; the load test adds what only it can see: the requests
that failed during each rollout's window, counted the way the single-run report counts them (the
difference of the gateway's ``modelgate_requests_total`` by status between the window's edges) and
by the client (Locust's responses that failed, wrong answers included, by the time the request was sent:
a loaded Locust may record a response well after the gateway counted it, but it sent the request before
the gateway routed it).

A rollout's window runs from just before its start call to just before the next rollout's (the last
one's to the end of the load), so a request is counted in exactly one window, and the time the
driver waits for settled traffic after a decision belongs to the rollout that caused it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loadtests import prometheus
from loadtests.rollout_plan import FAILED_TO_LOAD, PROMOTED, ROLLED_BACK, Expect, PlannedRollout
from loadtests.rollouts import RolloutWindow, ScenarioArtifacts
from loadtests.slo import RolloutBounds
from loadtests.stats import Samples, load_samples

ABORTED = "aborted"
NOT_FINISHED = "not_finished"
TERMINAL = {"rollout_promote": PROMOTED, "rollout_rollback": ROLLED_BACK, "rollout_abort": ABORTED}


def epoch(iso: str) -> float:
    """A history record's ``time`` (UTC ISO 8601) as Unix seconds."""
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def failed_status(status: str) -> bool:
    """A status the gateway counts as failed: anything but HTTP 2xx and gRPC OK."""
    return not (status.startswith("2") or status == "OK")


@dataclass(frozen=True)
class Counts:
    requests: int
    failed: int


def server_counts(before: prometheus.Snapshot, after: prometheus.Snapshot | None, model: str, protocol: str) -> Counts:
    """The gateway's requests and failed requests between two scrapes (as the single-run report counts them)."""
    if after is None:
        return Counts(0, 0)
    by_status: dict[str, float] = defaultdict(float)
    for sample in after.select(prometheus.REQUESTS, {"model": model, "protocol": protocol}):
        by_status[sample.labels.get("status", "")] += sample.value
    for sample in before.select(prometheus.REQUESTS, {"model": model, "protocol": protocol}):
        by_status[sample.labels.get("status", "")] -= sample.value
    return Counts(round(sum(by_status.values())), round(sum(n for s, n in by_status.items() if failed_status(s))))


def client_counts(samples: Samples, start: float, end: float) -> Counts:
    """The client's responses (and failed ones) to requests sent in ``[start, end)``."""
    sent = samples.end_s - samples.response_ms / 1000.0
    inside = (sent >= start) & (sent < end)
    return Counts(int(inside.sum()), int((inside & ~samples.success).sum()))


@dataclass(frozen=True)
class RolloutRow:
    """One rollout of the report."""

    index: int
    version: int
    expect: str
    expected_outcome: str
    expected_reasons: list[str]
    outcome: str
    reason: str
    rollback_reason: str | None
    as_expected: bool
    time_to_roll_out_s: float | None
    decided_at_step: int | None
    window_s: float
    server_requests: int
    server_failed: int
    client_requests: int
    client_failed: int
    gateway_rollout_failed: int | None
    actions: list[str]
    start_status: int
    note: str = ""

    @property
    def failed(self) -> int:
        """The failed requests the gate judges: the larger of the gateway's and the client's count."""
        return max(self.server_failed, self.client_failed)


def _decision(records: list[dict[str, Any]], version: int) -> tuple[str, dict[str, Any] | None]:
    """The outcome of a rollout from its history records, and the record that decided it."""
    mine = [r for r in records if r.get("version") == str(version)]
    for record in mine:
        outcome = TERMINAL.get(str(record.get("action")))
        if outcome is not None:
            return outcome, record
    for record in mine:
        if record.get("action") == "rollout_load" and record.get("outcome") == "failed":
            return FAILED_TO_LOAD, record
    return NOT_FINISHED, None


def _as_expected(expect: Expect, outcome: str, rollback_reason: str | None) -> bool:
    if outcome != expect.outcome:
        return False
    return outcome != ROLLED_BACK or rollback_reason in expect.reasons


@dataclass(frozen=True)
class WindowEdges:
    start: float
    end: float
    before: prometheus.Snapshot
    after: prometheus.Snapshot | None


def _row(
    planned: PlannedRollout, window: RolloutWindow, records: list[dict[str, Any]], edges: WindowEdges,
    scenario: ScenarioArtifacts, samples: Samples,
) -> RolloutRow:  # fmt: skip
    outcome, record = _decision(records, planned.version)
    reason = str(record.get("reason", "")) if record else (window.answer.error or window.note)
    rollback_reason = record.get("rollback_reason") if record and outcome in (ROLLED_BACK, ABORTED) else None
    duration = record.get("duration_seconds") if record else None
    step = record.get("step") if record and outcome != FAILED_TO_LOAD else None
    failed_evidence = record.get("failed_requests") if record and outcome != FAILED_TO_LOAD else None
    config = scenario.run.config
    server = server_counts(edges.before, edges.after, config.model, config.protocol.metrics_label)
    client = client_counts(samples, edges.start, edges.end)
    return RolloutRow(
        index=window.index, version=planned.version, expect=planned.expect.value,
        expected_outcome=planned.expect.outcome, expected_reasons=sorted(planned.expect.reasons),
        outcome=outcome, reason=reason, rollback_reason=None if rollback_reason is None else str(rollback_reason),
        as_expected=_as_expected(planned.expect, outcome, None if rollback_reason is None else str(rollback_reason)),
        time_to_roll_out_s=None if duration is None else float(duration),
        decided_at_step=None if step is None else int(step),
        window_s=(edges.end if math.isfinite(edges.end) else _last_end(samples, edges.start)) - edges.start,
        server_requests=server.requests, server_failed=server.failed,
        client_requests=client.requests, client_failed=client.failed,
        gateway_rollout_failed=None if failed_evidence is None else int(failed_evidence),
        actions=[str(r.get("action")) for r in records], start_status=window.answer.status, note=window.note,
    )  # fmt: skip


def _last_end(samples: Samples, start: float) -> float:
    return float(samples.end_s.max()) if samples.end_s.size else start


@dataclass(frozen=True)
class Breach:
    """One rollout bound the scenario did not meet."""

    metric: str
    message: str

    def __str__(self) -> str:
        return f"SLO breach: rollouts {self.metric}: {self.message}"


@dataclass(frozen=True)
class ScenarioReport:
    """Everything ``rollouts.json`` and ``rollouts.md`` say."""

    run: dict[str, Any]
    rows: list[RolloutRow]
    baseline: dict[str, int]
    totals: dict[str, int]
    success_rate: float | None
    bounds: RolloutBounds
    breaches: list[Breach]
    history: list[dict[str, Any]]
    timeline: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.breaches

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "success_rate": self.success_rate,
            "good_rollouts": sum(1 for r in self.rows if r.expect == Expect.GOOD),
            "good_promoted": sum(1 for r in self.rows if r.expect == Expect.GOOD and r.outcome == PROMOTED),
            "rollbacks": sum(1 for r in self.rows if r.outcome == ROLLED_BACK),
            "rollouts": [asdict(r) for r in self.rows],
            "before_first_rollout": self.baseline,
            "totals": self.totals,
            "gate": {
                "passed": self.passed,
                "bounds": self.bounds.model_dump(),
                "breaches": [{"metric": b.metric, "message": str(b)} for b in self.breaches],
            },
            "history": self.history,
            "timeline": self.timeline,
        }


def success_rate(rows: list[RolloutRow]) -> float | None:
    """Good rollouts promoted / good rollouts (None without a good rollout in the plan)."""
    good = [r for r in rows if r.expect == Expect.GOOD]
    return sum(1 for r in good if r.outcome == PROMOTED) / len(good) if good else None


def evaluate(bounds: RolloutBounds, rows: list[RolloutRow], rate: float | None) -> list[Breach]:
    """Every bound the scenario breached (empty: it passed)."""
    found: list[Breach] = []
    for r in rows:
        label = f"version {r.version} ({r.expect}, rollout {r.index + 1})"
        if bounds.outcomes_as_expected and not r.as_expected:
            want = r.expected_outcome + (f" ({' or '.join(r.expected_reasons)})" if r.expected_reasons else "")
            got = r.outcome + (f" ({r.rollback_reason})" if r.rollback_reason else "")
            found.append(Breach("outcomes_as_expected", f"{label} expected {want}, got {got}"))
        good = r.expect == Expect.GOOD
        limit = bounds.max_failed_requests_good_rollout if good else bounds.max_failed_requests_bad_rollout
        if limit is not None and r.failed > limit:
            metric = "max_failed_requests_good_rollout" if good else "max_failed_requests_bad_rollout"
            found.append(Breach(metric, f"{label} {r.failed} failed requests > {limit}"))
        seconds = bounds.max_rollout_seconds
        took = r.time_to_roll_out_s
        if seconds is not None and r.outcome != FAILED_TO_LOAD and (took is None or took > seconds):
            shown = "no data" if took is None else f"{took:.4g} s"
            found.append(Breach("max_rollout_seconds", f"{label} {shown} > {seconds:g} s"))
    if bounds.min_success_rate is not None and (rate is None or rate < bounds.min_success_rate):
        shown = "no good rollout" if rate is None else f"{rate:.4g}"
        found.append(Breach("min_success_rate", f"{shown} < {bounds.min_success_rate:g}"))
    return found


def _slices(scenario: ScenarioArtifacts) -> list[list[dict[str, Any]]]:
    """The history records of each rollout: from its start call to the next one's."""
    offsets = [w.history_from - scenario.history_from for w in scenario.windows]
    ends = [*offsets[1:], len(scenario.history)]
    return [scenario.history[a:b] for a, b in zip(offsets, ends, strict=True)]


def _edges(scenario: ScenarioArtifacts) -> list[WindowEdges]:
    windows, after = scenario.windows, scenario.run.server_after
    return [
        WindowEdges(w.started_at, nxt.started_at, w.before, nxt.before) for w, nxt in itertools.pairwise(windows)
    ] + ([WindowEdges(windows[-1].started_at, math.inf, windows[-1].before, after)] if windows else [])


def scenario_samples(scenario: ScenarioArtifacts) -> Samples:
    layout, name = scenario.run.layout, scenario.run.config.request_name
    samples = load_samples(layout.latencies, name)
    return samples if samples is not None else Samples(np.zeros(0), np.zeros(0, dtype=bool), np.zeros(0), np.zeros(0))


def build(scenario: ScenarioArtifacts, bounds: RolloutBounds | None) -> ScenarioReport:
    """Read what the scenario left and judge it against ``bounds`` (default: outcomes as expected)."""
    from loadtests.timeline import timeline_data

    bounds = bounds or RolloutBounds()
    samples = scenario_samples(scenario)
    rows = [
        _row(scenario.plan.rollouts[w.index], w, records, edges, scenario, samples)
        for w, records, edges in zip(scenario.windows, _slices(scenario), _edges(scenario), strict=True)
    ]
    config, run = scenario.run.config, scenario.run
    label = config.protocol.metrics_label
    first = scenario.windows[0] if scenario.windows else None
    baseline_server = server_counts(run.server_before, first.before if first else run.server_after, config.model,
                                    label) if run.server_before is not None else Counts(0, 0)  # fmt: skip
    baseline_client = client_counts(samples, -math.inf, first.started_at if first else math.inf)
    total_server = (
        server_counts(run.server_before, run.server_after, config.model, label) if run.server_before else Counts(0, 0)
    )
    rate = success_rate(rows)
    breaches = evaluate(bounds, rows, rate)
    if len(scenario.windows) < len(scenario.plan.rollouts):
        missing = len(scenario.plan.rollouts) - len(scenario.windows)
        breaches.append(Breach("completed", f"{missing} planned rollout(s) never started (the load ended first)"))
    return ScenarioReport(
        run={
            "host": run.options.host, "model": config.model, "protocol": config.protocol.value,
            "shape": config.shape, "deploy_url": scenario.deploy_url, "metrics_url": run.metrics_url,
            "request_name": config.request_name, "answers_checked": config.check.value,
            "inputs_from": config.answers_from, "out": str(run.layout.out),
        },
        rows=rows,
        baseline={"server_requests": baseline_server.requests, "server_failed": baseline_server.failed,
                  "client_requests": baseline_client.requests, "client_failed": baseline_client.failed},
        totals={"server_requests": total_server.requests, "server_failed": total_server.failed,
                "client_requests": int(samples.success.size), "client_failed": int((~samples.success).sum())},
        success_rate=rate, bounds=bounds, breaches=breaches, history=scenario.history,
        timeline=timeline_data(scenario, samples),
    )  # fmt: skip


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def console_table(report: ScenarioReport) -> str:
    """The per-rollout table (Markdown), the success rate and the verdict."""
    lines = [
        "| # | version | expected | actual | as expected | reason (gateway history, verbatim) | time to roll out (s) "
        "| step | window (s) | failed: gateway / client | requests: gateway / client |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report.rows:
        reason = r.reason.replace("|", "\\|") or "—"
        lines.append(
            f"| {r.index + 1} | {r.version} | {r.expect} → {r.expected_outcome} | {r.outcome} | "
            f"{'yes' if r.as_expected else '**no**'} | {reason} | {_num(r.time_to_roll_out_s, 3)} | "
            f"{r.decided_at_step if r.decided_at_step is not None else '—'} | {r.window_s:.1f} | "
            f"{r.server_failed} / {r.client_failed} | {r.server_requests} / {r.client_requests} |"
        )
    rate = report.success_rate
    good = [r for r in report.rows if r.expect == Expect.GOOD]
    promoted = sum(1 for r in good if r.outcome == PROMOTED)
    lines += [
        "",
        f"deployment success rate: {'—' if rate is None else f'{100 * rate:.0f}%'} "
        f"({promoted} of {len(good)} good rollouts promoted); "
        f"rollbacks: {sum(1 for r in report.rows if r.outcome == ROLLED_BACK)}",
        f"before the first rollout: {report.baseline['server_failed']} / {report.baseline['client_failed']} failed "
        f"(gateway / client) of {report.baseline['server_requests']} / {report.baseline['client_requests']}; "
        f"whole run: {report.totals['server_failed']} / {report.totals['client_failed']} failed of "
        f"{report.totals['server_requests']} / {report.totals['client_requests']}",
        *(str(b) for b in report.breaches),
        "PASS" if report.passed else "FAIL",
    ]
    return "\n".join(lines)


def markdown(report: ScenarioReport, plot: str | None) -> str:
    run = report.run
    lines = [
        "# Deployment success under load",
        "",
        f"`{run['request_name']}` @ {run['host']}, shape `{run['shape']}`, rollouts through {run['deploy_url']}; "
        f"answers checked: {run['answers_checked']} ({run['inputs_from']}).",
        "",
        console_table(report),
        "",
        "Outcome, reason, time to roll out (start to promotion or rollback, as the gateway measured it) and step "
        "are the gateway's deployment history. A rollout's window runs from its start call to the next one's "
        "(the last to the end of the load). Failed requests: *gateway* = non-2xx/OK statuses in "
        "`modelgate_requests_total` between the window's edges; *client* = responses Locust counted as failed "
        "(wrong answers included) to requests sent in the window.",
    ]
    if plot:
        lines += ["", f"![timeline]({plot})"]
    lines += ["", "Whole-run load report: [report.md](report.md); machine-readable: `rollouts.json`."]
    return "\n".join(lines) + "\n"


def write(report: ScenarioReport, scenario: ScenarioArtifacts) -> list[Path]:
    """Write ``rollouts.json``, ``timeline.png`` and ``rollouts.md`` into the run's folder."""
    from loadtests.plots import plot_timeline
    from loadtests.report import finite

    out = scenario.run.layout.out
    data = out / "rollouts.json"
    data.write_text(json.dumps(finite(report.as_dict()), indent=2, default=str) + "\n", encoding="utf-8")
    plot = plot_timeline(report, out / "timeline.png")
    page = out / "rollouts.md"
    page.write_text(markdown(report, plot.name), encoding="utf-8")
    return [data, plot, page]
