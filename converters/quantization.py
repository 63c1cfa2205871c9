"""Honest quantization: a quantized artifact must hold quantized weights and be smaller than fp32.

TFLite's converter can silently leave a model in float32: dynamic-range int8 quantises
only weight tensors with at least 1024 elements, so a small model comes out unchanged.
Such an artifact is not published under a quantized label: it fails at the
``quantization`` stage with the reason, and the fp32 target is the honest alternative.
"""

from __future__ import annotations

from converters.diagnose import Diagnosis

#: The dtype quantized weights have in the file, per precision.
QUANTIZED_DTYPE = {"fp16": "float16", "int8": "int8"}
#: A quantized artifact larger than this fraction of its fp32 baseline "did not shrink".
MAX_RATIO = 0.9


def quantized_tensors(precision: str, tensor_dtypes: dict[str, int] | None) -> int | None:
    """Tensors stored at the precision's dtype, or None when the format does not say."""
    if tensor_dtypes is None or precision not in QUANTIZED_DTYPE:
        return None
    return int(tensor_dtypes.get(QUANTIZED_DTYPE[precision], 0))


def check(target: str, precision: str, quantized: int | None, ratio: float | None) -> Diagnosis | None:
    """Why ``target`` is not honestly quantized, or None if it is (or cannot be told)."""
    if precision not in QUANTIZED_DTYPE:
        return None
    action = f"use the fp32 target instead: publishing this file as '{target}' would claim a quantization it lacks"
    if quantized == 0:
        hint = " (TFLite's dynamic-range int8 skips weight tensors under 1024 elements)" if precision == "int8" else ""
        size = f", {ratio:.2f}x the fp32 size" if ratio is not None else ""
        return Diagnosis(
            f"not quantized: the file holds no {QUANTIZED_DTYPE[precision]} weight tensor{size}{hint}", action
        )
    if ratio is not None and ratio > MAX_RATIO:
        return Diagnosis(f"did not shrink: {ratio:.2f}x the fp32 size (more than {MAX_RATIO:.0%})", action)
    return None
