from pathlib import Path

import pytest

from gateway.core.config import (
    ModelConfig,
    VersionPolicy,
    dump_model_config,
    load_model_config,
    load_version_config,
)
from gateway.core.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_config_has_documented_defaults(tmp_path: Path) -> None:
    config = load_model_config(write(tmp_path / "config.yaml", "backend: onnxruntime\n"))
    assert config.backend == "onnxruntime"
    assert config.version_policy.select([1, 2, 3]) == [3]
    assert config.max_batch_size == 0 and config.labels == {} and config.inputs is None


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("backend: Caffe!\n", "backend"),
        ("backend: onnxruntime\ninputs: [{name: x, datatype: FP33, shape: [1]}]\n", "inputs.0.datatype"),
        ("backend: onnxruntime\ninputs: [{name: x, datatype: FP32, shape: [0, 2]}]\n", "inputs.0.shape"),
        ("backend: onnxruntime\nversion_policy: {latest: 1, all: true}\n", "version_policy"),
        ("backend: onnxruntime\nmax_batch_size: -1\n", "max_batch_size"),
        ("backend: onnxruntime\nunknown_field: 1\n", "unknown_field"),
        ("backend: onnxruntime\nlabels: {'bad label': 1}\n", "labels"),
        (
            "backend: onnxruntime\ninputs: [{name: x, datatype: FP32, shape: [1]},"
            " {name: x, datatype: FP32, shape: [1]}]\n",
            "inputs",
        ),
    ],
)
def test_invalid_config_names_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = write(tmp_path / "config.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_model_config(path)
    assert str(path) in str(info.value)
    assert f"{field}:" in str(info.value)


@pytest.mark.parametrize("text", ["backend: [unclosed\n", "- just\n- a list\n"])
def test_unparseable_yaml_is_a_config_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match=r"config\.yaml"):
        load_model_config(write(tmp_path / "config.yaml", text))


def test_version_policies_select_from_disk() -> None:
    assert VersionPolicy(latest=2).select([3, 1, 2]) == [2, 3]
    assert VersionPolicy(all=True).select([2, 1]) == [1, 2]
    assert VersionPolicy(specific=[1, 5]).select([1, 2, 3]) == [1]


def test_version_config_overrides_model_config(tmp_path: Path) -> None:
    model = ModelConfig(backend="onnxruntime", labels={"stable": 1}, max_batch_size=8)
    override = write(
        tmp_path / "2" / "config.yaml",
        "backend: tflite\nartifact: m.tflite\ninputs: [{name: x, datatype: FP32, shape: [-1, 2]}]\n"
        "dynamic_batching: {concurrency: 1}\n",
    )
    merged = load_version_config(model, override)
    assert merged.backend == "tflite" and merged.artifact == "m.tflite"
    assert merged.inputs is not None and merged.inputs[0].name == "x" and merged.inputs[0].shape == [-1, 2]
    assert merged.dynamic_batching is not None and merged.dynamic_batching.concurrency == 1
    assert merged.max_batch_size == 8 and merged.labels == {"stable": 1}
    assert load_version_config(model, tmp_path / "1" / "config.yaml") is model


def test_version_config_cannot_set_model_wide_fields(tmp_path: Path) -> None:
    model = ModelConfig(backend="onnxruntime")
    override = write(tmp_path / "2" / "config.yaml", "labels: {x: 2}\n")
    with pytest.raises(ConfigError, match="labels"):
        load_version_config(model, override)


def test_backend_required_somewhere(tmp_path: Path) -> None:
    model = load_model_config(write(tmp_path / "config.yaml", "max_batch_size: 4\n"))
    with pytest.raises(ConfigError, match=r"backend: required"):
        load_version_config(model, tmp_path / "1" / "config.yaml")


def test_dynamic_batching_needs_a_batch_size_in_the_effective_config(tmp_path: Path) -> None:
    model = load_model_config(write(tmp_path / "config.yaml", "backend: onnxruntime\ndynamic_batching: {}\n"))
    with pytest.raises(ConfigError, match=r"dynamic_batching: needs max_batch_size > 0"):
        load_version_config(model, tmp_path / "1" / "config.yaml")
    override = write(tmp_path / "2" / "config.yaml", "max_batch_size: 8\n")
    assert load_version_config(model, override).max_batch_size == 8


def test_dump_round_trips(tmp_path: Path) -> None:
    config = ModelConfig(backend="onnxruntime", labels={"stable": 2}, version_policy=VersionPolicy(all=True))
    path = write(tmp_path / "config.yaml", dump_model_config(config))
    assert load_model_config(path) == config
