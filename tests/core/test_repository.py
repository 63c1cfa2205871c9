from pathlib import Path

import pytest

from gateway.core.errors import ConfigError
from gateway.core.repository import ModelRepository


def model(repo: Path, name: str, config: str | None, versions: tuple[int, ...] = (1,)) -> None:
    (repo / name).mkdir(parents=True)
    if config is not None:
        (repo / name / "config.yaml").write_text(config, encoding="utf-8")
    for v in versions:
        (repo / name / str(v)).mkdir()


def test_scan_validates_each_model_independently(tmp_path: Path) -> None:
    model(tmp_path, "good", "backend: onnxruntime\n")
    model(tmp_path, "no_config", None)
    model(tmp_path, "no_versions", "backend: onnxruntime\n", versions=())
    model(tmp_path, "bad_label", "backend: onnxruntime\nlabels: {stable: 7}\n")
    model(tmp_path, "bad default", "backend: onnxruntime\n")
    (tmp_path / ".hidden").mkdir()
    entries = {e.name: e for e in ModelRepository(tmp_path).scan()}
    assert sorted(entries) == ["bad default", "bad_label", "good", "no_config", "no_versions"]
    assert entries["good"].error is None and [v.version for v in entries["good"].versions] == [1]
    assert "config.yaml: missing" in (entries["no_config"].error or "")
    assert "no version directories" in (entries["no_versions"].error or "")
    assert "labels.stable: version 7 is not served" in (entries["bad_label"].error or "")
    assert "model name must match" in (entries["bad default"].error or "")


def test_policy_picks_versions_and_version_configs_apply(tmp_path: Path) -> None:
    model(tmp_path, "m", "backend: onnxruntime\nversion_policy: {latest: 2}\n", versions=(1, 2, 3))
    (tmp_path / "m" / "3" / "config.yaml").write_text("backend: tflite\n", encoding="utf-8")
    (tmp_path / "m" / "2" / "config.yaml").write_text("backend: No-pe\n", encoding="utf-8")
    (entry,) = ModelRepository(tmp_path).scan()
    by_version = {v.version: v for v in entry.versions}
    assert sorted(by_version) == [2, 3]
    assert by_version[3].source is not None and by_version[3].source.config.backend == "tflite"
    assert by_version[2].source is None and "2/config.yaml" in (by_version[2].error or "")


def test_missing_repository_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        ModelRepository(tmp_path / "absent").scan()
