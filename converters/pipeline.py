"""Orchestrate a conversion: inspect the source, convert, verify, profile, publish.

Every framework step runs in its own subprocess (:mod:`converters.isolation`); this
module only moves files and numpy arrays. Stages are separate functions so the Python
API and tests can run them one by one; :func:`run` chains them. Each target is converted
and verified on its own. Exit codes: 0 when every requested target passed and was
published, 1 when some failed to convert, to run or to verify (the passing ones are still
published; the report says which failed and why), 2 (:class:`BadInput`) for bad arguments
or an unusable source, in which case nothing is written to the repository.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters import quantization
from converters import targets as catalogue
from converters.diagnose import Diagnosis, conversion_failure, dependency_failure, runtime_failure, source_failure
from converters.errors import BadInput, StepFailed
from converters.isolation import DEFAULT_TIMEOUT, onnx2tf_path, run_step
from converters.profile import recommend, size_bytes
from converters.publish import Publication, publish
from converters.report import ArtifactResult, ConversionReport, summary_line, to_markdown
from converters.sources import detect_and_check, load_labels
from converters.spec import to_json
from converters.verify import DEFAULT_TOLERANCES, Tolerance, accuracy, compare, macro_f1
from gateway.core.config import CONFIG_FILE, MODEL_NAME_PATTERN, TensorConfig, VersionConfig, load_model_config
from gateway.core.errors import ConfigError
from gateway.core.types import TensorSpec

Log = Callable[[str], None]
MISMATCH_ACTION = (
    "the artifact's outputs differ from the source's beyond the tolerance, so it was not published; "
    "widen --tolerance PREC=ATOL,RTOL only if that difference is acceptable"
)
DEFAULT_JOBS = 2


def _quiet(_: str) -> None:
    """Default logger: say nothing."""


@dataclass(frozen=True)
class ConversionRequest:
    """What the user asked for (the CLI's arguments, or the Python API's)."""

    source: Path
    name: str
    targets: str
    repository: Path
    samples: Path | None = None
    labels: Path | None = None
    input_spec: list[TensorSpec] | None = None
    output_names: list[str] | None = None
    tolerances: dict[str, Tolerance] = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))
    timeout: float = DEFAULT_TIMEOUT
    #: Conversion/verification subprocesses run at once (each may take a CPU core and ~0.7 GB).
    jobs: int = DEFAULT_JOBS


@dataclass
class Plan:
    """A validated request plus what inspecting the source found."""

    request: ConversionRequest
    kind: str
    targets: list[str]
    workdir: Path
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    count: int
    labels: np.ndarray | None
    log: Log = _quiet
    methods: dict[str, str] = field(default_factory=dict)
    #: Targets whose conversion failed (or whose input artifact did), with the reason.
    failures: dict[str, Diagnosis] = field(default_factory=dict)
    #: Recurrent ops (lstm, gru, ...) in a PyTorch source; targets this model cannot have.
    recurrent: list[str] = field(default_factory=list)
    unsupported: set[str] = field(default_factory=set)
    #: Targets published with a fixed batch size (their artifact is only correct at that batch).
    pinned: dict[str, int] = field(default_factory=dict)

    @property
    def output_names(self) -> list[str]:
        return [o["name"] for o in self.outputs]

    def artifact_path(self, target: str) -> Path:
        return self.workdir / target / catalogue.TARGETS[target].artifact


def validate_request(request: ConversionRequest) -> tuple[str, list[str]]:
    """Checks that need no framework: name, source file, targets, existing model config."""
    if not MODEL_NAME_PATTERN.match(request.name):
        raise BadInput(f"--name {request.name!r}: use letters, digits, '_', '.', '-' (max 128), starting alnum")
    kind = detect_and_check(request.source)
    targets = catalogue.parse_targets(request.targets, kind)
    for option, path in (("--samples", request.samples), ("--labels", request.labels)):
        if path is not None and not path.is_file():
            raise BadInput(f"{option} {path}: no such file")
    if request.repository.exists() and not request.repository.is_dir():
        raise BadInput(f"--model-repository {request.repository}: not a directory")
    existing = request.repository / request.name / CONFIG_FILE
    if existing.exists():
        try:
            load_model_config(existing)
        except ConfigError as exc:
            raise BadInput(f"the existing model config is invalid, fix it first: {exc}") from None
    return kind, targets


def prepare(request: ConversionRequest, workdir: Path, log: Log = _quiet) -> Plan:
    """Validate the request and inspect the source in a subprocess (signature, inputs, reference outputs)."""
    kind, targets = validate_request(request)
    log(f"source {request.source} is {kind}; targets: {', '.join(targets)}")
    try:
        info = _inspect(request, kind, workdir)
    except StepFailed as exc:
        raise BadInput(source_failure(request.source, exc)) from None
    labels = load_labels(request.labels, int(info["count"])) if request.labels else None
    plan = Plan(request, kind, targets, workdir, info["inputs"], info["outputs"], int(info["count"]), labels, log)
    plan.recurrent = list(info.get("recurrent") or [])
    _plan_recurrent(plan)
    return plan


def _plan_recurrent(plan: Plan) -> None:
    """Recurrent layers. PyTorch LSTM/GRU: no SavedModel/TFLite (onnx2tf fails on them), TorchScript pinned
    to batch 1. Keras LSTM/GRU: no TFLite (its converter cannot lower their TensorList ops at a dynamic batch
    without TensorFlow Select ops, which the TFLite runtime here lacks); SavedModel and ONNX work."""
    if not plan.recurrent:
        return
    layers = "/".join(op.upper() for op in plan.recurrent)
    torch_source = catalogue.FAMILIES[plan.kind] == "torch"
    refused = ("savedmodel", "tflite") if torch_source else ("tflite",)
    for target in catalogue.build_order(plan.targets, plan.kind):
        if catalogue.TARGETS[target].format in refused:
            plan.unsupported.add(target)
            plan.failures[target] = _recurrent_diagnosis(layers, torch_source)
    if plan.kind == "torch_export" and "torchscript" in plan.targets:
        plan.pinned["torchscript"] = 1
        plan.log(f"torchscript: traced and published at batch 1 only ({layers}: a trace fixes the batch size)")


def _recurrent_diagnosis(layers: str, torch_source: bool) -> Diagnosis:
    if torch_source:
        return Diagnosis(
            f"not supported for this model: PyTorch {layers} layers cannot be converted to SavedModel/TFLite here "
            "(onnx2tf fails on recurrent layers), so it was not attempted",
            "use the onnx or torchscript target",
        )
    return Diagnosis(
        f"not supported for this model: Keras {layers} layers cannot be converted to TFLite here (at a dynamic "
        "batch TFLite's converter needs TensorFlow Select ops for them, which the TFLite runtime here lacks), "
        "so it was not attempted",
        "use the onnx or savedmodel target",
    )


def _inspect(request: ConversionRequest, kind: str, workdir: Path) -> dict[str, Any]:
    return run_step(
        "converters.sources:inspect",
        {
            "source": str(request.source.resolve()),
            "kind": kind,
            "input_spec": to_json(request.input_spec) if request.input_spec else None,
            "output_names": request.output_names,
            "samples": str(request.samples.resolve()) if request.samples else None,
            "workdir": str(workdir),
        },
        workdir / "steps",
        timeout=request.timeout,
    )


def convert_all(plan: Plan) -> dict[str, Path]:
    """Build every requested target and the intermediates it needs; returns the ones that were built.

    Each target is converted on its own: a failure is recorded in ``plan.failures`` (with
    its cause in our words) and only the targets built from it fail with it. Targets whose
    input is ready are built concurrently (``request.jobs`` subprocesses).
    """
    built: dict[str, Path] = {}
    pending = catalogue.build_order(plan.targets, plan.kind)
    with ThreadPoolExecutor(max_workers=plan.request.jobs) as pool:
        while pending:
            for target in pending:
                needed = catalogue.recipe(target, plan.kind).requires
                if needed is not None and needed in plan.failures and target not in plan.failures:
                    plan.failures[target] = dependency_failure(needed, plan.failures[needed])
            pending = [t for t in pending if t not in plan.failures]
            ready = [t for t in pending if catalogue.recipe(t, plan.kind).requires in (None, *built)]
            if not ready:
                break
            for target, failure in zip(ready, pool.map(lambda t: _convert_one(plan, t, built), ready), strict=True):
                if failure is None:
                    built[target] = plan.artifact_path(target)
                else:
                    plan.failures[target] = failure
            pending = [t for t in pending if t not in ready]
    return built


def _convert_one(plan: Plan, target: str, built: dict[str, Path]) -> Diagnosis | None:
    recipe = catalogue.recipe(target, plan.kind)
    source = built[recipe.requires] if recipe.requires else plan.request.source.resolve()
    output = plan.artifact_path(target)
    output.parent.mkdir(parents=True, exist_ok=True)
    plan.log(f"converting to {target} ...")
    kwargs: dict[str, Any] = {
        "source": str(source), "source_kind": plan.kind, "output": str(output), "inputs": plan.inputs,
        "output_names": plan.output_names, "precision": catalogue.TARGETS[target].precision,
    }  # fmt: skip
    if target in plan.pinned:
        kwargs["trace_batch"] = plan.pinned[target]
    extra = [onnx2tf_path()] if recipe.uses_onnx2tf else []
    try:
        answer = run_step(
            recipe.step, kwargs, plan.workdir / "steps", timeout=plan.request.timeout, extra_path=extra, tag=target
        )
    except (BadInput, StepFailed) as exc:
        return conversion_failure(target, exc, plan.request.timeout)
    plan.methods[target] = str(answer.get("method", ""))
    return None


def verify_all(plan: Plan, built: dict[str, Path]) -> list[ArtifactResult]:
    """Run each requested artifact in its runtime, compare with the source, profile it."""
    reference = dict(np.load(plan.workdir / "reference.npz"))
    runnable = [t for t in plan.targets if t in built]
    with ThreadPoolExecutor(max_workers=plan.request.jobs) as pool:
        checked = pool.map(lambda t: verify_artifact(plan, t, built[t], reference), runnable)
        verified = dict(zip(runnable, checked, strict=True))
    results = [verified[t] if t in verified else _not_built(plan, t) for t in plan.targets]
    for result in results:
        check_quantization(plan, result, built)
    return results


def check_quantization(plan: Plan, result: ArtifactResult, built: dict[str, Path]) -> None:
    """Size versus the fp32 baseline, and a quantized label only for a file that is quantized and smaller."""
    baseline = catalogue.recipe(result.target, plan.kind).baseline
    if result.precision == "fp32":
        result.compression_vs_fp32 = 1.0 if result.size_bytes else None
    elif baseline in built and result.size_bytes:
        result.compression_vs_fp32 = result.size_bytes / size_bytes(built[baseline])
    if result.passed:
        problem = quantization.check(
            result.target, result.precision, result.quantized_tensors, result.compression_vs_fp32
        )
        if problem is not None:
            result.fail("quantization", problem)


def _not_built(plan: Plan, target: str) -> ArtifactResult:
    spec = catalogue.TARGETS[target]
    result = ArtifactResult(target, spec.format, spec.precision, spec.backend)
    result.fail("unsupported" if target in plan.unsupported else "convert", plan.failures[target])
    return result


def verify_artifact(
    plan: Plan,
    target: str,
    artifact: Path,
    reference: dict[str, np.ndarray],
    tag: str = "",
    *,
    compare_outputs: bool = True,
) -> ArtifactResult:
    """Run ``artifact`` (a ``target``) in its runtime, profile it and compare it with ``reference``.

    Its outputs are kept in ``<workdir>/<tag or target>.outputs.npz`` (keys ``<batch>/<output>``).
    """
    spec = catalogue.TARGETS[target]
    result = ArtifactResult(target, spec.format, spec.precision, spec.backend, plan.methods.get(target, ""))
    result.size_bytes = size_bytes(artifact)
    plan.log(f"verifying {target} ...")
    outputs_path = outputs_file(plan, tag or target)
    try:
        answer = run_step(
            "converters.runtimes:run",
            {
                "fmt": spec.format,
                "artifact": str(artifact),
                "inputs": str(plan.workdir / "inputs.npz"),
                "output_names": plan.output_names,
                "output": str(outputs_path),
                "lock": str(plan.workdir / "profile.lock"),
                "max_batch": plan.pinned.get(target),
            },
            plan.workdir / "steps",
            timeout=plan.request.timeout,
            tag=tag or target,
        )
    except (BadInput, StepFailed) as exc:
        result.fail("run", runtime_failure(target, exc, plan.request.timeout))
        return result
    result.load_s, result.latency_b1_s, result.latency_b32_s = (
        answer["load_s"],
        answer["latency_b1_s"],
        answer["latency_b32_s"],
    )
    result.signature = _signature(answer["signature"], plan, plan.pinned.get(target))
    result.latency = {k: dict(v) for k, v in answer["latency"].items()}
    result.peak_rss_bytes = int(answer["peak_rss_bytes"])
    result.compression_vs_source = result.size_bytes / size_bytes(plan.request.source) if result.size_bytes else None
    result.quantized_tensors = quantization.quantized_tensors(spec.precision, answer.get("tensor_dtypes"))
    if compare_outputs:
        produced = dict(np.load(outputs_path))
        _check(plan, result, produced, reference, [int(b) for b in answer["batches"]])
    return result


def outputs_file(plan: Plan, tag: str) -> Path:
    """Where the verification of ``tag`` keeps the artifact's outputs."""
    return plan.workdir / f"{tag}.outputs.npz"


