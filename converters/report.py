"""The conversion report: one record per artifact, written as JSON and as a Markdown table.

The same report goes beside every published version (so a version directory explains
where it came from and how it compares) and is printed by the CLI.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from converters.diagnose import Diagnosis
from converters.profile import RUNS, WARMUP
from converters.verify import OutputCheck, Tolerance, json_number


@dataclass
class ArtifactResult:
    """What happened to one target: conversion, verification, profile, publication.

    The JSON form (:meth:`to_dict`) is documented field by field in docs/converters.md.
    """

    target: str
    format: str
    precision: str
    backend: str | None
    method: str = ""
    size_bytes: int | None = None
    compression_vs_fp32: float | None = None
    compression_vs_source: float | None = None
    #: Weight tensors stored at the quantized dtype (float16 / int8); None for fp32 or formats that do not say.
    quantized_tensors: int | None = None
    load_s: float | None = None
    latency_b1_s: float | None = None
    latency_b32_s: float | None = None
    #: ``{"1": {...}, "32": {...}}``: p50_s, p95_s, p99_s and samples_per_s at each batch size.
    latency: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Peak resident memory of the process that loaded and ran the artifact (framework included).
    peak_rss_bytes: int | None = None
    checks: list[OutputCheck] = field(default_factory=list)
    accuracy: float | None = None
    macro_f1: float | None = None
    passed: bool = False
    #: Where it failed: "convert", "run", "verify", "quantization", "reproduce"; "" if it passed.
    stage: str = ""
    #: The cause in our words, what to do, and the library's own one-line note (JSON only).
    reason: str = ""
    action: str = ""
    detail: str = ""
    published_version: int | None = None
    signature: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def fail(self, stage: str, diagnosis: Diagnosis) -> None:
        """Mark the artifact failed at ``stage`` for ``diagnosis``."""
        self.passed = False
        self.stage = stage
        self.reason = diagnosis.cause
        self.action = diagnosis.action
        self.detail = diagnosis.detail

    @property
    def servable(self) -> bool:
        return self.backend is not None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["checks"] = [c.to_dict() for c in self.checks]
        data["servable"] = self.servable
        data["max_abs_error"] = json_number(_worst(self, "max_abs_error"))
        data["top1_agreement"] = _worst_top1(self)
        return data


#: Version of the report's JSON layout (docs/converters.md); bumped when a field changes meaning.
SCHEMA_VERSION = 2


@dataclass
class ConversionReport:
    """Everything one ``modelgate convert`` (or ``verify``) run did."""

    name: str
    source: str
    source_kind: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    sample_count: int
    samples: str
    tolerances: dict[str, Tolerance]
    artifacts: list[ArtifactResult] = field(default_factory=list)
    source_size_bytes: int | None = None
    source_accuracy: float | None = None
    source_macro_f1: float | None = None
    recommended: str | None = None
    exit_code: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "source": self.source,
            "source_kind": self.source_kind,
            "source_size_bytes": self.source_size_bytes,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "sample_count": self.sample_count,
            "samples": self.samples,
            "tolerances": {k: asdict(v) for k, v in self.tolerances.items()},
            "source_accuracy": self.source_accuracy,
            "source_macro_f1": self.source_macro_f1,
            "recommended": self.recommended,
            "exit_code": self.exit_code,
            "artifacts": [a.to_dict() for a in self.artifacts],
        }


def _us(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds * 1e6:,.0f} µs" if seconds < 1e-2 else f"{seconds * 1e3:,.1f} ms"


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1e3:,.1f} ms"


def _num(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _kb(size: int | None) -> str:
    return "–" if size is None else f"{size / 1024:,.1f} KB"


def _mb(size: int | None) -> str:
    return "–" if size is None else f"{size / 2**20:,.0f} MB"


def _percentiles(artifact: ArtifactResult, batch: str) -> str:
    stats = artifact.latency.get(batch)
    if not stats:
        return "–"
    return " / ".join(_us(stats[k]) for k in ("p50_s", "p95_s", "p99_s"))


def _throughput(artifact: ArtifactResult, batch: str) -> str:
    stats = artifact.latency.get(batch)
    return "–" if not stats else f"{stats['samples_per_s']:,.0f}"


def _delta(value: float | None, source: float | None) -> str:
    if value is None:
        return "–"
    if source is None:
        return f"{value:.2%}"
    return f"{value:.2%} ({(value - source) * 100:+.2f} pt)"


def to_markdown(report: ConversionReport) -> str:
    """A readable summary: verdicts, comparison figures, the per-output checks, the failures."""
    lines = [
        f"# Conversion report: {report.name}",
        "",
        f"Source: `{report.source}` ({report.source_kind}, {_kb(report.source_size_bytes)}); "
        f"{report.sample_count} samples ({report.samples}).",
        f"Inputs: {_tensors(report.inputs)}. Outputs: {_tensors(report.outputs)}.",
        f"Source against labels: accuracy {_num(report.source_accuracy, '.2%')}, "
        f"macro-F1 {_num(report.source_macro_f1, '.2%')}.",
        f"Recommended (fastest passing, servable): **{report.recommended or 'none'}**.",
        "",
        "| target | verdict | version | max abs err | top-1 vs source | accuracy (Δ source) | macro-F1 (Δ source) |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in report.artifacts:
        verdict = "pass" if a.passed else f"FAIL ({a.stage}): {a.reason}"
        lines.append(
            f"| {a.target} | {verdict} | {a.published_version or '–'} | {_num(_worst(a, 'max_abs_error'), '.2g')} | "
            f"{_num(_worst_top1(a), '.2%')} | {_delta(a.accuracy, report.source_accuracy)} | "
            f"{_delta(a.macro_f1, report.source_macro_f1)} |"
        )
    lines += [
        "",
        "## Comparison figures",
        "",
        "| target | size | vs source | vs fp32 | load | batch 1 p50 / p95 / p99 | batch 1 samples/s | "
        "batch 32 p50 / p95 / p99 | batch 32 samples/s | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in report.artifacts:
        lines.append(
            f"| {a.target} | {_kb(a.size_bytes)} | {_num(a.compression_vs_source, '.2f')} | "
            f"{_num(a.compression_vs_fp32, '.2f')} | {_ms(a.load_s)} | {_percentiles(a, '1')} | "
            f"{_throughput(a, '1')} | {_percentiles(a, '32')} | {_throughput(a, '32')} | {_mb(a.peak_rss_bytes)} |"
        )
    lines += [
        "",
        "## Checks per output and batch",
        "",
        "| target | output | batch | max abs | max rel | within tol | NaN/Inf | top-1 | ties | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in report.artifacts:
        for c in a.checks:
            lines.append(
                f"| {a.target} | {c.output} | {c.batch} | {c.max_abs_error:.2g} | {c.max_rel_error:.2g} | "
                f"{'yes' if c.within_tolerance else 'no'} | {c.non_finite} | {_num(c.top1_agreement, '.2%')} | "
                f"{c.top1_ties} | {'pass' if c.passed else c.reason} |"
            )
    failed = [a for a in report.artifacts if not a.passed]
    if failed:
        lines += ["", "## Failed targets (not published)", ""]
        lines += [f"- **{a.target}** ({a.stage}): {a.reason}. What to do: {a.action}." for a in failed]
    tol = ", ".join(
        f"{k}: atol {v.atol:g}, rtol {v.rtol:g}, top-1 ≥ {v.min_top1:.0%}" for k, v in report.tolerances.items()
    )
    lines += [
        "",
        f"Tolerances: {tol}. Latency: {RUNS} single-threaded runs after {WARMUP} warm-ups, one artifact timed at a "
        "time; peak RSS is the whole verification process (runtime and framework included).",
        "",
    ]
    return "\n".join(lines)


def _tensors(tensors: list[dict[str, Any]]) -> str:
    return ", ".join(f"`{t['name']}` {t['datatype']} {t['shape']}" for t in tensors) or "–"


def _worst(artifact: ArtifactResult, key: str) -> float | None:
    values = [getattr(c, key) for c in artifact.checks]
    return max(values) if values else None


def _worst_top1(artifact: ArtifactResult) -> float | None:
    values = [c.top1_agreement for c in artifact.checks if c.top1_agreement is not None]
    return min(values) if values else None


def summary_line(artifact: ArtifactResult) -> str:
    """One line for the terminal: the target, where it went, and for a failure the cause and what to do."""
    status = "ok  " if artifact.passed else "FAIL"
    where = f"-> version {artifact.published_version}" if artifact.published_version else "(not published)"
    detail = f" : {artifact.reason}" if artifact.reason else ""
    action = f". What to do: {artifact.action}" if artifact.action else ""
    return f"  {status} {artifact.target:<12} {where}{detail}{action}"
