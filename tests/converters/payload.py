"""The code a crafted model file tries to run: create a canary file (tests assert it never appears)."""

from __future__ import annotations

from pathlib import Path


def touch(path: str) -> int:
    """What the crafted pickles call when a real (unrestricted) unpickler loads them."""
    Path(path).write_text("the payload ran", encoding="utf-8")
    return 0


class Payload:
    """Pickles to ``touch(canary)``: unpickling it with a plain unpickler creates the canary."""

    def __init__(self, canary: Path) -> None:
        self.canary = str(canary)

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return touch, (self.canary,)
