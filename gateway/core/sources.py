"""Where a model version may be loaded from: a folder inside the model repository, nothing else.

Loading is code execution (a model file drives a runtime), so a management call can only
name a model folder and one of its numbered version folders. URLs, absolute paths, ``..``
and anything resolving (through symlinks) outside the repository are refused with a 400
before anything is read or touched.
"""

from __future__ import annotations

from pathlib import Path

from gateway.core.config import MODEL_NAME_PATTERN
from gateway.core.errors import InvalidInput
from gateway.core.traffic import parse_version

_SOURCE_RULE = 'a version folder inside the model repository, like "3" or "<model>/3"'


def check_model_name(name: object) -> str:
    if not isinstance(name, str) or not MODEL_NAME_PATTERN.match(name) or name in (".", ".."):
        raise InvalidInput(f"model: {str(name)[:64]!r} is not a model name (must match {MODEL_NAME_PATTERN.pattern})")
    return name


def check_source(root: Path, model: str, source: object) -> int:
    """The version number ``source`` names inside ``root/model``, or :class:`InvalidInput`."""
    if isinstance(source, bool) or not isinstance(source, str | int):
        raise InvalidInput(f"source: must be {_SOURCE_RULE}")
    text = str(source).strip()
    if "://" in text or text.split(":", 1)[0].lower() in ("http", "https", "s3", "gs", "file", "ftp"):
        raise InvalidInput(f"source: URLs are not accepted; models load only from {_SOURCE_RULE}")
    if text.startswith(("/", "~")) or "\\" in text or ".." in text.split("/"):
        raise InvalidInput(f"source: absolute paths and '..' are not accepted; must be {_SOURCE_RULE}")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if len(parts) == 2:
        if parts[0] != model:
            raise InvalidInput(f"source: folder {parts[0][:64]!r} is not the folder of model {model!r}")
        parts = parts[1:]
    if len(parts) != 1:
        raise InvalidInput(f"source: must be {_SOURCE_RULE}")
    version = parse_version(parts[0], "source")
    base = root.resolve()
    if not (root / model / str(version)).resolve().is_relative_to(base):
        raise InvalidInput("source: resolves outside the model repository (symlinks out are not followed)")
    return version
