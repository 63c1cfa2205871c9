"""What the deployment lifecycle reports (the gateway's metrics implement it; the core imports no metrics library)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol


class DeploymentEvents(Protocol):
    def deployment(self, model: str, outcome: str) -> None:
        """A deployment (load, rollout) ended with ``outcome`` (``succeeded``, ``failed``, ``rolled_back``...)."""

    def rollback(self, model: str, reason: str) -> None:
        """A rollout was rolled back because of ``reason`` (``error_rate``, ``latency``, ``disagreement``...)."""

    def traffic_weights(self, model: str, weights: Mapping[str, float]) -> None:
        """The share (percent) each served version of ``model`` now gets of unpinned requests."""

    def rollout_step(self, model: str, step: int) -> None:
        """The rollout of ``model`` is at step ``step`` (0: none running)."""

    def models_changed(self, names: Sequence[str], versions: Mapping[str, Sequence[str]]) -> None:
        """The set of served models or versions changed (bounded metric label values)."""


class _NoDeploymentEvents:
    def deployment(self, model: str, outcome: str) -> None:
        return None

    def rollback(self, model: str, reason: str) -> None:
        return None

    def traffic_weights(self, model: str, weights: Mapping[str, float]) -> None:
        return None

    def rollout_step(self, model: str, step: int) -> None:
        return None

    def models_changed(self, names: Sequence[str], versions: Mapping[str, Sequence[str]]) -> None:
        return None


NO_DEPLOYMENT_EVENTS: DeploymentEvents = _NoDeploymentEvents()
