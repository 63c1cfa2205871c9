"""The durable state of a model's rollout, in ``<repository>/.modelgate/rollouts/<model>.json``.

Written atomically on every change with a ``revision`` that only grows: a replica that sees
a revision it has not applied yet applies the state's weights (loading the candidate first if
it must); a restarted gateway resumes from it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.core.rollout.plan import RolloutPlan
from gateway.core.statefile import read_json, state_dir, write_json_atomic
from gateway.core.traffic import ShadowRule

SHADOW, CANARY, PAUSED = "shadow", "canary", "paused"
PROMOTED, ROLLED_BACK, ABORTED = "promoted", "rolled_back", "aborted"
ACTIVE = frozenset({SHADOW, CANARY, PAUSED})


@dataclass(slots=True)
class RolloutState:
    model: str
    plan: RolloutPlan
    stable: int
    candidate: int
    status: str
    step: int = 0
    paused_from: str = ""
    revision: int = 1
    started_at: float = field(default_factory=time.time)
    step_started_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    reason: str = ""
    #: Server errors (both versions) in finished steps, for the deployment figures.
    failed_requests: int = 0
    leader: str = ""
    #: The stable version's p99 before the rollout began (None: too few requests then).
    baseline_p99: float | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def phase(self) -> str:
        """shadow or canary (what a paused rollout returns to)."""
        return self.paused_from if self.status == PAUSED else self.status

    def weights(self) -> dict[int, float]:
        if self.status == PROMOTED:
            return {self.candidate: 100.0}
        if not self.active or self.phase == SHADOW:
            return {self.stable: 100.0}
        share = self.plan.steps[self.step]
        weights = {self.stable: 100.0 - share, self.candidate: share}
        return {v: w for v, w in weights.items() if w > 0} or {self.candidate: 100.0}

    def shadow_rule(self) -> ShadowRule | None:
        if self.active and self.phase == SHADOW and self.plan.shadow is not None:
            return ShadowRule(self.candidate, self.plan.shadow.share)
        return None

    def step_label(self) -> int:
        """0 shadow/none, 1..n the canary step (the metric's value)."""
        return self.step + 1 if self.active and self.phase == CANARY else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "plan": self.plan.model_dump(mode="json"), "stable": self.stable,
            "candidate": self.candidate, "status": self.status, "step": self.step, "paused_from": self.paused_from,
            "revision": self.revision, "started_at": self.started_at, "step_started_at": self.step_started_at,
            "updated_at": self.updated_at, "reason": self.reason, "failed_requests": self.failed_requests,
            "leader": self.leader, "baseline_p99": self.baseline_p99,
        }  # fmt: skip

    def view(self) -> dict[str, Any]:
        """What the API shows: the state plus the current weights."""
        return {**self.to_dict(), "weights": {str(v): w for v, w in self.weights().items()},
                "step_percent": self.plan.steps[self.step] if self.phase == CANARY else 0.0}  # fmt: skip

    @classmethod
    def from_dict(cls, doc: Any) -> RolloutState | None:
        """None for anything that is not a complete state (a foreign or damaged file is ignored)."""
        try:
            plan = RolloutPlan.model_validate(doc["plan"])
            return cls(
                model=str(doc["model"]), plan=plan, stable=int(doc["stable"]), candidate=int(doc["candidate"]),
                status=str(doc["status"]), step=int(doc["step"]), paused_from=str(doc.get("paused_from", "")),
                revision=int(doc["revision"]), started_at=float(doc["started_at"]),
                step_started_at=float(doc["step_started_at"]), updated_at=float(doc["updated_at"]),
                reason=str(doc.get("reason", "")), failed_requests=int(doc.get("failed_requests", 0)),
                leader=str(doc.get("leader", "")),
                baseline_p99=float(doc["baseline_p99"]) if doc.get("baseline_p99") is not None else None,
            )  # fmt: skip
        except (KeyError, TypeError, ValueError):
            return None


class RolloutStore:
    def __init__(self, repository: Path) -> None:
        self.folder = state_dir(repository) / "rollouts"

    def path(self, model: str) -> Path:
        return self.folder / f"{model}.json"

    def save(self, state: RolloutState) -> None:
        write_json_atomic(self.path(state.model), state.to_dict())

    def load(self, model: str) -> RolloutState | None:
        return RolloutState.from_dict(read_json(self.path(model)))

    def all(self) -> list[RolloutState]:
        if not self.folder.is_dir():
            return []
        states = [RolloutState.from_dict(read_json(p)) for p in sorted(self.folder.glob("*.json"))]
        return [s for s in states if s is not None]
