"""The framework comparison report: every published version of one model under the same load.

For each version the gateway serves (ONNX, SavedModel, TFLite fp32/fp16/int8, TorchScript on
TorchServe, ...) the same load runs twice, at batch 1 and at a larger batch, one run after another
(never at once: on a small machine concurrent runs would measure each other). Beside the measured
p50/p95/p99 and samples/s, the table shows what the version's ``conversion-report.json`` says:
accuracy (and macro-F1 when the report has it) versus the source model, size and compression
ratio. A figure the report lacks is shown as "—". Written as ``comparison.md``,
``comparison.json`` and ``comparison.png``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from loadtests.errors import LoadTestError
from loadtests.inputs import artifact_of, version_report
from loadtests.probe import ModelInfo, probe_v2_grpc, probe_v2_rest
from loadtests.report import RunReport, finite
from loadtests.runner import RunOptions
from loadtests.sweep import run_one
from loadtests.tensors import is_batched

DASH = "—"


@dataclass(frozen=True)
class VersionRow:
    """One published version: what the conversion report says and what the load measured."""

    version: str
    target: str | None
    format: str | None
    precision: str | None
    backend: str | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    samples_per_s_b1: float | None
    large_batch: int | None
    p99_ms_large: float | None
    samples_per_s_large: float | None
    requests: int
    failures: int
    accuracy: float | None
    source_accuracy: float | None
    f1: float | None
    source_f1: float | None
    size_bytes: int | None
    compression_vs_fp32: float | None
    compression_vs_source: float | None
    folder_b1: str
    folder_large: str | None

    @property
    def passed(self) -> bool:
        return self.failures == 0 and self.requests > 0

    @property
    def accuracy_delta(self) -> float | None:
        if self.accuracy is None or self.source_accuracy is None:
            return None
        return self.accuracy - self.source_accuracy


def _number(holder: dict[str, Any], *keys: str) -> float | None:
    """The first of ``keys`` holding a number (reports from different converter versions name things differently)."""
    for key in keys:
        value = holder.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def report_figures(model_dir: Path | None, version: str) -> dict[str, Any]:
    """What the version's conversion report says about it (None where it says nothing)."""
    report = version_report(model_dir, version) if model_dir is not None else None
    artifact = (artifact_of(report, version) if report is not None else None) or {}
    report = report or {}
    size = _number(artifact, "size_bytes")
    return {
        "target": artifact.get("target"),
        "format": artifact.get("format"),
        "precision": artifact.get("precision"),
        "backend": artifact.get("backend"),
        "accuracy": _number(artifact, "accuracy"),
        "source_accuracy": _number(report, "source_accuracy"),
        "f1": _number(artifact, "macro_f1", "f1"),
        "source_f1": _number(report, "source_macro_f1", "source_f1"),
        "size_bytes": int(size) if size is not None else None,
        "compression_vs_fp32": _number(artifact, "compression_vs_fp32"),
        "compression_vs_source": _number(artifact, "compression_vs_source"),
    }


def served_versions(base: RunOptions) -> ModelInfo:
    """The model's signature and the versions the gateway serves (V2 metadata on the same port)."""
    if base.protocol.grpc:
        return probe_v2_grpc(base.host, base.model, None)
    return probe_v2_rest(base.host, base.model, None)


def _select(info: ModelInfo, only: list[str] | None, model: str) -> list[str]:
    versions = sorted(info.versions, key=lambda v: int(v) if v.isdigit() else 0)
    if not versions:
        raise LoadTestError(f"model {model!r}: the gateway lists no ready version")
    if only is None:
        return versions
    unknown = [v for v in only if v not in versions]
    if unknown:
        raise LoadTestError(f"--versions: {', '.join(unknown)} not served (ready: {', '.join(versions)})")
    return only


def _default_repository(base: RunOptions) -> Path | None:
    if base.model_repository is not None:
        return base.model_repository
    default = Path("model_repo")
    return default if (default / base.model).is_dir() else None


