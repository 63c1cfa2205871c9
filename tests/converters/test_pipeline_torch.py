"""PyTorch sources end to end: .pt2, TorchScript and nn.Module; perturbed weights; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from converters.__main__ import entry
from converters.errors import BadInput
from converters.pipeline import ConversionRequest, convert_all, finish, prepare, verify_all
from gateway.core.config import CONFIG_FILE, VersionConfig, load_model_config, load_version_config
from tests.converters.helpers import published

pytestmark = pytest.mark.frameworks

TORCH_TARGETS = "torchscript,pt2,onnx,savedmodel,tflite,tflite_fp16,tflite_int8"
BACKENDS = {"torchscript": "torchserve", "onnx": "onnxruntime", "savedmodel": "tensorflow", "tflite": "tflite",
            "tflite_fp16": "tflite", "tflite_int8": "tflite"}  # fmt: skip


def test_every_torch_target_converts_verifies_and_is_published(
    torch_file: Path, digits_samples: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    code = entry(
        [
            str(torch_file),
            "--name",
            "digits",
            "--to",
            TORCH_TARGETS,
            "--model-repository",
            str(repo),
            "--output-names",
            "probs",
            "--samples",
            str(digits_samples["nchw"]),
            "--labels",
            str(digits_samples["labels"]),
            "--json",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0, [a["reason"] for a in report["artifacts"]]
    assert published(repo, "digits") == ["1", "2", "3", "4", "5", "6", "7"]
    model = load_model_config(repo / "digits" / CONFIG_FILE)
    assert set(model.labels) == set(BACKENDS)
    for target, backend in BACKENDS.items():
        version_file = repo / "digits" / str(model.labels[target]) / CONFIG_FILE
        assert load_version_config(model, version_file).backend == backend
        own = VersionConfig.model_validate(yaml.safe_load(version_file.read_text()))
        assert own.inputs is not None and own.inputs[0].name == "image"
    pt2 = next(a for a in report["artifacts"] if a["target"] == "pt2")
    assert pt2["servable"] is False and pt2["passed"] is True
    assert (repo / "digits" / str(pt2["published_version"]) / "model.pt2").exists()
    assert model.version_policy.specific == sorted(model.labels.values())
    assert report["recommended"] != "pt2"
    for artifact in report["artifacts"]:
        assert artifact["signature"]["inputs"][0]["shape"] == [-1, 1, 8, 8], artifact["target"]
        assert artifact["signature"]["outputs"][0]["name"] == "probs", artifact["target"]
        assert artifact["accuracy"] == pytest.approx(report["source_accuracy"], abs=0.01)
        assert artifact["macro_f1"] == pytest.approx(report["source_macro_f1"], abs=0.02)
        for batch in ("1", "32"):
            stats = artifact["latency"][batch]
            assert 0 < stats["p50_s"] <= stats["p95_s"] <= stats["p99_s"], artifact["target"]
            assert stats["samples_per_s"] == pytest.approx(int(batch) / stats["p50_s"])
        assert artifact["peak_rss_bytes"] > 50 * 2**20
        assert artifact["compression_vs_source"] == pytest.approx(artifact["size_bytes"] / report["source_size_bytes"])
        assert artifact["compression_vs_fp32"] is not None


def test_torchscript_source_needs_and_uses_an_input_spec(
    torchscript_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    assert entry([str(torchscript_file), "--name", "ts", "--to", "onnx", "--model-repository", str(repo)]) == 2
    assert "records no input shapes: pass --input-spec" in capsys.readouterr().err
    assert not repo.exists()
    code = entry(
        [
            str(torchscript_file),
            "--name",
            "ts",
            "--to",
            "torchscript,onnx",
            "--model-repository",
            str(repo),
            "--input-spec",
            "image:FP32:-1,1,8,8",
            "--output-names",
            "probs",
        ]
    )
    assert code == 0
    assert load_model_config(repo / "ts" / CONFIG_FILE).labels == {"torchscript": 1, "onnx": 2}


def test_torchscript_wrong_input_spec_is_bad_input(
    torchscript_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    code = entry(
        [
            str(torchscript_file),
            "--name",
            "ts",
            "--to",
            "onnx",
            "--model-repository",
            str(repo),
            "--input-spec",
            "image:FP32:-1,3,8,8",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "the source model fails on inputs {'image': [64, 3, 8, 8]}" in err
    assert "channels" in err
    assert not repo.exists()


def test_nn_module_through_the_python_api(tmp_path: Path) -> None:
    from converters.api import convert_torch_module
    from demo.cnn import torch_cnn

    report = convert_torch_module(
        torch_cnn(), ["image:FP32:-1,1,8,8"], "module", "torchscript", tmp_path / "repo", output_names=["probs"]
    )
    assert report.exit_code == 0
    assert [a.published_version for a in report.artifacts] == [1]


def test_unsupported_op_fails_that_target_only_and_publishes_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from converters.torch2exportedprogram import export_module
    from gateway.core.types import TensorSpec

    class Eigen(torch.nn.Module):
        def forward(self, matrix: torch.Tensor) -> torch.Tensor:
            return torch.linalg.eigvals(matrix).real  # type: ignore[no-any-return]

    source = tmp_path / "eigen.pt2"
    export_module(Eigen(), [TensorSpec("matrix", "FP32", (-1, 4, 4))], source)
    repo = tmp_path / "repo"
    code = entry([str(source), "--name", "eigen", "--to", "onnx,pt2,tflite", "--model-repository", str(repo), "--json"])
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert code == 1
    onnx_result = next(a for a in report["artifacts"] if a["target"] == "onnx")
    assert onnx_result["passed"] is False and onnx_result["stage"] == "convert"
    assert "the onnx exporter could not convert this model" in onnx_result["reason"]
    assert "drop 'onnx' from --to" in onnx_result["action"]
    tflite = next(a for a in report["artifacts"] if a["target"] == "tflite")
    assert tflite["stage"] == "convert" and tflite["reason"].startswith("it needs the onnx artifact: the onnx exporter")
    assert "FAIL onnx" in captured.err and "Traceback" not in captured.err and "\x1b[" not in captured.err
    assert published(repo, "eigen") == ["1"]
    assert (repo / "eigen" / "1" / "model.pt2").exists()
    assert "- **onnx** (convert): the onnx exporter" in (repo / "eigen" / "1" / "conversion-report.md").read_text()


def test_perturbed_weights_fail_verification_and_are_not_published(
    torch_file: Path, digits_samples: dict[str, Path], tmp_path: Path
) -> None:
    import onnx
    from onnx import numpy_helper

    repo = tmp_path / "repo"
    request = ConversionRequest(
        source=torch_file,
        name="digits",
        targets="torchscript,onnx",
        repository=repo,
        samples=digits_samples["nchw"],
        output_names=["probs"],
    )
    plan = prepare(request, tmp_path / "work")
    built = convert_all(plan)
    model = onnx.load(built["onnx"])
    weights = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    perturbed = numpy_helper.to_array(weights) + np.random.default_rng(0).normal(0, 0.05, weights.dims)
    weights.CopyFrom(numpy_helper.from_array(perturbed.astype(np.float32), weights.name))
    onnx.save(model, built["onnx"])

    report = finish(plan, verify_all(plan, built))
    assert report.exit_code == 1
    onnx_result, torchscript_result = (
        next(a for a in report.artifacts if a.target == t) for t in ("onnx", "torchscript")
    )
    assert not onnx_result.passed
    assert "exceeds atol" in onnx_result.reason
    assert onnx_result.published_version is None
    assert torchscript_result.passed and torchscript_result.published_version == 1
    assert published(repo, "digits") == ["1"]
    assert load_model_config(repo / "digits" / CONFIG_FILE).labels == {"torchscript": 1}
    assert "FAIL (verify): probs at batch 1" in (repo / "digits" / "1" / "conversion-report.md").read_text()


def test_bad_input_from_the_api_is_an_exception(tmp_path: Path) -> None:
    from converters.api import convert_torch_module
    from demo.cnn import torch_cnn

    with pytest.raises(BadInput, match=r"input spec names \['pixels'\] must match the forward\(\) arguments"):
        convert_torch_module(torch_cnn(), ["pixels:FP32:-1,1,8,8"], "m", "onnx", tmp_path / "repo")
    assert not (tmp_path / "repo").exists()
