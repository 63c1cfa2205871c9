"""Numerical verification of an artifact against its source model (pure numpy).

Per output and batch: max absolute error, max relative error (only where the reference
is non-zero, so there is never a division by zero), the ``|a - b| <= atol + rtol * |b|``
verdict (``np.allclose``'s rule), NaN/Inf in the artifact's output (always a failure),
and for classifier-shaped outputs ([batch, classes]) top-1 agreement with the source.
A disagreement where the source's top two scores are within ``atol`` of each other is
a tie, not an error: it is counted apart and excluded from the agreement ratio.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """Bounds for one precision: elementwise ``|a - b| <= atol + rtol * |b|`` and top-1 agreement."""

    atol: float
    rtol: float
    min_top1: float = 0.99


#: Measured on the demo models (docs/converters.md): fp32 errors ~2e-7, fp16 ~1.6e-4, int8 ~1.6e-3.
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(atol=1e-5, rtol=1e-4),
    "fp16": Tolerance(atol=5e-3, rtol=1e-2),
    "int8": Tolerance(atol=5e-2, rtol=1e-1),
}


@dataclass(frozen=True)
class OutputCheck:
    """The comparison of one output at one batch size."""

    output: str
    batch: int
    max_abs_error: float
    max_rel_error: float
    within_tolerance: bool
    non_finite: int
    top1_agreement: float | None
    top1_ties: int
    shape_ok: bool
    passed: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: NaN and infinities become the strings "nan", "inf", "-inf"."""
        return {k: json_number(v) for k, v in asdict(self).items()}


def json_number(value: Any) -> Any:
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


def compare(output: str, batch: int, actual: np.ndarray, expected: np.ndarray, tolerance: Tolerance) -> OutputCheck:
    """Check ``actual`` (artifact) against ``expected`` (source) under ``tolerance``."""
    if actual.shape != expected.shape:
        return OutputCheck(
            output,
            batch,
            float("inf"),
            float("inf"),
            False,
            0,
            None,
            0,
            False,
            False,
            f"shape {list(actual.shape)} != source {list(expected.shape)}",
        )
    a = actual.astype(np.float64)
    b = expected.astype(np.float64)
    non_finite = int(np.count_nonzero(~np.isfinite(a)))
    diff = np.abs(a - b)
    max_abs = _finite_max(diff)
    max_rel = _max_relative(diff, np.abs(b))
    within = bool(np.all(diff <= tolerance.atol + tolerance.rtol * np.abs(b)))
    agreement, ties = top1(a, b, tolerance.atol)
    reason = _reason(non_finite, within, agreement, tolerance, max_abs)
    return OutputCheck(output, batch, max_abs, max_rel, within, non_finite, agreement, ties, True, not reason, reason)


def _max_relative(diff: np.ndarray, magnitude: np.ndarray) -> float:
    nonzero = magnitude > 0
    if not np.any(nonzero):
        return 0.0
    return _finite_max(diff[nonzero] / magnitude[nonzero])


def _finite_max(values: np.ndarray) -> float:
    """Largest value, NaN if any value is NaN (the NaN/Inf count reports those), 0 for empty."""
    if values.size == 0:
        return 0.0
    if np.isnan(values).any():
        return float("nan")
    return float(values.max())


def top1(actual: np.ndarray, expected: np.ndarray, atol: float) -> tuple[float | None, int]:
    """Share of rows whose argmax agrees (ties excluded) and the number of ties; None if not a classifier."""
    if expected.ndim != 2 or expected.shape[1] < 2 or len(expected) == 0:
        return None, 0
    ordered = np.sort(expected, axis=1)
    tie = (ordered[:, -1] - ordered[:, -2]) <= atol
    agree = actual.argmax(axis=1) == expected.argmax(axis=1)
    counted = ~tie | agree
    if not np.any(counted):
        return 1.0, int(np.count_nonzero(tie))
    return float(np.mean(agree[counted])), int(np.count_nonzero(tie & ~agree))


def _reason(non_finite: int, within: bool, agreement: float | None, tolerance: Tolerance, max_abs: float) -> str:
    if non_finite:
        return f"{non_finite} NaN/Inf value(s)"
    if not within:
        return f"max abs error {max_abs:.3g} exceeds atol {tolerance.atol:g} + rtol {tolerance.rtol:g}·|ref|"
    if agreement is not None and agreement < tolerance.min_top1:
        return f"top-1 agreement {agreement:.2%} below {tolerance.min_top1:.0%}"
    return ""


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Top-1 accuracy of classifier scores against integer labels; None if shapes do not fit."""
    if scores.ndim != 2 or len(scores) != len(labels):
        return None
    return float(np.mean(scores.argmax(axis=1) == labels))


def macro_f1(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Unweighted mean of per-class F1 over the classes in the labels or the predictions; None if not a classifier."""
    if scores.ndim != 2 or len(scores) != len(labels) or len(labels) == 0:
        return None
    predicted = scores.argmax(axis=1)
    f1s = []
    for cls in np.union1d(labels, predicted):
        tp = int(np.count_nonzero((predicted == cls) & (labels == cls)))
        fp = int(np.count_nonzero((predicted == cls) & (labels != cls)))
        fn = int(np.count_nonzero((predicted != cls) & (labels == cls)))
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s))


def parse_tolerance(text: str) -> tuple[str, Tolerance]:
    """``fp16=ATOL,RTOL[,MIN_TOP1]`` (the CLI's --tolerance) -> (precision, Tolerance)."""
    precision, _, values = text.partition("=")
    if precision not in DEFAULT_TOLERANCES:
        raise ValueError(f"--tolerance {text!r}: precision must be one of {', '.join(DEFAULT_TOLERANCES)}")
    try:
        numbers = [float(v) for v in values.split(",")]
    except ValueError:
        raise ValueError(f"--tolerance {text!r}: expected {precision}=ATOL,RTOL[,MIN_TOP1] with numbers") from None
    if len(numbers) not in (2, 3) or any(n < 0 or not np.isfinite(n) for n in numbers):
        raise ValueError(f"--tolerance {text!r}: expected {precision}=ATOL,RTOL[,MIN_TOP1], non-negative numbers")
    return precision, Tolerance(*numbers)
