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
from tests.converters.helpers import published

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


@pytest.fixture(scope="module")
def torch_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2-D-input MLP, two-input tuple-output net, dict-output net, LSTM and GRU, as .pt2 files."""
    folder = tmp_path_factory.mktemp("torch_shapes")
    run_step("tests.converters.shapes_steps:torch_models", {"folder": str(folder)}, folder / "steps")
    return folder


def test_torch_2d_input_reaches_savedmodel_and_tflite(
    torch_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    code, report, err = convert(capsys, str(torch_models / "mlp.pt2"), "--name", "mlp", "--to",
                                "onnx,savedmodel,tflite", "--model-repository", str(repo))  # fmt: skip
    assert code == 0, err
    for target, result in artifacts(report).items():
        assert result["passed"], (target, result["reason"])
        assert result["signature"]["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 5]}], target
    assert "\x1b[" not in err


def test_torch_two_inputs_with_a_tuple_output(
    torch_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    code, report, err = convert(capsys, str(torch_models / "two_in_tuple.pt2"), "--name", "two", "--to",
                                "onnx,torchscript,savedmodel", "--model-repository", str(repo),
                                "--output-names", "probs,pooled")  # fmt: skip
    assert code == 0, err
    for target, result in artifacts(report).items():
        assert sorted(i["name"] for i in result["signature"]["inputs"]) == ["image", "meta"], target
        assert sorted(o["name"] for o in result["signature"]["outputs"]) == ["pooled", "probs"], target
        assert {c["output"] for c in result["checks"]} == {"probs", "pooled"}
    assert published(repo, "two") == ["1", "2", "3"]


def test_torch_dict_output_is_named_after_its_keys(
    torch_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    code, report, err = convert(capsys, str(torch_models / "dict_out.pt2"), "--name", "d", "--to", "onnx,torchscript",
                                "--model-repository", str(repo))  # fmt: skip
    assert code == 0, err
    assert [o["name"] for o in report["outputs"]] == ["probs", "logits"]
    for result in report["artifacts"]:
        assert sorted(o["name"] for o in result["signature"]["outputs"]) == ["logits", "probs"]


@pytest.mark.parametrize("model", ["lstm", "gru"])
def test_recurrent_torch_model(
    model: str, torch_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SavedModel/TFLite: 'not supported' up front; TorchScript: pinned to batch 1 and correct there."""
    repo = tmp_path / "repo"
    code, report, err = convert(capsys, str(torch_models / f"{model}.pt2"), "--name", model, "--to", "all",
                                "--model-repository", str(repo))  # fmt: skip
    results = artifacts(report)
    assert code == 1, err
    for target in ("savedmodel", "tflite", "tflite_fp16", "tflite_int8"):
        assert results[target]["stage"] == "unsupported", target
        assert results[target]["reason"].startswith(f"not supported for this model: PyTorch {model.upper()}")
    assert results["onnx"]["passed"], results["onnx"]["reason"]
    torchscript = results["torchscript"]
    assert torchscript["passed"], torchscript["reason"]
    assert torchscript["signature"]["inputs"][0]["shape"] == [1, 7, 3]
    assert {c["batch"] for c in torchscript["checks"]} == {1, 64}
    assert set(torchscript["latency"]) == {"1"}
    config = (repo / model / str(torchscript["published_version"]) / CONFIG_FILE).read_text()
    assert "- 1\n" in config or "[1, 7, 3]" in config
    assert "Traceback" not in err and "exit code -11" not in err


def test_keras_uint8_images_with_rescaling_batchnorm_and_dropout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """uint8 input end to end; BatchNorm and Dropout must run in inference mode in every artifact."""
    source, samples = tmp_path / "u8.keras", tmp_path / "u8.npy"
    run_step("tests.converters.shapes_steps:keras_uint8_bn_dropout", {"path": str(source), "samples": str(samples)},
             tmp_path / "steps")  # fmt: skip
    repo = tmp_path / "repo"
    code, report, err = convert(capsys, str(source), "--name", "u8", "--to", "onnx,savedmodel,tflite",
                                "--model-repository", str(repo), "--samples", str(samples))  # fmt: skip
    assert code == 0, err
    assert report["inputs"] == [{"name": "pixels", "datatype": "UINT8", "shape": [-1, 8, 8, 1]}]
    for target, result in artifacts(report).items():
        assert result["passed"], (target, result["reason"])
        assert result["signature"]["inputs"][0]["datatype"] == "UINT8", target
