"""The report of a run: ``summary.json``, ``report.md`` and the plots, plus the console summary.

The JSON summary is the machine-readable result (per model and protocol: requests, failures, rps,
p50/p90/p95/p99/max), with the gateway's own count and latency beside the client's, the load
generator's CPU, the open-loop schedule's lag, the most common failures and the gate's verdict.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtests import prometheus
from loadtests.loadgen import BOTTLENECK_PERCENT, LoadgenStats
from loadtests.runner import RunArtifacts
from loadtests.shapes import parse_shape
from loadtests.slo import Breach, SloFile, check_failures, evaluate
from loadtests.stats import (
    ClientStats,
    CsvRow,
    client_stats,
    find_row,
    load_samples,
    load_schedule,
    read_stats_csv,
)

#: Fraction of open-loop arrivals that may start late before the run counts as degraded.
LATE_FRACTION_LIMIT = 0.01
TOP_FAILURES = 10


@dataclass(frozen=True)
class RunReport:
    """Everything the report folder and the console say about one run."""

    run: dict[str, Any]
    client: ClientStats
    server: prometheus.ServerStats | None
    loadgen: LoadgenStats
    schedule: dict[str, float] | None
    failures: list[dict[str, Any]]
    breaches: list[Breach]
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.breaches

    def result(self) -> dict[str, Any]:
        """The per-model-and-protocol entry of the summary."""
        c = self.client
        return {
            "model": self.run["model"],
            "protocol": self.run["protocol"],
            "name": self.run["request_name"],
            "requests": c.requests,
            "failures": c.failures,
            "error_rate": c.error_rate,
            "rps": c.rps,
            **{f"{key}_ms": value for key, value in c.latency_ms.items()},
            "mean_ms": c.mean_ms,
            "locust_rounded_ms": c.locust_latency_ms,
            "intended_latency_ms": c.intended_latency_ms or None,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "results": [self.result()],
            "server": self.server.as_dict() if self.server is not None else None,
            "loadgen": self.loadgen.as_dict(),
            "open_loop": self.schedule,
            "failures": self.failures,
            "gate": {"passed": self.passed, "breaches": [b.as_dict() | {"message": str(b)} for b in self.breaches]},
            "notes": self.notes,
        }


def read_failures(path: Path) -> list[dict[str, Any]]:
    """Locust's failure table (most frequent first)."""
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [
            {"name": r["Name"], "error": r["Error"], "occurrences": int(r["Occurrences"])}
            for r in csv.DictReader(handle)
        ]
    return sorted(rows, key=lambda r: int(r["occurrences"]), reverse=True)[:TOP_FAILURES]


def _notes(
    report_run: dict[str, Any],
    client: ClientStats,
    server: prometheus.ServerStats | None,
    loadgen: LoadgenStats,
    schedule: dict[str, float] | None,
) -> list[str]:
    notes: list[str] = []
    if loadgen.bottleneck:
        notes.append(
            f"load generator bottleneck: Locust used {loadgen.mean_percent:.0f}% of a core on average over "
            f"{loadgen.processes} process(es) (>= {BOTTLENECK_PERCENT:.0f}% each); throughput is Locust's limit and "
            "its latencies include its own queueing: add --processes"
        )
    if loadgen.machine_saturated and not loadgen.bottleneck:
        notes.append(
            f"machine saturated: all {loadgen.cores} cores were {loadgen.machine_busy_percent:.0f}% busy; "
            "latencies include CPU contention between the server, Locust and anything else running"
        )
    if schedule is not None and schedule.get("late_fraction", 0.0) > LATE_FRACTION_LIMIT:
        notes.append(
            f"open loop degraded: {100 * schedule['late_fraction']:.1f}% of arrivals started late "
            f"(max lag {schedule['max_lag_ms']:.1f} ms): too few users= for the rate, or Locust was short of CPU"
        )
    if server is None:
        notes.append(f"no server-side view: metrics not reachable at {report_run['metrics_url']}")
    elif server.requests != client.requests:
        notes.append(f"the server counted {server.requests} requests, the client {client.requests}")
    return notes


def _run_info(artifacts: RunArtifacts) -> dict[str, Any]:
    options, config = artifacts.options, artifacts.config
    shape = parse_shape(config.shape)
    return {
        "host": options.host,
        "model": config.model,
        "version": config.version,
        "protocol": config.protocol.value,
        "request_name": config.request_name,
        "shape": config.shape,
        "open_loop": shape.open_loop,
        "peak_users": shape.peak_users(),
        "duration_s": config.duration,
        "batch_size": config.batch_size,
        "answers_checked": config.check.value,
        "inputs_from": config.answers_from,
        "tolerance": {"atol": config.atol, "rtol": config.rtol},
        "locust_processes": config.processes,
        "seed": config.seed,
        "metrics_url": artifacts.metrics_url,
        "out": str(artifacts.layout.out),
    }