def _signature(
    found: dict[str, list[dict[str, Any]]], plan: Plan, batch: int | None
) -> dict[str, list[dict[str, Any]]]:
    """The artifact's own signature; formats without one (TorchScript, .pt2) take the source's.

    A pinned batch replaces the dynamic batch dimension, so the gateway refuses other sizes.
    """
    signature = {"inputs": found["inputs"] or plan.inputs, "outputs": found["outputs"] or plan.outputs}
    if batch is None:
        return signature
    return {k: [{**t, "shape": [batch, *t["shape"][1:]]} for t in v] for k, v in signature.items()}


def _check(
    plan: Plan,
    result: ArtifactResult,
    produced: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    batches: list[int],
) -> None:
    tolerance = plan.request.tolerances[result.precision]
    for batch in batches:
        for name in plan.output_names:
            key = f"{batch}/{name}"
            if key not in produced:
                cause = f"the artifact has no output {name!r} (it has {sorted(produced)})"
                result.fail("verify", Diagnosis(cause, "report this model: the converter lost an output"))
                return
            result.checks.append(compare(name, batch, produced[key], reference[name][:batch], tolerance))
    failed = [c for c in result.checks if not c.passed]
    result.passed = not failed
    if failed:
        cause = f"{failed[0].output} at batch {failed[0].batch}: {failed[0].reason}"
        result.fail("verify", Diagnosis(cause, MISMATCH_ACTION))
    if plan.labels is not None:
        scores = produced[f"{plan.count}/{plan.output_names[0]}"]
        result.accuracy, result.macro_f1 = accuracy(scores, plan.labels), macro_f1(scores, plan.labels)


