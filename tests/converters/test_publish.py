"""Publishing: new versions only, atomic, with configs the gateway can load."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from converters.publish import REPORT_JSON, REPORT_MD, Publication, existing_versions, publish
from gateway.core.config import (
    CONFIG_FILE,
    TensorConfig,
    VersionConfig,
    load_model_config,
    load_version_config,
)

TENSORS: dict[str, Any] = {
    "inputs": [TensorConfig(name="image", datatype="FP32", shape=[-1, 8, 8, 1])],
    "outputs": [TensorConfig(name="probs", datatype="FP32", shape=[-1, 10])],
}


def artifact(folder: Path, name: str, content: bytes = b"weights") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content)
    return path


def item(tmp_path: Path, target: str, backend: str | None, name: str) -> Publication:
    values = {"artifact": name, **TENSORS}
    if backend:
        values["backend"] = backend
    return Publication(target, artifact(tmp_path / "work" / target, name, target.encode()), VersionConfig(**values))


def reports(versions: dict[str, int]) -> tuple[str, str]:
    return f'{{"versions": {dict(sorted(versions.items()))}}}'.replace("'", '"'), "# report\n"


def test_first_publish_creates_versions_labels_and_default(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    items = [item(tmp_path, "onnx", "onnxruntime", "model.onnx"), item(tmp_path, "tflite", "tflite", "model.tflite")]
    versions = publish(repo / "digits", items, reports, recommended="tflite")
    assert versions == {"onnx": 1, "tflite": 2}
    model = load_model_config(repo / "digits" / CONFIG_FILE)
    assert model.version_policy.all is True
    assert model.labels == {"onnx": 1, "tflite": 2}
    assert model.default_version == 2
    merged = load_version_config(model, repo / "digits" / "2" / CONFIG_FILE)
    assert merged.backend == "tflite"
    assert merged.artifact == "model.tflite"
    own = VersionConfig.model_validate(yaml.safe_load((repo / "digits" / "2" / CONFIG_FILE).read_text()))
    assert own.inputs == TENSORS["inputs"]
    assert own.outputs == TENSORS["outputs"]
    assert (repo / "digits" / "2" / "model.tflite").read_bytes() == b"tflite"
    assert (repo / "digits" / "1" / REPORT_MD).read_text() == "# report\n"
    assert '"onnx": 1' in (repo / "digits" / "1" / REPORT_JSON).read_text()


def test_existing_versions_are_never_overwritten(tmp_path: Path) -> None:
    model_dir = tmp_path / "repo" / "digits"
    publish(model_dir, [item(tmp_path / "a", "onnx", "onnxruntime", "model.onnx")], reports, "onnx")
    before = (model_dir / "1" / "model.onnx").stat()
    second = item(tmp_path / "b", "onnx", "onnxruntime", "model.onnx")
    assert publish(model_dir, [second], reports, "onnx") == {"onnx": 2}
    after = (model_dir / "1" / "model.onnx").stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    model = load_model_config(model_dir / CONFIG_FILE)
    assert model.labels == {"onnx": 2}
    assert model.default_version == 2
    assert existing_versions(model_dir) == [1, 2]


def test_a_failed_publish_leaves_nothing_half_written(tmp_path: Path) -> None:
    model_dir = tmp_path / "repo" / "digits"
    good = item(tmp_path, "onnx", "onnxruntime", "model.onnx")
    missing = Publication("tflite", tmp_path / "does-not-exist.tflite", VersionConfig(backend="tflite", **TENSORS))
    with pytest.raises(FileNotFoundError):
        publish(model_dir, [good, missing], reports, "onnx")
    leftovers = [p.name for p in model_dir.iterdir()]
    assert all(not name.startswith(".") for name in leftovers), leftovers
    for version in existing_versions(model_dir):
        assert {p.name for p in (model_dir / str(version)).iterdir()} == {
            "model.onnx",
            CONFIG_FILE,
            REPORT_JSON,
            REPORT_MD,
        }


def test_a_failed_first_publish_removes_the_model_directory(tmp_path: Path) -> None:
    model_dir = tmp_path / "repo" / "digits"
    missing = Publication("onnx", tmp_path / "nope.onnx", VersionConfig(backend="onnxruntime", **TENSORS))
    with pytest.raises(FileNotFoundError):
        publish(model_dir, [missing], reports, "onnx")
    assert not model_dir.exists()


def test_unservable_versions_are_published_but_not_served(tmp_path: Path) -> None:
    model_dir = tmp_path / "repo" / "digits"
    items = [item(tmp_path, "onnx", "onnxruntime", "model.onnx"), item(tmp_path, "pt2", None, "model.pt2")]
    assert publish(model_dir, items, reports, "onnx") == {"onnx": 1, "pt2": 2}
    model = load_model_config(model_dir / CONFIG_FILE)
    assert model.version_policy.specific == [1]
    assert model.labels == {"onnx": 1}
    assert (model_dir / "2" / "model.pt2").exists()
    later = publish(model_dir, [item(tmp_path / "c", "tflite", "tflite", "model.tflite")], reports, None)
    assert later == {"tflite": 3}
    assert load_model_config(model_dir / CONFIG_FILE).version_policy.specific == [1, 3]


def test_an_operator_chosen_policy_is_kept(tmp_path: Path) -> None:
    model_dir = tmp_path / "repo" / "digits"
    model_dir.mkdir(parents=True)
    (model_dir / CONFIG_FILE).write_text("version_policy: {latest: 1}\nmax_batch_size: 64\n")
    publish(model_dir, [item(tmp_path, "onnx", "onnxruntime", "model.onnx")], reports, "onnx")
    model = load_model_config(model_dir / CONFIG_FILE)
    assert model.version_policy.latest == 1
    assert model.max_batch_size == 64
    assert model.labels == {"onnx": 1}


def test_concurrent_publishers_get_distinct_versions(tmp_path: Path) -> None:
    model_dir = tmp_path / "repo" / "digits"
    model_dir.mkdir(parents=True)
    results: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            results.append(
                publish(model_dir, [item(tmp_path / str(index), "onnx", "onnxruntime", "model.onnx")], reports, "onnx")
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(r["onnx"] for r in results) == [1, 2, 3, 4, 5, 6]
    assert existing_versions(model_dir) == [1, 2, 3, 4, 5, 6]
