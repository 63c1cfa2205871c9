"""``modelgate verify``: a published version re-checked against its source; tampering is caught."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from converters.__main__ import entry
from converters.cli import register
from converters.isolation import run_step
from gateway.core.config import CONFIG_FILE, load_model_config


def verify(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    code = entry(["verify", *argv, "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out.strip() else {}, captured.err


@pytest.fixture(scope="module")
def keras_repo(keras_file: Path, digits_samples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Keras demo CNN published as onnx, tflite_fp16 and tflite_int8 (versions 1, 2, 3)."""
    repo = tmp_path_factory.mktemp("verify") / "repo"
    code = entry([str(keras_file), "--name", "digits", "--to", "onnx,tflite_fp16,tflite_int8",
                  "--model-repository", str(repo), "--samples", str(digits_samples["nhwc"])])  # fmt: skip
    assert code == 0
    assert load_model_config(repo / "digits" / CONFIG_FILE).labels == {"onnx": 1, "tflite_fp16": 2, "tflite_int8": 3}
    return repo


def tampered(keras_repo: Path, version: int, tmp_path: Path) -> Path:
    copy = tmp_path / "digits" / str(version)
    shutil.copytree(keras_repo / "digits" / str(version), copy)
    return copy


@pytest.mark.frameworks
def test_an_untouched_int8_version_verifies_including_a_fresh_conversion(
    keras_repo: Path, keras_file: Path, digits_samples: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    version = keras_repo / "digits" / "3"
    code, report, err = verify(
        capsys, str(version), "--source", str(keras_file), "--samples", str(digits_samples["nhwc"])
    )
    assert code == 0, err
    (result,) = report["artifacts"]
    assert result["target"] == "tflite_int8" and result["passed"] and result["published_version"] == 3
    fresh = [c for c in result["checks"] if c["output"] == "probs vs fresh conversion"]
    assert fresh and all(c["max_abs_error"] == 0.0 for c in fresh)
    assert result["compression_vs_fp32"] < 0.5


@pytest.mark.frameworks
def test_a_perturbed_fp32_onnx_fails_verify(
    keras_repo: Path,
    keras_file: Path,
    digits_samples: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import onnx
    from onnx import numpy_helper

    version = tampered(keras_repo, 1, tmp_path)
    model = onnx.load(version / "model.onnx")
    weights = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    weights.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weights) * np.float32(1.01), weights.name))
    onnx.save(model, version / "model.onnx")
    code, report, _ = verify(
        capsys, str(version), "--source", str(keras_file), "--samples", str(digits_samples["nhwc"])
    )
    assert code == 1
    (result,) = report["artifacts"]
    assert result["stage"] == "verify" and "exceeds atol" in result["reason"]


@pytest.mark.frameworks
@pytest.mark.parametrize(("version", "precision"), [(2, "fp16"), (3, "int8")])
def test_a_perturbed_quantized_tflite_fails_verify(
    version: int,
    precision: str,
    keras_repo: Path,
    keras_file: Path,
    digits_samples: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    copy = tampered(keras_repo, version, tmp_path)
    run_step("tests.converters.perturb_steps:perturb_tflite",
             {"path": str(copy / "model.tflite"), "precision": precision}, tmp_path / "steps")  # fmt: skip
    code, report, err = verify(capsys, str(copy), "--source", str(keras_file), "--samples", str(digits_samples["nhwc"]))
    assert code == 1, err
    (result,) = report["artifacts"]
    assert result["stage"] == "reproduce", result["reason"]
    assert "differs from a fresh conversion of the source" in result["reason"]
    assert "FAIL" in err and "Traceback" not in err


def test_verify_bad_input_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "m.keras"
    source.write_bytes(b"x")
    code, _, err = verify(capsys, str(tmp_path / "repo" / "m" / "1"), "--source", str(source))
    assert code == 2 and "expected a published version directory" in err
    version = tmp_path / "repo" / "m" / "1"
    version.mkdir(parents=True)
    code, _, err = verify(capsys, str(version), "--source", str(source))
    assert code == 2 and "has no conversion-report.json" in err
    code, _, err = verify(capsys, str(version), "--source", str(source), "--timeout", "0")
    assert code == 2 and err.strip() == "error: --timeout must be positive"


def test_register_mounts_verify(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="modelgate")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["verify", str(tmp_path / "m" / "1"), "--source", str(tmp_path / "m.keras")])
    assert args.command == "verify"
    assert args.func(args) == 2
