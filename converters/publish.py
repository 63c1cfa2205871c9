"""Publish verified artifacts as new versions of a model in the repository, atomically.

Each artifact is staged in a hidden directory inside ``<repository>/<model>/`` (same
filesystem) with its ``config.yaml`` and the conversion report, then renamed to the next
free version number; an existing version is never touched. A ``flock`` on the model
directory serialises concurrent publishers, so version numbers are decided once and the
reports can name them. Finally the model-level ``config.yaml`` gets a label per format
and the recommended artifact as ``default_version``, written through a rename as well.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from gateway.core.config import (
    CONFIG_FILE,
    ModelConfig,
    VersionConfig,
    VersionPolicy,
    dump_model_config,
    load_model_config,
    load_version_config,
)

REPORT_JSON = "conversion-report.json"
REPORT_MD = "conversion-report.md"


@dataclass(frozen=True)
class Publication:
    """One artifact to publish: where it is now, its name in the version dir, its version config."""

    target: str
    artifact: Path
    config: VersionConfig


def existing_versions(model_dir: Path) -> list[int]:
    """Version numbers present in a model directory."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


@contextlib.contextmanager
def locked(model_dir: Path) -> Iterator[None]:
    """Exclusive lock on the model directory for the duration of a publish."""
    fd = os.open(model_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def publish(
    model_dir: Path,
    items: list[Publication],
    reports: Callable[[dict[str, int]], tuple[str, str]],
    recommended: str | None,
) -> dict[str, int]:
    """Publish ``items`` as new versions; returns ``{target: version}``.

    ``reports`` receives the version numbers and returns (JSON, Markdown) to store beside
    each version. On failure, staged directories are removed and a model directory this
    call created (and left empty) is removed too.
    """
    created = not model_dir.exists()
    model_dir.mkdir(parents=True, exist_ok=True)
    try:
        with locked(model_dir):
            first = max(existing_versions(model_dir), default=0) + 1
            versions = {item.target: first + i for i, item in enumerate(items)}
            report_json, report_md = reports(versions)
            for item in items:
                _publish_one(model_dir, item, versions[item.target], report_json, report_md)
            _update_model_config(model_dir, items, versions, recommended)
        return versions
    finally:
        if created and not any(model_dir.iterdir()):
            model_dir.rmdir()


def _publish_one(model_dir: Path, item: Publication, version: int, report_json: str, report_md: str) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=model_dir))
    try:
        destination = staging / (item.config.artifact or item.artifact.name)
        if item.artifact.is_dir():
            shutil.copytree(item.artifact, destination)
        else:
            shutil.copy2(item.artifact, destination)
        text = dump_model_config(item.config)
        if VersionConfig.model_validate(yaml.safe_load(text)) != item.config:
            raise RuntimeError(f"version config for {item.target} does not round-trip through YAML")
        (staging / CONFIG_FILE).write_text(text, encoding="utf-8")
        (staging / REPORT_JSON).write_text(report_json, encoding="utf-8")
        (staging / REPORT_MD).write_text(report_md, encoding="utf-8")
        final = model_dir / str(version)
        if final.exists():
            raise FileExistsError(f"{final} already exists; versions are never overwritten")
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _servable_versions(model_dir: Path, model: ModelConfig) -> list[int]:
    """Versions some backend can serve: a backend in their own config.yaml or the model's."""
    servable = []
    for version in existing_versions(model_dir):
        own = model_dir / str(version) / CONFIG_FILE
        raw = yaml.safe_load(own.read_text(encoding="utf-8")) if own.exists() else None
        if (isinstance(raw, dict) and raw.get("backend")) or model.backend:
            servable.append(version)
    return servable


def _policy(model_dir: Path, model: ModelConfig, new_servable: list[int]) -> VersionPolicy:
    """Keep the policy, but never ask the gateway to load a version no backend can serve."""
    policy = model.version_policy
    servable = _servable_versions(model_dir, model)
    everything = existing_versions(model_dir)
    if policy.specific is not None:
        return VersionPolicy(specific=sorted(set(policy.specific) | set(new_servable)))
    if policy.all and servable and servable != everything:
        return VersionPolicy(specific=servable)
    return policy


def _update_model_config(
    model_dir: Path, items: list[Publication], versions: dict[str, int], recommended: str | None
) -> None:
    path = model_dir / CONFIG_FILE
    current = load_model_config(path) if path.exists() else ModelConfig(version_policy=VersionPolicy(all=True))
    servable = {i.target: versions[i.target] for i in items if i.config.backend is not None}
    update: dict[str, object] = {
        "labels": {**current.labels, **servable},
        "version_policy": _policy(model_dir, current, sorted(servable.values())),
    }
    if recommended in servable:
        update["default_version"] = servable[recommended]
    merged = ModelConfig.model_validate({**current.model_dump(mode="json", exclude_unset=True), **_jsonable(update)})
    tmp = model_dir / f".{CONFIG_FILE}.tmp"
    tmp.write_text(dump_model_config(merged), encoding="utf-8")
    if load_model_config(tmp) != merged:
        raise RuntimeError(f"{path} does not round-trip through YAML")
    os.replace(tmp, path)
    for version in servable.values():
        load_version_config(merged, model_dir / str(version) / CONFIG_FILE)


def _jsonable(update: dict[str, object]) -> dict[str, object]:
    return {
        k: v.model_dump(mode="json", exclude_none=True) if isinstance(v, VersionPolicy) else v
        for k, v in update.items()
    }