def version_config(plan: Plan, result: ArtifactResult) -> VersionConfig:
    """The version's config.yaml: backend from the format, tensors as the artifact declares them.

    No ``parameters``: every backend validates its own parameters strictly, and the
    defaults serve these artifacts; the precision is in the label and the report.
    """
    spec = catalogue.TARGETS[result.target]
    values: dict[str, Any] = {
        "artifact": spec.artifact,
        "inputs": [TensorConfig(**t) for t in result.signature["inputs"]],
        "outputs": [TensorConfig(**t) for t in result.signature["outputs"]],
        "platform": spec.platform,
    }
    if spec.backend is not None:
        values["backend"] = spec.backend
    return VersionConfig(**values)


def build_report(plan: Plan, results: list[ArtifactResult]) -> ConversionReport:
    """The report of a run (nothing published yet): figures, verdicts, recommendation, exit code."""
    report = ConversionReport(
        name=plan.request.name,
        source=str(plan.request.source),
        source_kind=plan.kind,
        inputs=plan.inputs,
        outputs=plan.outputs,
        sample_count=plan.count,
        samples=str(plan.request.samples) if plan.request.samples else "generated from the input spec (seed 0)",
        tolerances=plan.request.tolerances,
        artifacts=results,
        source_size_bytes=size_bytes(plan.request.source),
    )
    if plan.labels is not None:
        scores = np.load(plan.workdir / "reference.npz")[plan.output_names[0]]
        report.source_accuracy, report.source_macro_f1 = accuracy(scores, plan.labels), macro_f1(scores, plan.labels)
    report.recommended = recommend([{**r.to_dict(), "servable": r.servable} for r in results])
    report.exit_code = 0 if all(r.passed for r in results) else 1
    return report


def finish(plan: Plan, results: list[ArtifactResult]) -> ConversionReport:
    """Recommend, publish the passing artifacts, and build the report with the exit code."""
    report = build_report(plan, results)
    passing = [r for r in results if r.passed]
    if passing:
        items = [Publication(r.target, plan.artifact_path(r.target), version_config(plan, r)) for r in passing]
        publish(plan.request.repository / plan.request.name, items, lambda v: _render(report, v), report.recommended)
    for result in results:
        plan.log(summary_line(result))
    return report


def _render(report: ConversionReport, versions: dict[str, int]) -> tuple[str, str]:
    import json

    for artifact in report.artifacts:
        artifact.published_version = versions.get(artifact.target)
    report.exit_code = 0 if all(a.passed for a in report.artifacts) else 1
    return json.dumps(report.to_dict(), indent=2), to_markdown(report)


def run(request: ConversionRequest, log: Log = _quiet) -> ConversionReport:
    """The whole conversion in one call (what ``modelgate convert`` does); raises BadInput for exit 2."""
    with tempfile.TemporaryDirectory(prefix="modelgate-convert-") as scratch:
        plan = prepare(request, Path(scratch), log)
        built = convert_all(plan)
        return finish(plan, verify_all(plan, built))
