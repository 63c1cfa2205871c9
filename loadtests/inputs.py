"""Where a run's inputs and expected answers come from, strongest source first.

1. ``--inputs FILE`` (``.npy`` for a one-input model, ``.npz`` keyed by input name) and optionally
   ``--expected FILE`` (``.npy``/``.npz`` keyed by output name), first axis = samples;
2. samples and expected outputs the converter stored beside the version (``--model-repository``):
   ``samples.npz``/``.npy`` and ``expected.npz``/``.npy`` in the version directory (or the files the
   version's ``conversion-report.json`` names there), checked within the version's tolerance;
3. the demo MLP's signature: digits images with their labels;
4. random inputs generated from the metadata.

Every problem with a file is a :class:`LoadTestError` naming the file, the tensor and the rule.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loadtests.answers import CheckMode
from loadtests.errors import LoadTestError
from loadtests.tensors import DEFAULT_DYNAMIC_SIZE, Pool, TensorSpec, generated_pool, is_batched, numpy_dtype

REPORT_JSON = "conversion-report.json"
SAMPLE_FILES = ("samples.npz", "samples.npy")
EXPECTED_FILES = ("expected.npz", "expected.npy")
DEFAULT_TOLERANCE = (1e-5, 1e-4)


@dataclass(frozen=True)
class Source:
    """The pool a run draws from, how its answers are checked, and a line saying where it came from."""

    pool: Pool
    mode: CheckMode
    atol: float
    rtol: float
    origin: str


def read_arrays(path: Path, specs: Sequence[TensorSpec], what: str) -> dict[str, np.ndarray]:
    """``.npy`` (one tensor) or ``.npz`` (keyed by tensor name) as ``{name: array}``."""
    try:
        if path.suffix == ".npy":
            if len(specs) != 1:
                names = ", ".join(s.name for s in specs)
                raise LoadTestError(f"{what} {path}: a .npy holds one tensor; the model has {names}: use a .npz")
            return {specs[0].name: np.load(path, allow_pickle=False)}
        if path.suffix != ".npz":
            raise LoadTestError(f"{what} {path}: expected a .npy or .npz file")
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        if isinstance(exc, LoadTestError):
            raise
        reason = "cannot be read without pickles" if "pickle" in str(exc) else "is not a readable numpy file"
        raise LoadTestError(f"{what} {path}: {reason}") from None


def conform(array: np.ndarray, spec: TensorSpec, batched: bool, what: str) -> np.ndarray:
    """The array in the spec's datatype, first axis = samples, checked against the fixed dimensions."""
    if spec.datatype == "BYTES":
        if array.dtype.kind not in "USO":
            raise LoadTestError(f"{what}: {spec.name!r} is BYTES; the file holds {array.dtype} values")
        out = np.empty(array.shape, dtype=object)
        out.reshape(-1)[:] = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in array.reshape(-1)]
        array = out
    else:
        target = numpy_dtype(spec.datatype)
        if array.dtype.kind in "USO" or not np.can_cast(array.dtype, target, casting="same_kind"):
            raise LoadTestError(f"{what}: {spec.name!r} is {spec.datatype}; the file holds {array.dtype} values")
        array = array.astype(target)
    dims = spec.shape[1:] if batched else spec.shape
    if not batched and array.ndim == len(dims):
        array = array[None]
    if array.ndim != len(dims) + 1 or any(w >= 0 and g != w for g, w in zip(array.shape[1:], dims, strict=True)):
        raise LoadTestError(
            f"{what}: {spec.name!r} has shape {list(array.shape)}; the model needs "
            f"[samples, {', '.join(str(d) for d in dims)}] (-1 = any size)"
        )
    return array


def pool_from_files(
    inputs_file: Path, expected_file: Path | None, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
    batched: bool,
) -> Pool:  # fmt: skip
    """A pool from user (or converter) files; every input needed, every expected output known to the model."""
    given = read_arrays(inputs_file, inputs, "--inputs")
    missing = [s.name for s in inputs if s.name not in given]
    if missing:
        raise LoadTestError(f"--inputs {inputs_file}: no array for input(s) {', '.join(missing)}")
    arrays = {s.name: conform(given[s.name], s, batched, f"--inputs {inputs_file}") for s in inputs}
    expected: dict[str, np.ndarray] = {}
    if expected_file is not None:
        by_name = {s.name: s for s in outputs}
        for name, array in read_arrays(expected_file, outputs, "--expected").items():
            if name not in by_name:
                raise LoadTestError(f"--expected {expected_file}: {name!r} is not an output ({', '.join(by_name)})")
            expected[name] = conform(array, by_name[name], batched, f"--expected {expected_file}")
    counts = {len(a) for a in (*arrays.values(), *expected.values())}
    if len(counts) != 1:
        raise LoadTestError(f"--inputs/--expected: every array needs the same number of samples, got {sorted(counts)}")
    return Pool(arrays, expected)


