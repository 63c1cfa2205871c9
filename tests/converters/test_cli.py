"""``modelgate convert`` bad input: a short error naming what failed, exit code 2, nothing written.

These cases are caught before any framework is imported, so they need no marker.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from converters.__main__ import entry
from converters.cli import register


def keras_like(path: Path) -> Path:
    """A zip laid out like a .keras file (enough for detection; never loaded in these tests)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", "{}")
        archive.writestr("config.json", "{}")
        archive.writestr("model.weights.h5", b"")
    return path


def convert(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = entry(list(argv))
    return code, capsys.readouterr().err


def assert_nothing_written(repo: Path) -> None:
    assert not repo.exists() or not any(repo.rglob("*")), sorted(repo.rglob("*"))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return tmp_path / "model_repo"


def test_missing_model_file(capsys: pytest.CaptureFixture[str], tmp_path: Path, repo: Path) -> None:
    code, err = convert(
        capsys, str(tmp_path / "nope.keras"), "--name", "m", "--to", "onnx", "--model-repository", str(repo)
    )
    assert code == 2
    assert err.strip() == f"error: model file {tmp_path / 'nope.keras'} does not exist"
    assert_nothing_written(repo)


def test_corrupt_model_file(capsys: pytest.CaptureFixture[str], tmp_path: Path, repo: Path) -> None:
    corrupt = tmp_path / "model.keras"
    corrupt.write_bytes(b"\x00garbage" * 64)
    code, err = convert(capsys, str(corrupt), "--name", "m", "--to", "onnx", "--model-repository", str(repo))
    assert code == 2
    assert "corrupt or truncated" in err
    assert "Traceback" not in err
    assert_nothing_written(repo)


def test_truncated_archive(capsys: pytest.CaptureFixture[str], tmp_path: Path, repo: Path) -> None:
    whole = keras_like(tmp_path / "whole.keras").read_bytes()
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(whole[: len(whole) // 2])
    code, err = convert(capsys, str(truncated), "--name", "m", "--to", "onnx", "--model-repository", str(repo))
    assert code == 2
    assert "truncated" in err
    assert_nothing_written(repo)


def test_torch_save_checkpoint_is_explained(capsys: pytest.CaptureFixture[str], tmp_path: Path, repo: Path) -> None:
    checkpoint = tmp_path / "weights.pt"
    with zipfile.ZipFile(checkpoint, "w") as archive:
        archive.writestr("weights/data.pkl", b"\x80\x04N.")
    code, err = convert(capsys, str(checkpoint), "--name", "m", "--to", "onnx", "--model-repository", str(repo))
    assert code == 2
    assert "torch.save checkpoint" in err
    assert "convert_torch_module" in err
    assert_nothing_written(repo)


def test_target_the_source_cannot_produce(capsys: pytest.CaptureFixture[str], tmp_path: Path, repo: Path) -> None:
    source = keras_like(tmp_path / "m.keras")
    code, err = convert(capsys, str(source), "--name", "m", "--to", "onnx,torchscript", "--model-repository", str(repo))
    assert code == 2
    assert "a keras model cannot be converted to torchscript" in err
    assert "it can produce: onnx, savedmodel, tflite, tflite_fp16, tflite_int8" in err
    assert_nothing_written(repo)


def test_unknown_target(capsys: pytest.CaptureFixture[str], tmp_path: Path, repo: Path) -> None:
    code, err = convert(
        capsys, str(keras_like(tmp_path / "m.keras")), "--name", "m", "--to", "coreml", "--model-repository", str(repo)
    )
    assert code == 2
    assert "unknown target(s) ['coreml']" in err
    assert_nothing_written(repo)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("image", "expected NAME:DATATYPE:DIM,DIM,..."),
        ("image:FLOAT:-1,8", "unknown datatype 'FLOAT'"),
        ("image:FP32:-1,x", "dimensions must be integers"),
        ("image:FP32:-1,0", "positive or -1"),
    ],
)
def test_malformed_input_spec(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, repo: Path, spec: str, message: str
) -> None:
    code, err = convert(
        capsys,
        str(keras_like(tmp_path / "m.keras")),
        "--name",
        "m",
        "--to",
        "onnx",
        "--input-spec",
        spec,
        "--model-repository",
        str(repo),
    )
    assert code == 2
    assert f"--input-spec {spec!r}" in err
    assert message in err
    assert_nothing_written(repo)


@pytest.mark.parametrize(
    ("name", "extra", "needle"),
    [
        ("m", ["--tolerance", "fp16=lots"], "--tolerance 'fp16=lots'"),
        ("../evil", [], "--name '../evil'"),
        ("m", ["--samples", "{tmp}/x.npy"], "--samples {tmp}/x.npy: no such file"),
    ],
)
def test_bad_option_is_exit_2_naming_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, repo: Path, name: str, extra: list[str], needle: str
) -> None:
    model = str(keras_like(tmp_path / "m.keras"))
    options = [arg.format(tmp=tmp_path) for arg in extra]
    code, err = convert(capsys, model, "--name", name, "--to", "onnx", *options, "--model-repository", str(repo))
    assert code == 2
    assert needle.format(tmp=tmp_path) in err
    assert_nothing_written(repo)


def test_invalid_existing_model_config_is_reported_not_overwritten(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, repo: Path
) -> None:
    (repo / "m").mkdir(parents=True)
    (repo / "m" / "config.yaml").write_text("version_policy: {latest: 0}\n")
    code, err = convert(
        capsys, str(keras_like(tmp_path / "m.keras")), "--name", "m", "--to", "onnx", "--model-repository", str(repo)
    )
    assert code == 2
    assert "existing model config is invalid" in err
    assert "version_policy.latest" in err
    assert (repo / "m" / "config.yaml").read_text() == "version_policy: {latest: 0}\n"


def test_register_mounts_convert_on_a_parent_cli(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="modelgate")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["convert", str(tmp_path / "m.keras"), "--name", "m", "--to", "onnx,tflite"])
    assert args.command == "convert"
    assert args.to == "onnx,tflite"
    assert args.func(args) == 2


def test_module_entry_point_exit_code(tmp_path: Path, repo: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "converters",
            str(tmp_path / "gone.pt2"),
            "--name",
            "m",
            "--to",
            "onnx",
            "--model-repository",
            str(repo),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: model file {tmp_path / 'gone.pt2'} does not exist"
    assert_nothing_written(repo)
