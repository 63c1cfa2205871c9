"""Labels and traffic splits set through the API, shared by replicas and kept across restarts.

``<repository>/.modelgate/models/<model>.json`` = ``{"revision", "labels", "traffic"}``,
written atomically; each replica applies a revision it has not applied yet on its next poll
(and a restarted gateway applies them before it reports ready).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.core.statefile import read_json, state_dir, write_json_atomic


class OverridesStore:
    def __init__(self, repository: Path) -> None:
        self.folder = state_dir(repository) / "models"

    def load(self, model: str) -> dict[str, Any]:
        doc = read_json(self.folder / f"{model}.json")
        return doc if isinstance(doc, dict) and isinstance(doc.get("revision"), int) else {}

    def update(self, model: str, **fields: Any) -> dict[str, Any]:
        """Set ``fields`` (labels and/or traffic) and bump the revision; returns the new document."""
        doc = self.load(model)
        doc = {"labels": doc.get("labels"), "traffic": doc.get("traffic"), **fields,
               "revision": int(doc.get("revision", 0)) + 1}  # fmt: skip
        write_json_atomic(self.folder / f"{model}.json", doc)
        return doc

    def models(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.stem for p in self.folder.glob("*.json"))
