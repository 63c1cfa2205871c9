"""Keras sources end to end: every target converts, verifies and is published; bad input is exit 2."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from converters.__main__ import entry
from converters.publish import REPORT_JSON, REPORT_MD
from gateway.core.config import CONFIG_FILE, load_model_config, load_version_config
from tests.converters.helpers import published

pytestmark = pytest.mark.frameworks

KERAS_TARGETS = {"onnx": "onnxruntime", "savedmodel": "tensorflow", "tflite": "tflite", "tflite_fp16": "tflite",
                 "tflite_int8": "tflite"}  # fmt: skip


@pytest.fixture(scope="module")
def keras_all(
    keras_file: Path, digits_samples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[int, dict[str, Any], Path]:
    """One ``convert --to all`` run of the Keras model (exit code, JSON report, repository), shared by tests."""
    repo = tmp_path_factory.mktemp("keras_all") / "repo"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = entry(
            [
                str(keras_file),
                "--name",
                "digits",
                "--to",
                "all",
                "--model-repository",
                str(repo),
                "--samples",
                str(digits_samples["nhwc"]),
                "--labels",
                str(digits_samples["labels"]),
                "--json",
            ]
        )
    return code, json.loads(stdout.getvalue()), repo


def test_every_keras_target_converts_verifies_and_is_published(keras_all: tuple[int, dict[str, Any], Path]) -> None:
    code, report, repo = keras_all
    assert code == 0, [a["reason"] for a in report["artifacts"]]
    assert published(repo, "digits") == ["1", "2", "3", "4", "5"]
    model = load_model_config(repo / "digits" / CONFIG_FILE)
    assert model.version_policy.all is True
    assert set(model.labels) == set(KERAS_TARGETS)
    assert model.default_version == model.labels[report["recommended"]]
    for target, backend in KERAS_TARGETS.items():
        version_dir = repo / "digits" / str(model.labels[target])
        config = load_version_config(model, version_dir / CONFIG_FILE)
        assert config.backend == backend
        assert (version_dir / str(config.artifact)).exists()
        assert (version_dir / REPORT_MD).read_text().startswith("# Conversion report: digits")
        assert json.loads((version_dir / REPORT_JSON).read_text())["recommended"] == report["recommended"]


def test_every_keras_artifact_is_checked_at_batch_1_32_and_n(keras_all: tuple[int, dict[str, Any], Path]) -> None:
    _, report, _ = keras_all
    for artifact in report["artifacts"]:
        assert artifact["passed"], artifact["reason"]
        assert sorted({c["batch"] for c in artifact["checks"]}) == [1, 32, 450]
        assert all(c["non_finite"] == 0 and c["top1_agreement"] >= 0.99 for c in artifact["checks"])
        assert artifact["accuracy"] == pytest.approx(report["source_accuracy"], abs=0.01)
        assert artifact["latency_b1_s"] > 0 and artifact["latency_b32_s"] > 0
        assert artifact["signature"]["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 8, 8, 1]}]
        assert artifact["signature"]["outputs"] == [{"name": "probs", "datatype": "FP32", "shape": [-1, 10]}]
    sizes = {a["target"]: a["size_bytes"] for a in report["artifacts"]}
    assert sizes["tflite_int8"] < sizes["tflite_fp16"] < sizes["tflite"]


def test_published_onnx_serves_the_same_predictions(
    keras_all: tuple[int, dict[str, Any], Path], digits_samples: dict[str, Path]
) -> None:
    import onnxruntime as ort

    _, _, repo = keras_all
    version = load_model_config(repo / "digits" / CONFIG_FILE).labels["onnx"]
    session = ort.InferenceSession(
        str(repo / "digits" / str(version) / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    images = np.load(digits_samples["nhwc"])[:5]
    (probs,) = session.run(["probs"], {"image": images})
    assert probs.shape == (5, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_legacy_h5_source(keras_h5_file: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert entry([str(keras_h5_file), "--name", "h5", "--to", "onnx", "--model-repository", str(repo)]) == 0
    assert load_model_config(repo / "h5" / CONFIG_FILE).labels == {"onnx": 1}


def test_keras_model_object_through_the_python_api(keras_file: Path, tmp_path: Path) -> None:
    import keras

    from converters.api import convert_keras_model

    model = keras.models.load_model(keras_file)
    report = convert_keras_model(model, "from_object", "onnx", tmp_path / "repo")
    assert report.exit_code == 0
    assert report.artifacts[0].published_version == 1
    assert report.samples == "generated from the input spec (seed 0)"


def test_unregistered_custom_layer_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import keras

    @keras.saving.register_keras_serializable(package="modelgate_tests")
    class Doubler(keras.layers.Layer):  # type: ignore[misc]
        def call(self, inputs: object) -> object:
            return inputs * 2  # type: ignore[operator]

    model = keras.Sequential([keras.Input((4,), name="x"), Doubler(), keras.layers.Dense(2, name="y")])
    path = tmp_path / "custom.keras"
    model.save(path)
    repo = tmp_path / "repo"
    code = entry([str(path), "--name", "custom", "--to", "onnx", "--model-repository", str(repo)])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot load the Keras model" in err
    assert "register_keras_serializable" in err
    assert "Traceback" not in err
    assert not repo.exists()


def test_wrong_input_spec_is_bad_input(keras_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    code = entry(
        [
            str(keras_file),
            "--name",
            "k",
            "--to",
            "onnx",
            "--model-repository",
            str(repo),
            "--input-spec",
            "image:FP32:-1,28,28,1",
        ]
    )
    assert code == 2
    assert (
        "--input-spec image: FP32 [-1, 28, 28, 1] does not fit the model's FP32 [-1, 8, 8, 1]"
        in capsys.readouterr().err
    )
    assert not repo.exists()


def test_samples_in_the_wrong_layout_are_bad_input(
    keras_file: Path, digits_samples: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    code = entry(
        [
            str(keras_file),
            "--name",
            "k",
            "--to",
            "onnx",
            "--model-repository",
            str(repo),
            "--samples",
            str(digits_samples["nchw"]),
        ]
    )
    assert code == 2
    assert (
        "--samples: input 'image' has shape [450, 1, 8, 8], the model expects [-1, 8, 8, 1]" in capsys.readouterr().err
    )
    assert not repo.exists()
