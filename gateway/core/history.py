"""The deployment history: one JSON line per decision, in ``<repository>/.modelgate/deployments.jsonl``.

Each record has ``time`` (UTC ISO 8601), ``model``, ``version``, ``action`` (``load``,
``unload``, ``labels``, ``traffic``, ``rollout_*``...), ``outcome`` (``succeeded``,
``failed``, ``rolled_back``...), ``reason`` and the evidence the decision was taken on.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from gateway.core.statefile import append_line, read_lines, state_dir

HISTORY_FILE = "deployments.jsonl"


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class DeploymentHistory:
    """Append-only records shared by every gateway using the same repository."""

    def __init__(self, repository: Path) -> None:
        self.path = state_dir(repository) / HISTORY_FILE

    def record(self, model: str, version: int | None, action: str, outcome: str, reason: str = "",
               **evidence: Any) -> dict[str, Any]:  # fmt: skip
        entry: dict[str, Any] = {
            "time": utc_now(),
            "model": model,
            "version": str(version) if version is not None else "",
            "action": action,
            "outcome": outcome,
            "reason": reason,
        }
        entry.update(evidence)
        append_line(self.path, entry)
        return entry

    def read(self, model: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        records = [r for r in read_lines(self.path) if model is None or r.get("model") == model]
        return records[-limit:] if limit else records
