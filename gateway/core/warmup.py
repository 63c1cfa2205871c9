"""Warm-up and verification of a freshly loaded version, before it gets any traffic.

Samples come from ``<version>/warmup/inputs.npz`` (one array per input name) when the
converter or the operator stored them there, else they are generated from the input spec
(dynamic dimensions = 1, a fixed seed). When ``<version>/warmup/expected.npz`` exists
(one array per output name) the first answer is checked against it
(``|a - b| <= atol + rtol * |b|``); a mismatch, a non-finite output or any error fails the
warm-up, and the version never serves.
"""

from __future__ import annotations

import asyncio
import zipfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gateway.core.codec.datatypes import numpy_dtype
from gateway.core.errors import GatewayError
from gateway.core.types import Signature, TensorSpec

WARMUP_DIR = "warmup"
INPUTS_FILE = "inputs.npz"
EXPECTED_FILE = "expected.npz"

InferFn = Callable[[Mapping[str, np.ndarray], Sequence[str]], Awaitable[dict[str, np.ndarray]]]


class WarmupFailed(Exception):
    """The version answered wrongly or not at all during warm-up; the message says how."""


@dataclass(frozen=True, slots=True)
class WarmupPolicy:
    requests: int = 3
    atol: float = 1e-4
    rtol: float = 1e-3
    timeout_seconds: float = 60.0


DEFAULT_WARMUP = WarmupPolicy()


@dataclass(frozen=True, slots=True)
class WarmupReport:
    requests: int
    source: str  # "stored samples" or "generated from the input spec"
    verified: bool  # checked against stored expected outputs

    def to_dict(self) -> dict[str, object]:
        return {"requests": self.requests, "samples": self.source, "verified": self.verified}


async def warm_up(
    call: InferFn, signature: Signature, version_dir: Path, policy: WarmupPolicy = DEFAULT_WARMUP
) -> WarmupReport:
    """Send ``policy.requests`` requests through ``call``; raise :class:`WarmupFailed` on any problem."""
    stored = _read_npz(version_dir / WARMUP_DIR / INPUTS_FILE)
    inputs = stored if stored is not None else generated_inputs(signature.inputs)
    _check_names("inputs.npz", inputs, [t.name for t in signature.inputs])
    expected = _read_npz(version_dir / WARMUP_DIR / EXPECTED_FILE)
    names = [t.name for t in signature.outputs]
    for index in range(policy.requests):
        try:
            async with asyncio.timeout(policy.timeout_seconds):
                outputs = await call(inputs, names)
        except TimeoutError:
            raise WarmupFailed(
                f"warm-up request {index + 1} got no answer within {policy.timeout_seconds:g} s"
            ) from None
        except GatewayError as exc:
            raise WarmupFailed(f"warm-up request {index + 1} failed: {exc.message}") from None
        if index == 0:
            _check_outputs(outputs, expected, names, policy)
    source = "stored samples" if stored is not None else "generated from the input spec"
    return WarmupReport(policy.requests, source, expected is not None)


def generated_inputs(specs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """One deterministic sample per input: dynamic dimensions 1, values in [0, 1) (BYTES: b"0")."""
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = tuple(1 if d < 0 else d for d in spec.shape)
        if spec.datatype == "BYTES":
            arrays[spec.name] = np.full(shape, b"0", dtype=object)
        elif spec.datatype == "BOOL":
            arrays[spec.name] = np.zeros(shape, dtype=bool)
        else:
            arrays[spec.name] = rng.random(shape).astype(numpy_dtype(spec.datatype))
    return arrays


def _check_outputs(
    outputs: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray] | None, names: Sequence[str],
    policy: WarmupPolicy,
) -> None:  # fmt: skip
    for name in names:
        if name not in outputs:
            raise WarmupFailed(f"warm-up answer has no output {name!r}")
        value = np.asarray(outputs[name])
        if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
            raise WarmupFailed(f"warm-up output {name!r} has NaN or Inf values")
    if expected is None:
        return
    _check_names("expected.npz", expected, list(names))
    for name, want in expected.items():
        got = np.asarray(outputs[name])
        if got.shape != want.shape:
            raise WarmupFailed(f"warm-up output {name!r} has shape {list(got.shape)}, expected {list(want.shape)}")
        if want.dtype.kind in "biufc":
            diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
            bound = policy.atol + policy.rtol * np.abs(want.astype(np.float64))
            if not np.all(diff <= bound):
                raise WarmupFailed(
                    f"warm-up output {name!r} differs from the stored expected output: max abs diff "
                    f"{float(diff.max()):.3g} (atol {policy.atol:g}, rtol {policy.rtol:g})"
                )
        elif not np.array_equal(got, want):
            raise WarmupFailed(f"warm-up output {name!r} differs from the stored expected output")


def _check_names(file: str, arrays: Mapping[str, np.ndarray], wanted: Sequence[str]) -> None:
    unknown = sorted(set(arrays) - set(wanted))
    if unknown:
        raise WarmupFailed(f"{WARMUP_DIR}/{file}: arrays {unknown} are not tensors of this version ({list(wanted)})")
    if file == INPUTS_FILE and set(arrays) != set(wanted):
        raise WarmupFailed(f"{WARMUP_DIR}/{file}: needs one array per input {list(wanted)}")


def _read_npz(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise WarmupFailed(f"{WARMUP_DIR}/{path.name}: not a readable .npz file: {exc}") from None