def version_report(model_dir: Path, version: str) -> dict[str, Any] | None:
    """The version's ``conversion-report.json``, or None if there is none or it is not JSON."""
    path = model_dir / version / REPORT_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def artifact_of(report: dict[str, Any], version: str) -> dict[str, Any] | None:
    """The report's artifact published as ``version``."""
    for artifact in report.get("artifacts") or []:
        if isinstance(artifact, dict) and str(artifact.get("published_version")) == version:
            return artifact
    return None


def tolerance_of(report: dict[str, Any] | None, version: str) -> tuple[float, float]:
    """``(atol, rtol)`` of the version's precision in its conversion report (fp32's defaults otherwise)."""
    if report is None:
        return DEFAULT_TOLERANCE
    artifact = artifact_of(report, version) or {}
    tolerances = report.get("tolerances") or {}
    entry = tolerances.get(str(artifact.get("precision", "fp32"))) if isinstance(tolerances, dict) else None
    if not isinstance(entry, dict):
        return DEFAULT_TOLERANCE
    try:
        return float(entry["atol"]), float(entry["rtol"])
    except (KeyError, TypeError, ValueError):
        return DEFAULT_TOLERANCE


def _inside(folder: Path, name: Any) -> Path | None:
    if not isinstance(name, str) or not name:
        return None
    path = (folder / name).resolve()
    return path if path.is_file() and path.is_relative_to(folder.resolve()) else None


def stored_files(model_dir: Path, version: str, report: dict[str, Any] | None) -> tuple[Path | None, Path | None]:
    """The samples and expected outputs the converter stored in the version directory, if any."""
    folder = model_dir / version
    named = artifact_of(report, version) if report is not None else None
    candidates: list[tuple[Any, Any]] = []
    for holder in (named or {}, report or {}):
        candidates.append((holder.get("samples_file"), holder.get("expected_file")))
    for samples_name, expected_name in candidates:
        samples, expected = _inside(folder, samples_name), _inside(folder, expected_name)
        if samples is not None:
            return samples, expected
    samples = next((folder / n for n in SAMPLE_FILES if (folder / n).is_file()), None)
    expected = next((folder / n for n in EXPECTED_FILES if (folder / n).is_file()), None)
    return samples, expected


@dataclass(frozen=True)
class SourceRequest:
    """What the command line says about inputs, and where the version's own files are."""

    inputs_file: Path | None = None
    expected_file: Path | None = None
    atol: float | None = None
    rtol: float | None = None
    model_dir: Path | None = None
    version: str | None = None
    dynamic_size: int = DEFAULT_DYNAMIC_SIZE
    seed: int = 0


def choose_source(request: SourceRequest, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> Source:
    """The strongest source available (see the module docstring)."""
    from loadtests.answers import digits_signature
    from loadtests.payloads import digits_pool

    batched = is_batched(inputs)
    report = None
    if request.model_dir is not None and request.version is not None:
        report = version_report(request.model_dir, request.version)
    atol, rtol = tolerance_of(report, request.version or "")
    atol = request.atol if request.atol is not None else atol
    rtol = request.rtol if request.rtol is not None else rtol
    if request.inputs_file is not None:
        pool = pool_from_files(request.inputs_file, request.expected_file, inputs, outputs, batched)
        mode = CheckMode.EXPECTED if pool.expected else CheckMode.GENERIC
        return Source(pool, mode, atol, rtol, f"inputs from {request.inputs_file}")
    if request.expected_file is not None:
        raise LoadTestError("--expected needs --inputs: the expected outputs of which inputs?")
    stored = _stored_source(request, inputs, outputs, batched, report)
    if stored is not None:
        return Source(stored, CheckMode.EXPECTED if stored.expected else CheckMode.GENERIC, atol, rtol,
                      f"samples stored with version {request.version}")  # fmt: skip
    if digits_signature(inputs, outputs):
        return Source(digits_pool(inputs[0].name, request.seed), CheckMode.DIGITS, atol, rtol, "digits images")
    return Source(
        generated_pool(inputs, request.dynamic_size, request.seed), CheckMode.GENERIC, atol, rtol,
        "generated from the metadata",
    )  # fmt: skip


def _stored_source(
    request: SourceRequest, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], batched: bool,
    report: dict[str, Any] | None,
) -> Pool | None:  # fmt: skip
    """The converter's stored samples; None (fall back) when there are none or they do not fit the model."""
    if request.model_dir is None or request.version is None:
        return None
    samples, expected = stored_files(request.model_dir, request.version, report)
    if samples is None:
        return None
    try:
        return pool_from_files(samples, expected, inputs, outputs, batched)
    except LoadTestError:
        return None
