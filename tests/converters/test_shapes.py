"""Model shapes users have, end to end through the CLI: multiple inputs/outputs, 2-D inputs, uint8 images,
tuple and dict outputs, sequence models; and honest quantization of small models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from converters.__main__ import entry
from converters.isolation import run_step
from gateway.core.config import CONFIG_FILE, load_model_config

pytestmark = pytest.mark.frameworks


def convert(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    code = entry([*argv, "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out.strip() else {}, captured.err


def artifacts(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["target"]: a for a in report["artifacts"]}


@pytest.fixture(scope="module")
def keras_two_in_two_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("keras2x2")
    path, samples = folder / "two.keras", folder / "samples.npz"
    run_step("tests.converters.shapes_steps:keras_two_in_two_out", {"path": str(path), "samples": str(samples)}, folder)
    return path, samples


def test_keras_two_inputs_two_outputs_and_a_non_quantizing_int8(
    keras_two_in_two_out: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, samples = keras_two_in_two_out
    repo = tmp_path / "repo"
    code, report, err = convert(
        capsys, str(source), "--name", "two", "--to", "all", "--model-repository", str(repo), "--samples", str(samples)
    )
    results = artifacts(report)
    assert code == 1, err
    for target in ("onnx", "savedmodel", "tflite", "tflite_fp16"):
        assert results[target]["passed"], (target, results[target]["reason"])
        names = sorted(o["name"] for o in results[target]["signature"]["outputs"])
        assert names == ["digit", "score"], target
        assert sorted(i["name"] for i in results[target]["signature"]["inputs"]) == ["image", "meta"], target
    int8 = results["tflite_int8"]
    assert int8["passed"] is False and int8["stage"] == "quantization"
    assert int8["reason"].startswith("not quantized: the file holds no int8 weight tensor")
    assert int8["quantized_tensors"] == 0 and int8["published_version"] is None
    assert results["tflite_fp16"]["quantized_tensors"] > 0
    assert results["tflite_fp16"]["compression_vs_fp32"] < 0.9
    labels = load_model_config(repo / "two" / CONFIG_FILE).labels
    assert "tflite_int8" not in labels and set(labels) == {"onnx", "savedmodel", "tflite", "tflite_fp16"}
    assert "FAIL tflite_int8" in err and "not quantized" in err
