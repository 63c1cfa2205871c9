"""``modelgate verify MODEL_DIR/VERSION --source FILE``: re-run a published version's numerical checks.

The version directory's ``conversion-report.json`` says which target the version is, its
inputs, outputs and tolerances. The source is inspected again (same safety rule, same
inputs: ``--samples`` or the generated set), the published artifact runs in its runtime and
is compared with the source exactly as ``modelgate convert`` did, and the same table is
printed. A quantized artifact (fp16, int8) is also compared with a fresh conversion of
the source at the same precision, under the fp32 tolerance: TFLite conversion is
deterministic, and quantization error is as large as the effect of a 1 % change to a
weight tensor, so only this comparison catches such a change (docs/converters.md).
Exit codes: 0 every check passed, 1 a mismatch, 2 bad input.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from converters import targets as catalogue
from converters.diagnose import Diagnosis
from converters.errors import BadInput
from converters.isolation import DEFAULT_TIMEOUT
from converters.pipeline import (
    ConversionRequest,
    Log,
    Plan,
    build_report,
    check_quantization,
    convert_all,
    outputs_file,
    prepare,
    verify_artifact,
)
from converters.publish import REPORT_JSON
from converters.report import ArtifactResult, ConversionReport
from converters.spec import from_json
from converters.verify import DEFAULT_TOLERANCES, Tolerance, compare
from gateway.core.config import CONFIG_FILE

FRESH_SUFFIX = " vs fresh conversion"


@dataclass(frozen=True)
class VerifyRequest:
    """What ``modelgate verify`` was asked."""

    version_dir: Path
    source: Path
    samples: Path | None = None
    labels: Path | None = None
    tolerances: dict[str, Tolerance] | None = None
    timeout: float = DEFAULT_TIMEOUT
    jobs: int = 2


@dataclass(frozen=True)
class Published:
    """A published version as its directory describes it."""

    model: str
    version: int
    target: str
    artifact: Path
    inputs: list[dict[str, Any]]
    outputs: list[str]
    tolerances: dict[str, Tolerance] = field(default_factory=dict)


def read_published(version_dir: Path) -> Published:
    """The version's target, artifact, tensors and tolerances, or :class:`BadInput` saying what is missing."""
    if not version_dir.is_dir() or not version_dir.name.isdigit():
        raise BadInput(
            f"{version_dir}: expected a published version directory, MODEL_DIR/VERSION (e.g. model_repo/m/3)"
        )
    report_file = version_dir / REPORT_JSON
    if not report_file.is_file():
        raise BadInput(
            f"{version_dir} has no {REPORT_JSON}: only versions published by `modelgate convert` can be re-verified"
        )
    try:
        report = json.loads(report_file.read_text(encoding="utf-8"))
        config = yaml.safe_load((version_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise BadInput(f"{version_dir}: cannot read its {REPORT_JSON} / {CONFIG_FILE} ({exc})") from None
    version = int(version_dir.name)
    entries = [a for a in report.get("artifacts", []) if a.get("published_version") == version]
    if not entries or entries[0].get("target") not in catalogue.TARGETS:
        raise BadInput(f"{report_file} names no artifact published as version {version}")
    target = str(entries[0]["target"])
    name = config.get("artifact") if isinstance(config, dict) else None
    artifact = (version_dir / str(name or catalogue.TARGETS[target].artifact)).resolve()
    if version_dir.resolve() not in artifact.parents or not artifact.exists():
        raise BadInput(f"{version_dir}: its artifact {name!r} is missing or outside the version directory")
    tolerances = {k: Tolerance(**v) for k, v in report.get("tolerances", {}).items() if k in DEFAULT_TOLERANCES}
    return Published(
        model=str(report.get("name", version_dir.parent.name)),
        version=version,
        target=target,
        artifact=artifact,
        inputs=list(report["inputs"]),
        outputs=[str(o["name"]) for o in report["outputs"]],
        tolerances=tolerances,
    )


def _fresh_checks(plan: Plan, result: ArtifactResult, fresh: Path) -> None:
    """Compare the published artifact's outputs with a fresh conversion's, under the fp32 tolerance."""
    fresh_result = verify_artifact(plan, result.target, fresh, {}, tag="fresh", compare_outputs=False)
    if fresh_result.stage == "run":
        result.fail(
            "reproduce", Diagnosis(f"a fresh conversion could not run: {fresh_result.reason}", fresh_result.action)
        )
        return
    published = dict(np.load(outputs_file(plan, "published")))
    reproduced = dict(np.load(outputs_file(plan, "fresh")))
    tolerance = plan.request.tolerances["fp32"]
    checks = [
        compare(
            key.split("/", 1)[1] + FRESH_SUFFIX, int(key.split("/", 1)[0]), published[key], reproduced[key], tolerance
        )
        for key in sorted(reproduced)
        if key in published
    ]
    result.checks.extend(checks)
    failed = [c for c in checks if not c.passed]
    if failed and result.passed:
        result.fail(
            "reproduce",
            Diagnosis(
                f"{failed[0].output} at batch {failed[0].batch}: {failed[0].reason}; the published file differs from "
                "a fresh conversion of the source at the same precision",
                "the artifact was changed after publication, or FILE is not its source: re-convert and republish",
            ),
        )


def reverify(request: VerifyRequest, log: Log | None = None) -> ConversionReport:
    """Re-run the checks of a published version against its source (BadInput for exit 2)."""
    published = read_published(request.version_dir)
    tolerances = {**DEFAULT_TOLERANCES, **published.tolerances, **(request.tolerances or {})}
    with tempfile.TemporaryDirectory(prefix="modelgate-verify-") as scratch:
        conversion = ConversionRequest(
            source=request.source,
            name=published.model,
            targets=published.target,
            repository=Path(scratch) / "unused-repository",
            samples=request.samples,
            labels=request.labels,
            input_spec=from_json(published.inputs),
            output_names=published.outputs,
            tolerances=tolerances,
            timeout=request.timeout,
            jobs=request.jobs,
        )
        plan = prepare(conversion, Path(scratch), log or (lambda _: None))
        reference = dict(np.load(plan.workdir / "reference.npz"))
        result = verify_artifact(plan, published.target, published.artifact, reference, tag="published")
        result.published_version = published.version
        built: dict[str, Path] = {}
        if result.precision != "fp32" and result.stage != "run":
            built = convert_all(plan)
            if published.target in built:
                _fresh_checks(plan, result, built[published.target])
            elif result.passed:
                result.fail("reproduce", plan.failures[published.target])
        check_quantization(plan, result, built)
        return build_report(plan, [result])
