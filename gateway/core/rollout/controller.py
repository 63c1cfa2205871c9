"""Walks rollouts: applies their weights, judges the evidence, advances, promotes or rolls back.

Every gateway runs one controller. Each poll (``deployment_poll_seconds``) it

1. takes or renews the leader lease (:mod:`gateway.core.rollout.lease`);
2. reads every rollout state in the repository and applies any revision it has not applied
   yet (loading and warming up the candidate first if this replica lacks it);
3. writes its own evidence for each active rollout (``.modelgate/evidence/<model>/<replica>.json``);
4. if it leads: merges every replica's evidence for the current revision and decides.

A server error on a candidate also triggers a decision at once on the leader (no waiting for
the poll), so a failing canary is rolled back after a handful of errors. Operators' commands
(pause, resume, promote, abort) are applied by whichever replica receives them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.core.errors import ConfigError, DeploymentConflict, GatewayError, InvalidInput, ModelNotFound
from gateway.core.evidence import EvidenceBook, VersionEvidence
from gateway.core.lifecycle import Lifecycle
from gateway.core.rollout.analysis import ADVANCE, ROLLBACK, Decision, judge
from gateway.core.rollout.lease import LeaderLease
from gateway.core.rollout.plan import model_plan_defaults, parse_plan
from gateway.core.rollout.poller import RepositoryPoller
from gateway.core.rollout.state import (
    ABORTED,
    CANARY,
    PAUSED,
    PROMOTED,
    ROLLED_BACK,
    SHADOW,
    RolloutState,
    RolloutStore,
)  # fmt: skip
from gateway.core.sources import check_model_name
from gateway.core.statefile import read_json, state_dir, write_json_atomic
from gateway.core.traffic import TrafficSplit

log = logging.getLogger(__name__)


def replica_name() -> str:
    """This process's name among replicas sharing a repository: host, pid and a random suffix."""
    import os
    import secrets
    import socket

    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class RolloutController:
    def __init__(self, lifecycle: Lifecycle, evidence: EvidenceBook, replica: str, poll_seconds: float,
                 clock: Callable[[], float] = time.time, repository_poll: bool = False) -> None:  # fmt: skip
        self.lifecycle = lifecycle
        self.evidence = evidence
        self.replica = replica
        self.poll_seconds = poll_seconds
        self._clock = clock
        root: Path = lifecycle.root
        self.store = RolloutStore(root)
        self.lease = LeaderLease(root, replica, ttl_seconds=3 * poll_seconds, clock=clock)
        self._evidence_dir = state_dir(root) / "evidence"
        self._applied: dict[str, int] = {}
        self._leading = False
        #: Models with a rollout in shadow or canary here (failed requests of others need no decision).
        self._running: set[str] = set()
        self.poller = RepositoryPoller(lifecycle) if repository_poll else None
        self._background: set[asyncio.Task[None]] = set()
        evidence.on_error = self.on_error
        lifecycle.traffic_guard = self._refuse_during_rollout

    # -- operator commands ------------------------------------------------------------------------

    async def start(self, model: object, doc: object) -> dict[str, Any]:
        name = check_model_name(model)
        served_model = self.lifecycle.manager.get(name)
        current = self.store.load(name)
        if current is not None and current.active:
            raise DeploymentConflict(f"model {name!r} has a rollout of version {current.candidate} running; "
                                     "promote or abort it first")  # fmt: skip
        try:
            base = model_plan_defaults(self.lifecycle.root / name)
        except ConfigError as exc:
            raise InvalidInput(f"model {name!r}: {exc}") from None
        plan = parse_plan(doc if doc is not None else {}, base)
        stable = self.lifecycle.serving_version(served_model)
        if stable is None:
            raise DeploymentConflict(f"model {name!r} has no version serving to roll out from")
        if stable == plan.version:
            raise InvalidInput(f"version: {plan.version} already serves all traffic of {name!r}")
        candidate = served_model.versions.get(plan.version)
        if candidate is None or not candidate.ready:
            await self.lifecycle.load(name, str(plan.version), action="rollout_load")  # warm-up; failures recorded
        now = self._clock()
        before = self.evidence.live(name, stable)
        state = RolloutState(name, plan, stable, plan.version, SHADOW if plan.shadow else CANARY,
                             revision=(current.revision + 1) if current else 1, started_at=now, step_started_at=now,
                             updated_at=now, leader=self.replica,
                             baseline_p99=before.p99() if before.requests >= plan.min_requests else None)  # fmt: skip
        self.lifecycle.clear_traffic_override(name)
        self._commit(state, "rollout_start", "started", f"from version {stable} to {plan.version}")
        return state.view()

    async def command(self, model: object, action: str) -> dict[str, Any]:
        """pause / resume / promote / abort a running rollout."""
        name = check_model_name(model)
        state = self.store.load(name)
        if state is None or not state.active:
            raise ModelNotFound(f"model {name!r} has no rollout running")
        now = self._clock()
        if action == "pause":
            if state.status == PAUSED:
                return state.view()
            state.paused_from, state.status = state.status, PAUSED
            self._commit(state, "rollout_pause", "paused", "by the operator")
        elif action == "resume":
            if state.status != PAUSED:
                return state.view()
            state.status, state.paused_from, state.step_started_at = state.paused_from, "", now
            self._commit(state, "rollout_resume", "resumed", "by the operator")
        elif action == "promote":
            self._promote(state, "promoted by the operator")
        elif action == "abort":
            self._roll_back(state, "aborted", "aborted by the operator", {}, outcome=ABORTED)
        else:
            raise InvalidInput(f"action: {action!r} is not one of pause, resume, promote, abort")
        return state.view()

    def status(self, model: object) -> dict[str, Any]:
        name = check_model_name(model)
        state = self.store.load(name)
        if state is None:
            raise ModelNotFound(f"model {name!r} has never had a rollout")
        view = state.view()
        view["evidence"] = self._merged(state)[0].to_dict() if state.active else None
        view["leader_now"] = self.lease.holder()
        return view

    def _refuse_during_rollout(self, model: str) -> None:
        state = self.store.load(model)
        if state is not None and state.active:
            raise DeploymentConflict(f"model {model!r} has a rollout of version {state.candidate} running: its "
                                     "traffic follows the plan (pause, promote or abort it first)")  # fmt: skip

    # -- the loop ----------------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            await self.safe_tick()

    async def safe_tick(self) -> None:
        """One poll; a repository that cannot be read or written now is logged, not fatal."""
        try:
            await self.tick()
        except (OSError, GatewayError) as exc:
            log.warning("rollout poll failed: %s", exc)

    async def tick(self) -> None:
        # Off the event loop: renewing the lease is a file write and an fsync every poll, which on a
        # busy disk blocked every request for milliseconds once a second (a p99 spike).
        self._leading = await asyncio.to_thread(self.lease.acquire)
        self.lifecycle.sync_overrides()
        for state in self.store.all():
            if self._applied.get(state.model) != state.revision:
                await self._apply(state)
            if state.active:
                self._publish_evidence(state)
                if self._leading:
                    self.decide(state.model)
        if self.poller is not None:
            await self.poller.poll(self, self._leading)

    def on_error(self, model: str) -> None:
        """A live request failed: the leader judges the model's rollout at once."""
        if self._leading and model in self._running:
            self.decide(model)

    def decide(self, model: str) -> Decision | None:
        state = self.store.load(model)
        if state is None or state.status not in (SHADOW, CANARY) or self._applied.get(model) != state.revision:
            return None
        candidate, stable = self._merged(state)
        dwell_done = self._clock() - state.step_started_at >= state.plan.dwell_seconds
        decision = judge(state.plan, state.status == SHADOW, candidate, stable, dwell_done, state.baseline_p99)
        if decision.action == ROLLBACK:
            state.failed_requests += candidate.errors + stable.errors
            self._roll_back(state, decision.reason, decision.detail, decision.evidence)
        elif decision.action == ADVANCE:
            state.failed_requests += candidate.errors + stable.errors
            self._advance(state, decision)
        return decision

    async def close(self) -> None:
        self.lease.release()
        if self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # -- transitions ---------------------------------------------------------------------------------

    def _advance(self, state: RolloutState, decision: Decision) -> None:
        if state.status == SHADOW:
            state.status, state.step = CANARY, 0
        elif state.step + 1 < len(state.plan.steps):
            state.step += 1
        else:
            self._promote(state, decision.detail, decision.evidence)
            return
        state.step_started_at = self._clock()
        self._commit(state, "rollout_advance", "advanced", decision.detail, decision.evidence)

    def _promote(self, state: RolloutState, detail: str, evidence: dict[str, Any] | None = None) -> None:
        at_step = state.step_label()
        state.status = PROMOTED
        state.reason = detail
        self._commit(state, "rollout_promote", "succeeded", detail, evidence or {}, at_step,
                     duration_seconds=round(self._clock() - state.started_at, 3))  # fmt: skip
        self.lifecycle.events.deployment(state.model, "succeeded")
        if state.plan.unload_previous:
            self._background_drain(state.model, state.stable)

    def _roll_back(self, state: RolloutState, reason: str, detail: str, evidence: dict[str, Any],
                   outcome: str = ROLLED_BACK) -> None:  # fmt: skip
        at_step = state.step_label()
        state.status = outcome
        state.reason = f"{reason}: {detail}"
        self._commit(state, "rollout_rollback" if outcome == ROLLED_BACK else "rollout_abort", outcome, state.reason,
                     evidence, at_step, rollback_reason=reason,
                     duration_seconds=round(self._clock() - state.started_at, 3))  # fmt: skip
        self.lifecycle.events.deployment(state.model, outcome)
        self.lifecycle.events.rollback(state.model, reason)
        log.warning("rollout of %s version %d %s: %s", state.model, state.candidate, outcome, state.reason)
        self._background_drain(state.model, state.candidate)

    def _commit(self, state: RolloutState, action: str, outcome: str, reason: str,
                evidence: dict[str, Any] | None = None, at_step: int | None = None, **extra: Any) -> None:  # fmt: skip
        """Persist a new revision, apply it here, and record the decision with its evidence.

        ``at_step``: the step the decision was taken in (default: the step after it).
        """
        if action != "rollout_start":
            on_disk = self.store.load(state.model)
            state.revision = max(state.revision, on_disk.revision if on_disk else 0) + 1
        state.updated_at = self._clock()
        state.leader = self.replica
        self.store.save(state)
        self._apply_weights(state)
        self.lifecycle.history.record(
            state.model, state.candidate, action, outcome, reason, stable=str(state.stable), status=state.status,
            step=state.step_label() if at_step is None else at_step,
            weights={str(v): w for v, w in state.weights().items()},
            revision=state.revision, evidence=evidence or {}, failed_requests=state.failed_requests,
            replica=self.replica, **extra,
        )  # fmt: skip
        log.info("rollout %s v%d: %s (%s) %s", state.model, state.candidate, action, outcome, reason)

    # -- applying state locally --------------------------------------------------------------------------

    async def _apply(self, state: RolloutState) -> None:
        """Bring this replica to ``state`` (after a restart, or a change made by another replica)."""
        try:
            model = self.lifecycle.manager.get(state.model)
        except ModelNotFound:
            return
        if state.active and state.candidate not in {v for v, s in model.versions.items() if s.ready}:
            try:
                await self.lifecycle.load(state.model, str(state.candidate), action="rollout_load")
            except GatewayError as exc:
                log.warning("cannot follow the rollout of %s: %s", state.model, exc)
                return
        self._apply_weights(state)
        if not state.active and state.status in (ROLLED_BACK, ABORTED):
            candidate = model.versions.get(state.candidate)
            if candidate is not None and candidate.ready:
                self._background_drain(state.model, state.candidate)

    def _apply_weights(self, state: RolloutState) -> None:
        self._applied[state.model] = state.revision
        if state.status in (SHADOW, CANARY):
            self._running.add(state.model)
        else:
            self._running.discard(state.model)
        self.evidence.reset(state.model)
        try:
            model = self.lifecycle.manager.get(state.model)
        except ModelNotFound:
            return
        if state.active:
            model.traffic = TrafficSplit(state.weights(), state.shadow_rule())
        else:
            model.traffic = None
            self.lifecycle.pin_default(model, state.candidate if state.status == PROMOTED else state.stable)
        self.lifecycle.events.rollout_step(state.model, state.step_label())
        self.lifecycle.report_weights(model)

    def _background_drain(self, model: str, version: int) -> None:
        task = asyncio.get_running_loop().create_task(self._drain(model, version))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _drain(self, model: str, version: int) -> None:
        try:
            await self.lifecycle.unload(model, str(version), record=False)
        except GatewayError as exc:
            log.warning("unloading %s version %d after the rollout: %s", model, version, exc)

    # -- evidence shared between replicas ---------------------------------------------------------------

    def _publish_evidence(self, state: RolloutState) -> None:
        doc = {
            "revision": state.revision,
            "updated_at": self._clock(),
            "candidate_live": self.evidence.live(state.model, state.candidate).to_state(),
            "candidate_shadow": self.evidence.shadow(state.model, state.candidate).to_state(),
            "stable": self.evidence.live(state.model, state.stable).to_state(),
        }
        write_json_atomic(self._evidence_dir / state.model / f"{self.replica}.json", doc)

    def _merged(self, state: RolloutState) -> tuple[VersionEvidence, VersionEvidence]:
        """(candidate, stable) evidence of this revision: this replica's live counts plus the others' files."""
        shadow_phase = state.status == SHADOW or (state.status == PAUSED and state.paused_from == SHADOW)
        book = self.evidence.shadow if shadow_phase else self.evidence.live
        candidate = VersionEvidence()
        candidate.merge(book(state.model, state.candidate))
        stable = VersionEvidence()
        stable.merge(self.evidence.live(state.model, state.stable))
        folder = self._evidence_dir / state.model
        fresh_after = self._clock() - 3 * self.lease.ttl
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            if path.stem == self.replica:
                continue
            doc = read_json(path)
            if not isinstance(doc, dict) or doc.get("revision") != state.revision:
                continue
            if float(doc.get("updated_at", 0)) < fresh_after:
                continue
            candidate.merge(
                VersionEvidence.from_state(doc.get("candidate_shadow" if shadow_phase else "candidate_live"))
            )
            stable.merge(VersionEvidence.from_state(doc.get("stable")))
        return candidate, stable
