"""Numerical checks, pure numpy: errors, tolerance verdicts, NaN/Inf, top-1, accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from converters.verify import DEFAULT_TOLERANCES, Tolerance, accuracy, compare, parse_tolerance, top1

FP32 = DEFAULT_TOLERANCES["fp32"]


def probs(rows: int, seed: int = 0) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=(rows, 10)) * 3
    exp: np.ndarray = np.exp(logits - logits.max(axis=1, keepdims=True))
    result: np.ndarray = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
    return result


def test_identical_outputs_pass_with_zero_error() -> None:
    reference = probs(32)
    check = compare("probs", 32, reference.copy(), reference, FP32)
    assert check.passed
    assert check.max_abs_error == 0.0
    assert check.max_rel_error == 0.0
    assert check.top1_agreement == 1.0


def test_error_above_atol_plus_rtol_fails_and_names_the_bound() -> None:
    reference = probs(8)
    actual = reference + 1e-3
    check = compare("probs", 8, actual, reference, FP32)
    assert not check.passed
    assert not check.within_tolerance
    assert check.max_abs_error == pytest.approx(1e-3, rel=1e-3)
    assert "exceeds atol 1e-05" in check.reason


def test_rtol_scales_with_the_reference_magnitude() -> None:
    reference = np.array([[1000.0, 0.0]], np.float32)
    actual = np.array([[1000.05, 0.0]], np.float32)
    assert compare("y", 1, actual, reference, Tolerance(atol=1e-5, rtol=1e-4)).within_tolerance
    assert not compare("y", 1, actual, reference, Tolerance(atol=1e-5, rtol=1e-6)).within_tolerance


def test_relative_error_ignores_zero_references_instead_of_dividing_by_zero() -> None:
    reference = np.array([[0.0, 2.0]], np.float32)
    actual = np.array([[1e-7, 2.2]], np.float32)
    check = compare("y", 1, actual, reference, FP32)
    assert check.max_rel_error == pytest.approx(0.1, rel=1e-5)
    assert np.isfinite(check.max_rel_error)


def test_all_zero_reference_has_zero_relative_error() -> None:
    zeros = np.zeros((2, 3), np.float32)
    assert compare("y", 2, zeros, zeros, FP32).max_rel_error == 0.0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_always_fails(bad: float) -> None:
    reference = probs(4)
    actual = reference.copy()
    actual[2, 3] = bad
    check = compare("probs", 4, actual, reference, Tolerance(atol=1e9, rtol=1e9, min_top1=0.0))
    assert not check.passed
    assert check.non_finite == 1
    assert "NaN/Inf" in check.reason


def test_shape_mismatch_fails_without_raising() -> None:
    check = compare("probs", 4, probs(4)[:, :5], probs(4), FP32)
    assert not check.passed
    assert not check.shape_ok
    assert "shape [4, 5]" in check.reason


def test_top1_disagreement_fails_even_within_a_loose_tolerance() -> None:
    reference = np.tile(np.array([[0.6, 0.4]], np.float32), (10, 1))
    actual = reference.copy()
    actual[0] = [0.4, 0.6]
    check = compare("probs", 10, actual, reference, Tolerance(atol=0.0, rtol=0.6, min_top1=0.99))
    assert check.within_tolerance
    assert check.top1_agreement == pytest.approx(0.9)
    assert not check.passed
    assert "top-1 agreement 90.00% below 99%" in check.reason


def test_near_ties_are_not_counted_as_top1_disagreements() -> None:
    reference = np.array([[0.5, 0.5 - 1e-6], [0.9, 0.1]], np.float32)
    actual = np.array([[0.5 - 1e-6, 0.5], [0.9, 0.1]], np.float32)
    agreement, ties = top1(actual, reference, atol=1e-5)
    assert agreement == 1.0
    assert ties == 1


def test_top1_is_none_for_non_classifier_outputs() -> None:
    assert top1(np.zeros((4,)), np.zeros((4,)), 1e-5) == (None, 0)
    assert top1(np.zeros((4, 1)), np.zeros((4, 1)), 1e-5) == (None, 0)


def test_accuracy_against_labels() -> None:
    scores = np.eye(4, dtype=np.float32)
    assert accuracy(scores, np.array([0, 1, 2, 0])) == 0.75
    assert accuracy(scores, np.array([0, 1])) is None


def test_default_tolerances_loosen_with_precision() -> None:
    fp32, fp16, int8 = (DEFAULT_TOLERANCES[p] for p in ("fp32", "fp16", "int8"))
    assert fp32.atol < fp16.atol < int8.atol
    assert fp32.rtol < fp16.rtol < int8.rtol


def test_parse_tolerance_override() -> None:
    assert parse_tolerance("fp16=1e-2,2e-2") == ("fp16", Tolerance(0.01, 0.02))
    assert parse_tolerance("int8=0.1,0.2,0.95") == ("int8", Tolerance(0.1, 0.2, 0.95))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bf16=1,1", "precision must be one of fp32, fp16, int8"),
        ("fp16=abc,1", "with numbers"),
        ("fp16=1", "ATOL,RTOL"),
        ("fp16=-1,1", "non-negative"),
    ],
)
def test_parse_tolerance_rejects_bad_values(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_tolerance(text)


def test_check_with_nan_serialises_as_strict_json() -> None:
    import json

    reference = probs(2)
    actual = reference.copy()
    actual[0, 0] = np.nan
    data = compare("probs", 2, actual, reference, FP32).to_dict()
    assert data["max_abs_error"] == "nan"
    assert json.loads(json.dumps(data, allow_nan=False))["non_finite"] == 1


def test_quantization_check_flags_unquantized_and_unshrunk_artifacts() -> None:
    from converters.quantization import check, quantized_tensors

    assert quantized_tensors("int8", {"float32": 12, "int32": 3}) == 0
    assert quantized_tensors("fp16", {"float16": 4}) == 4
    assert quantized_tensors("fp32", {"float32": 4}) is None
    not_quantized = check("tflite_int8", "int8", 0, 1.0)
    assert not_quantized is not None and not_quantized.cause.startswith("not quantized: the file holds no int8")
    not_shrunk = check("tflite_fp16", "fp16", 3, 0.95)
    assert not_shrunk is not None and "did not shrink: 0.95x" in not_shrunk.cause
    assert check("tflite_int8", "int8", 2, 0.4) is None
    assert check("tflite", "fp32", None, 1.0) is None
