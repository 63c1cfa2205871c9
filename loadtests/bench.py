"""Benchmark mode: run the same load against several targets in one command and print ratios.

Targets run one after another, never at once: on a two-core machine two loads at a time would
measure each other. Each target gets its own report folder; ``comparison.json`` and the printed
table put them side by side, with each figure's ratio to the first target (the baseline).
Typical pairs: gateway vs the backend it fronts, REST vs gRPC, JSON vs binary.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from loadtests.config import Protocol
from loadtests.errors import LoadTestError
from loadtests.report import RunReport, build_report, finite, write_report
from loadtests.runner import RunOptions, execute
from loadtests.slo import SloFile

_TARGET = re.compile(r"^(?P<label>[A-Za-z0-9_.-]+)=(?P<protocol>[a-z]+)@(?P<host>\S+)$")


@dataclass(frozen=True)
class Target:
    """One thing to measure: a label, the protocol to speak and where."""

    label: str
    protocol: Protocol
    host: str


def parse_target(spec: str) -> Target:
    """``LABEL=PROTOCOL@URL``, e.g. ``gw-grpc=grpc@grpc://127.0.0.1:8001``."""
    match = _TARGET.match(spec.strip())
    if match is None:
        raise LoadTestError(f"--target {spec!r}: expected LABEL=PROTOCOL@URL, e.g. rest=rest@http://127.0.0.1:8000")
    try:
        protocol = Protocol(match["protocol"])
    except ValueError:
        choices = ", ".join(p.value for p in Protocol)
        raise LoadTestError(f"--target {spec!r}: unknown protocol {match['protocol']!r}; expected {choices}") from None
    return Target(match["label"], protocol, match["host"])


def parse_targets(specs: list[str]) -> list[Target]:
    targets = [parse_target(spec) for spec in specs]
    if len(targets) < 2:
        raise LoadTestError("--target: give at least two targets to compare")
    labels = [t.label for t in targets]
    if len(set(labels)) != len(labels):
        raise LoadTestError(f"--target: labels must be unique, got {', '.join(labels)}")
    return targets


def _ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


def comparison_row(target: Target, report: RunReport, baseline: RunReport) -> dict[str, Any]:
    c, b = report.client, baseline.client
    server = report.server.latency_ms if report.server is not None else {}
    return {
        "label": target.label,
        "protocol": target.protocol.value,
        "host": target.host,
        "requests": c.requests,
        "failures": c.failures,
        "rps": c.rps,
        "p50_ms": c.latency_ms.get("p50"),
        "p95_ms": c.latency_ms.get("p95"),
        "p99_ms": c.latency_ms.get("p99"),
        "server_p50_ms": server.get("p50"),
        "server_p99_ms": server.get("p99"),
        "loadgen_cpu_percent": report.loadgen.mean_percent,
        "loadgen_bottleneck": report.loadgen.bottleneck,
        "rps_ratio": _ratio(c.rps, b.rps),
        "p50_ratio": _ratio(c.latency_ms.get("p50"), b.latency_ms.get("p50")),
        "p99_ratio": _ratio(c.latency_ms.get("p99"), b.latency_ms.get("p99")),
        "passed": report.passed,
    }


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_table(rows: list[dict[str, Any]]) -> str:
    columns = [
        ("label", "target"),
        ("protocol", "proto"),
        ("requests", "requests"),
        ("failures", "fail"),
        ("rps", "req/s"),
        ("p50_ms", "p50 ms"),
        ("p99_ms", "p99 ms"),
        ("server_p50_ms", "srv p50"),
        ("loadgen_cpu_percent", "locust CPU%"),
        ("rps_ratio", "rps x"),
        ("p50_ratio", "p50 x"),
        ("p99_ratio", "p99 x"),
    ]
    table = [[header for _, header in columns]] + [[_fmt(row[key]) for key, _ in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)) for line in table]
    return "\n".join(
        [
            *lines,
            f"ratios are relative to {rows[0]['label']} (rps x > 1: more throughput; p99 x < 1: lower tail latency)",
        ]
    )


def compare(
    targets: list[Target], base: RunOptions, slo: SloFile | None
) -> tuple[list[dict[str, Any]], list[RunReport]]:
    """Run every target with the same shape; returns the table rows and each target's report."""
    reports: list[RunReport] = []
    for target in targets:
        options = replace(base, host=target.host, protocol=target.protocol, out=base.out / target.label)
        print(f"== {target.label}: {target.protocol.value} at {target.host} for {options.duration:g}s", flush=True)
        artifacts = execute(options)
        report = build_report(artifacts, slo)
        write_report(report, artifacts)
        reports.append(report)
    rows = [comparison_row(t, r, reports[0]) for t, r in zip(targets, reports, strict=True)]
    write_comparison(base.out, rows, reports)
    return rows, reports


def write_comparison(out: Path, rows: list[dict[str, Any]], reports: list[RunReport]) -> Path:
    path = out / "comparison.json"
    notes = {row["label"]: report.notes for row, report in zip(rows, reports, strict=True) if report.notes}
    path.write_text(json.dumps(finite({"targets": rows, "notes": notes}), indent=2) + "\n", encoding="utf-8")
    return path