def build_report(artifacts: RunArtifacts, slo: SloFile | None) -> RunReport:
    """Read what the run wrote and judge it against ``slo`` (or, without bounds, against zero failures)."""
    config, layout = artifacts.config, artifacts.layout
    run = _run_info(artifacts)
    row = find_row(read_stats_csv(layout.stats_csv), config.request_name)
    if row is None:
        row = CsvRow("", config.request_name, 0, 0, 0.0, 0.0, {})
    client = client_stats(row, load_samples(layout.latencies, config.request_name), bool(run["open_loop"]))
    server = None
    if artifacts.server_before is not None and artifacts.server_after is not None:
        label = config.protocol.metrics_label
        server = prometheus.server_stats(artifacts.server_before, artifacts.server_after, config.model, label)
    schedule = load_schedule(layout.latencies)
    bounds = slo.bounds_for(config.model, config.protocol) if slo is not None else None
    breaches = check_failures(config.model, config.protocol, bounds, client)
    if bounds is not None:
        breaches += evaluate(config.model, config.protocol, bounds, client)
    return RunReport(
        run=run,
        client=client,
        server=server,
        loadgen=artifacts.loadgen,
        schedule=schedule,
        failures=read_failures(layout.failures_csv),
        breaches=breaches,
        notes=_notes(run, client, server, artifacts.loadgen, schedule),
    )


def finite(value: Any) -> Any:
    """The same structure with NaN and infinities as None, so summary.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def latency_table(report: RunReport) -> list[str]:
    """Client, server and backend percentiles side by side (Markdown rows)."""
    keys = ("p50", "p90", "p95", "p99")
    rows = [
        "| latency (ms) | " + " | ".join(keys) + " | mean |",
        "|---|" + "---|" * (len(keys) + 1),
        "| client (Locust, exact) | "
        + " | ".join(_ms(report.client.latency_ms.get(k)) for k in keys)
        + f" | {_ms(report.client.mean_ms)} |",
    ]
    if report.client.intended_latency_ms:
        rows.append(
            "| client incl. schedule lag | "
            + " | ".join(_ms(report.client.intended_latency_ms.get(k)) for k in keys)
            + " | |"
        )
    if report.server is not None:
        s = report.server
        rows.append(
            "| server (gateway histogram) | "
            + " | ".join(_ms(s.latency_ms.get(k)) for k in keys)
            + f" | {_ms(s.mean_ms)} |"
        )
        rows.append(
            "| backend inference | "
            + " | ".join(_ms(s.backend_latency_ms.get(k)) for k in keys)
            + f" | {_ms(s.backend_mean_ms)} |"
        )
    return rows


def console_summary(report: RunReport) -> str:
    """The lines printed at the end of a run."""
    c, run, cpu = report.client, report.run, report.loadgen
    lines = [
        f"{run['request_name']} @ {run['host']}  shape {run['shape']}  {run['duration_s']:g}s",
        f"requests {c.requests}  failures {c.failures} ({100 * c.error_rate:.2f}%)  {c.rps:.1f} req/s  "
        f"Locust CPU {cpu.mean_percent:.0f}% of a core over {cpu.processes} process(es) "
        f"(machine {cpu.machine_busy_percent:.0f}% busy)",
        f"inputs: {run['inputs_from']}; answers checked: {run['answers_checked']}",
        *latency_table(report),
    ]
    if report.server is not None:
        lines.append(f"gateway counted {report.server.requests} requests {report.server.by_status}")
    lines += [f"note: {note}" for note in report.notes]
    lines += [f"failure x{f['occurrences']}: {f['error']}" for f in report.failures[:3]]
    lines += [str(b) for b in report.breaches]
    lines.append("PASS" if report.passed else "FAIL")
    return "\n".join(lines)


def markdown(report: RunReport, plots: list[str]) -> str:
    lines = ["# Load test report", "", "```", console_summary(report), "```", ""]
    lines += [f"![{name}]({name})" for name in plots]
    lines += [
        "",
        "Locust's own report: [locust_report.html](locust_report.html); raw data: `locust_*.csv`,"
        " `latencies.npz`; machine-readable summary: `summary.json`.",
    ]
    return "\n".join(lines) + "\n"


def write_report(report: RunReport, artifacts: RunArtifacts) -> list[Path]:
    """Write ``summary.json``, the plots and ``report.md`` into the run's folder; returns the files."""
    from loadtests.plots import write_plots

    out = artifacts.layout.out
    summary = out / "summary.json"
    summary.write_text(json.dumps(finite(report.as_dict()), indent=2, default=str) + "\n", encoding="utf-8")
    plots = write_plots(artifacts, report)
    page = out / "report.md"
    page.write_text(markdown(report, [p.name for p in plots]), encoding="utf-8")
    return [summary, page, *plots]