def compare_versions(base: RunOptions, large_batch: int, only: list[str] | None = None) -> list[VersionRow]:
    """Run every (selected) version at batch 1 and at ``large_batch``; write the report; return its rows."""
    if large_batch < 2:
        raise LoadTestError(f"--large-batch must be at least 2, got {large_batch}")
    info = served_versions(base)
    versions = _select(info, only, base.model)
    repository = _default_repository(base)
    batched = is_batched(info.inputs)
    rows = []
    for version in versions:
        options = replace(base, version=version, model_repository=repository)
        print(f"== version {version}: batch 1", flush=True)
        small = run_one(replace(options, batch_size=1, out=base.out / f"v{version}-b1"), None)
        large: RunReport | None = None
        if batched:
            print(f"== version {version}: batch {large_batch}", flush=True)
            out = base.out / f"v{version}-b{large_batch}"
            large = run_one(replace(options, batch_size=large_batch, out=out), None)
        rows.append(version_row(version, small, large, large_batch, repository / base.model if repository else None))
    write_comparison(base.out, base.model, rows, base)
    return rows


def version_row(
    version: str, small: RunReport, large: RunReport | None, large_batch: int, model_dir: Path | None
) -> VersionRow:
    c = small.client
    return VersionRow(
        version=version,
        p50_ms=c.latency_ms.get("p50"),
        p95_ms=c.latency_ms.get("p95"),
        p99_ms=c.latency_ms.get("p99"),
        samples_per_s_b1=c.rps,
        large_batch=large_batch if large is not None else None,
        p99_ms_large=large.client.latency_ms.get("p99") if large is not None else None,
        samples_per_s_large=large.client.rps * large_batch if large is not None else None,
        requests=c.requests + (large.client.requests if large is not None else 0),
        failures=c.failures + (large.client.failures if large is not None else 0),
        folder_b1=Path(str(small.run["out"])).name,
        folder_large=Path(str(large.run["out"])).name if large is not None else None,
        **report_figures(model_dir, version),
    )


# -- output ------------------------------------------------------------------------------


def _f(value: float | None, spec: str) -> str:
    return DASH if value is None else format(value, spec)


def markdown_rows(rows: list[VersionRow]) -> list[str]:
    large = next((r.large_batch for r in rows if r.large_batch), None)
    lines = [
        "| version | target | backend | p50 / p95 / p99 ms (b1) | samples/s b1 | "
        f"samples/s b{large or 'N'} | p99 ms b{large or 'N'} | failures | accuracy | vs source | macro-F1 | "
        "size | vs fp32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        delta = r.accuracy_delta
        lines.append(
            f"| {r.version} | {r.target or DASH} | {r.backend or DASH} | "
            f"{_f(r.p50_ms, '.2f')} / {_f(r.p95_ms, '.2f')} / {_f(r.p99_ms, '.2f')} | "
            f"{_f(r.samples_per_s_b1, ',.0f')} | {_f(r.samples_per_s_large, ',.0f')} | {_f(r.p99_ms_large, '.2f')} | "
            f"{r.failures} of {r.requests} | {_f(r.accuracy, '.2%')} | "
            f"{DASH if delta is None else f'{100 * delta:+.2f} pt'} | {_f(r.f1, '.3f')} | "
            f"{DASH if r.size_bytes is None else f'{r.size_bytes / 1024:,.1f} KB'} | "
            f"{_f(r.compression_vs_fp32, '.2f')} |"
        )
    return lines


def console_table(rows: list[VersionRow]) -> str:
    return "\n".join(markdown_rows(rows))


def write_comparison(out: Path, model: str, rows: list[VersionRow], base: RunOptions) -> list[Path]:
    from loadtests.plots import plot_versions

    out.mkdir(parents=True, exist_ok=True)
    plot = plot_versions(rows, model, out / "comparison.png")
    source = next((r.source_accuracy for r in rows if r.source_accuracy is not None), None)
    lines = [
        f"# Framework comparison: {model}",
        "",
        f"Same load for every version: `{base.shape}`, {base.duration:g} s per run, protocol `{base.protocol.value}`,"
        f" at batch 1 and batch {next((r.large_batch for r in rows if r.large_batch), '—')}; runs one after another.",
        f"Source model accuracy: {_f(source, '.2%')}. Accuracy, F1, size and compression come from each version's"
        " `conversion-report.json` (— where it has no figure).",
        "",
        *markdown_rows(rows),
        "",
        f"![{plot.name}]({plot.name})",
        "",
        "Each run's own report is in the folder named `v<version>-b<batch>`.",
    ]
    page = out / "comparison.md"
    page.write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = {"model": model, "versions": [asdict(r) | {"accuracy_delta": r.accuracy_delta} for r in rows]}
    (out / "comparison.json").write_text(json.dumps(finite(data), indent=2) + "\n", encoding="utf-8")
    return [page, out / "comparison.json", plot]
