"""Check every answer, not only its status.

Three levels, strongest first, chosen by the runner for the run (see :class:`CheckMode`):

- ``digits``: the demo MLP on digits images with known labels: the output is a probability
  distribution per row and its argmax is the image's digit;
- ``expected``: the conversion stored (or the user gave) the outputs each sample must produce:
  every output within the version's tolerance (``|got - want| <= atol + rtol * |want|``; BYTES exact);
- ``generic``: every output the metadata lists is present, with its datatype and shape (dynamic
  dimensions free, the batch dimension equal to the request's batch) and only finite numbers.

The generic checks run at every level. A difference raises :class:`WrongAnswer` with a message
naming what differs, which the users report as a Locust failure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from loadtests.tensors import TensorSpec
from loadtests.wire import Output, WrongAnswer

__all__ = ["CheckMode", "Checker", "WrongAnswer"]

#: How far a row of probabilities may sum from 1 (float32 softmax is well inside this).
SUM_TOLERANCE = 1e-3


class CheckMode(StrEnum):
    DIGITS = "digits"
    EXPECTED = "expected"
    GENERIC = "generic"


@dataclass(frozen=True)
class Checker:
    """The checks of one run: the output signature, the level and the tolerance."""

    outputs: tuple[TensorSpec, ...]
    batched: bool
    mode: CheckMode = CheckMode.GENERIC
    atol: float = 1e-5
    rtol: float = 1e-4

    def check(
        self,
        got: Mapping[str, Output],
        batch: int,
        expected: Mapping[str, np.ndarray],
        labels: np.ndarray | None,
    ) -> None:
        for spec in self.outputs:
            output = got.get(spec.name)
            if output is None:
                raise WrongAnswer(f"response has no output {spec.name!r}")
            check_signature(spec, output, batch if self.batched else None)
        if self.mode is CheckMode.EXPECTED:
            for name, want in expected.items():
                if name in got:
                    check_close(name, got[name].data, want, self.atol, self.rtol)
        if self.mode is CheckMode.DIGITS and labels is not None and self.outputs:
            check_digits(got[self.outputs[0].name].data, labels)


def check_signature(spec: TensorSpec, output: Output, batch: int | None) -> None:
    """Datatype (when the protocol carries it), rank and fixed dimensions, batch, finiteness."""
    if output.datatype is not None and output.datatype != spec.datatype:
        raise WrongAnswer(f"output {spec.name!r} has datatype {output.datatype!r}, expected {spec.datatype!r}")
    shape = output.data.shape
    if len(shape) != len(spec.shape) or any(w >= 0 and g != w for g, w in zip(shape, spec.shape, strict=False)):
        raise WrongAnswer(f"output {spec.name!r} has shape {list(shape)}, expected {list(spec.shape)}")
    if batch is not None and spec.batched and shape[0] != batch:
        raise WrongAnswer(f"output {spec.name!r} has {shape[0]} rows for a batch of {batch}")
    data = output.data
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise WrongAnswer(f"output {spec.name!r} contains NaN or infinity")


def check_close(name: str, got: np.ndarray, want: np.ndarray, atol: float, rtol: float) -> None:
    if got.shape != want.shape:
        raise WrongAnswer(f"output {name!r} has shape {list(got.shape)}, the stored answer {list(want.shape)}")
    if want.dtype == object or got.dtype == object:
        if not all(bytes(a) == bytes(b) for a, b in zip(got.reshape(-1), want.reshape(-1), strict=True)):
            raise WrongAnswer(f"output {name!r} differs from the stored answer")
        return
    g, w = got.astype(np.float64), want.astype(np.float64)
    excess = np.abs(g - w) - (atol + rtol * np.abs(w))
    if excess.size and excess.max() > 0:
        worst = int(excess.argmax())
        raise WrongAnswer(
            f"output {name!r} differs from the stored answer by {abs(g.flat[worst] - w.flat[worst]):.3g} "
            f"(tolerance atol {atol:g} + rtol {rtol:g}; {int((excess > 0).sum())} of {excess.size} values)"
        )


def check_digits(probs: np.ndarray, labels: np.ndarray) -> None:
    """Each row a probability distribution whose argmax is the image's digit."""
    if probs.ndim != 2 or probs.shape[0] != len(labels):
        raise WrongAnswer(f"output shape {list(probs.shape)}, expected [{len(labels)}, classes]")
    sums = probs.sum(axis=1)
    if np.abs(sums - 1.0).max() > SUM_TOLERANCE:
        raise WrongAnswer(f"probabilities sum to {float(sums[np.abs(sums - 1).argmax()]):.4f}, not 1")
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    if wrong.size:
        first = int(wrong[0])
        raise WrongAnswer(
            f"wrong answer: expected digit {int(labels[first])}, got {int(predicted[first])}"
            f" ({wrong.size} of {len(labels)} in the batch wrong)"
        )


def digits_signature(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> bool:
    """The demo MLP's signature: one FP32 [-1, 64] input, an FP32 [-1, 10] output first."""
    return (
        len(inputs) == 1
        and inputs[0].datatype == "FP32"
        and inputs[0].shape == (-1, 64)
        and bool(outputs)
        and outputs[0].datatype == "FP32"
        and outputs[0].shape == (-1, 10)
    )
