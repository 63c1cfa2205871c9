"""Small helpers shared by the converter tests."""

from __future__ import annotations

from pathlib import Path


def published(repository: Path, name: str) -> list[str]:
    """Version directory names of a model, sorted numerically (empty if the model does not exist)."""
    model_dir = repository / name
    if not model_dir.exists():
        return []
    return sorted((p.name for p in model_dir.iterdir() if p.is_dir()), key=lambda n: (not n.isdigit(), n.zfill(8)))
