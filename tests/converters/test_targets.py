"""The target catalogue: what each source kind can produce and in which order targets are built."""

from __future__ import annotations

import pytest

from converters.errors import BadInput
from converters.targets import TARGETS, available_targets, build_order, parse_targets


def test_keras_targets() -> None:
    assert available_targets("keras") == ["onnx", "savedmodel", "tflite", "tflite_fp16", "tflite_int8"]


def test_torchscript_cannot_become_an_exported_program() -> None:
    assert "pt2" in available_targets("torch_export")
    assert "pt2" not in available_targets("torchscript")


def test_all_leaves_out_pt2_which_no_backend_serves() -> None:
    assert TARGETS["pt2"].backend is None
    assert "pt2" not in parse_targets("all", "torch_export")
    assert parse_targets("pt2,onnx", "torch_export") == ["pt2", "onnx"]


def test_targets_are_deduplicated_and_ordered() -> None:
    assert parse_targets("tflite, onnx,tflite", "keras") == ["onnx", "tflite"]


def test_intermediates_are_built_first() -> None:
    assert build_order(["tflite_int8"], "keras") == ["savedmodel", "tflite", "tflite_int8"]
    assert build_order(["tflite"], "torch_export") == ["onnx", "savedmodel", "tflite"]


def test_quantized_targets_bring_their_fp32_baseline() -> None:
    assert build_order(["tflite_fp16"], "torch_export") == ["onnx", "savedmodel", "tflite", "tflite_fp16"]


@pytest.mark.parametrize("text", ["", " , "])
def test_empty_target_list_is_bad_input(text: str) -> None:
    with pytest.raises(BadInput, match="give at least one target"):
        parse_targets(text, "keras")
