"""Scan a model repository directory into validated model entries.

The scan never raises for a bad model: each problem becomes the ``error`` of its entry
(naming the file and field), so one broken config never stops the others being served.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gateway.core.backend import ModelVersionSource
from gateway.core.config import (
    CONFIG_FILE,
    MODEL_NAME_PATTERN,
    VERSION_PATTERN,
    ModelConfig,
    load_model_config,
    load_version_config,
)
from gateway.core.errors import ConfigError


@dataclass(slots=True)
class VersionEntry:
    """A version selected by the policy: loadable (``source``) or broken (``error``)."""

    version: int
    source: ModelVersionSource | None = None
    error: str | None = None


@dataclass(slots=True)
class ModelEntry:
    """One model directory. ``error`` set means the whole model is unavailable."""

    name: str
    path: Path
    config: ModelConfig | None = None
    versions: list[VersionEntry] = field(default_factory=list)
    error: str | None = None


class ModelRepository:
    """A directory of ``<model>/config.yaml`` + ``<model>/<version>/`` folders."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def scan(self) -> list[ModelEntry]:
        """Every model directory, sorted by name, validated."""
        if not self.root.is_dir():
            raise ConfigError(f"model repository {self.root} does not exist or is not a directory")
        entries = []
        for path in sorted(self.root.iterdir()):
            if path.is_dir() and not path.name.startswith((".", "_")):
                entries.append(self._relative(scan_model(path)))
        return entries

    def scan_one(self, name: str) -> ModelEntry:
        """One model directory, validated like :meth:`scan` (``name`` is checked by the caller)."""
        return self._relative(scan_model(self.root / name))

    def version_entry(self, config: ModelConfig, name: str, version: int) -> VersionEntry:
        """One version folder of a model, whatever the version policy selects (explicit loads)."""
        entry = _version_entry(self.root / name, config, version)
        entry.error = self.relative(entry.error) if entry.error else None
        return entry

    def relative(self, message: str) -> str:
        """``message`` with the repository's absolute path removed: clients never see server paths."""
        return message.replace(f"{self.root.resolve()}/", "").replace(f"{self.root}/", "")

    def _relative(self, entry: ModelEntry) -> ModelEntry:
        entry.error = self.relative(entry.error) if entry.error else None
        for version in entry.versions:
            version.error = self.relative(version.error) if version.error else None
        return entry


def scan_model(path: Path) -> ModelEntry:
    """Validate one model directory; problems are recorded, not raised."""
    entry = ModelEntry(name=path.name, path=path)
    if not MODEL_NAME_PATTERN.fullmatch(path.name):
        entry.error = f"{path}: model name must match {MODEL_NAME_PATTERN.pattern}"
        return entry
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        entry.error = f"{config_path}: missing (every model directory needs a config.yaml)"
        return entry
    try:
        entry.config = load_model_config(config_path)
        entry.versions = _select_versions(path, entry.config)
        _check_references(config_path, entry.config, [v.version for v in entry.versions])
    except ConfigError as exc:
        entry.error = str(exc)
    return entry


def _select_versions(path: Path, config: ModelConfig) -> list[VersionEntry]:
    available = [int(p.name) for p in path.iterdir() if p.is_dir() and VERSION_PATTERN.fullmatch(p.name)]
    if not available:
        raise ConfigError(f"{path}: no version directories (expected numbered folders like {path}/1/)")
    selected = config.version_policy.select(available)
    if not selected:
        raise ConfigError(
            f"{path / CONFIG_FILE}: version_policy selects none of the versions on disk {sorted(available)}"
        )
    return [_version_entry(path, config, v) for v in selected]


def _version_entry(path: Path, config: ModelConfig, version: int) -> VersionEntry:
    version_dir = path / str(version)
    try:
        effective = load_version_config(config, version_dir / CONFIG_FILE)
    except ConfigError as exc:
        return VersionEntry(version, error=str(exc))
    return VersionEntry(version, source=ModelVersionSource(path.name, version, effective, version_dir))


def _check_references(config_path: Path, config: ModelConfig, served: list[int]) -> None:
    for label, version in config.labels.items():
        if version not in served:
            raise ConfigError(f"{config_path}: labels.{label}: version {version} is not served (served: {served})")
    if config.default_version is not None and config.default_version not in served:
        raise ConfigError(
            f"{config_path}: default_version: version {config.default_version} is not served (served: {served})"
        )
