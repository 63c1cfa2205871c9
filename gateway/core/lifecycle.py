"""Runtime deployment operations, off the request path: load, unload, labels, traffic split.

Availability-preserving swap: a version is loaded and warmed up (and verified against
stored expected outputs when present) *before* it is installed; until then the old
version serves. A version being unloaded stops getting new requests at once and is
unloaded when its in-flight requests finish. A version that fails to load, warm up or
verify never gets traffic; the failure is recorded in the deployment history with the
reason, and the caller gets :class:`DeploymentFailed`.

Operations on one model are serialised by a per-model lock; different models proceed
concurrently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gateway.core.config import CONFIG_FILE, MODEL_NAME_PATTERN, load_model_config
from gateway.core.deploy_events import NO_DEPLOYMENT_EVENTS, DeploymentEvents
from gateway.core.errors import (
    ConfigError,
    DeploymentConflict,
    ErrorKind,
    GatewayError,
    InvalidInput,
    ModelNotFound,
)
from gateway.core.history import DeploymentHistory
from gateway.core.models import ModelManager, ServedModel, ServedVersion, VersionState
from gateway.core.overrides import OverridesStore
from gateway.core.sources import check_model_name, check_source
from gateway.core.traffic import parse_split, parse_version
from gateway.core.warmup import DEFAULT_WARMUP, WarmupFailed, WarmupPolicy, warm_up

log = logging.getLogger(__name__)


class DeploymentFailed(GatewayError):
    """A version could not be loaded, warmed up or verified; what served before still serves."""

    kind = ErrorKind.UNAVAILABLE


class Lifecycle:
    """Load / unload / relabel / split models served by a :class:`ModelManager`."""

    def __init__(
        self,
        manager: ModelManager,
        history: DeploymentHistory,
        events: DeploymentEvents = NO_DEPLOYMENT_EVENTS,
        warmup: WarmupPolicy = DEFAULT_WARMUP,
        drain_seconds: float = 30.0,
    ) -> None:
        self.manager = manager
        self.history = history
        self.events = events
        self.warmup = warmup
        self.drain_seconds = drain_seconds
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.overrides = OverridesStore(manager.repository.root)
        self._applied_overrides: dict[str, int] = {}
        #: Raises when a hand-set split is not allowed now (a rollout controls the model's traffic).
        self.traffic_guard: Callable[[str], None] | None = None

    @property
    def root(self) -> Path:
        return self.manager.repository.root

    def lock(self, model: str) -> asyncio.Lock:
        return self._locks[model]

    # -- load -----------------------------------------------------------------------------

    async def load(self, model: object, source: object = None, action: str = "load") -> dict[str, Any]:
        """Load a version folder (``source``), or (re)load the whole model per its config.

        ``action`` names the history record: ``load`` is a deployment of its own (counted in the
        figures and metrics); a rollout loading its candidate records ``rollout_load``.
        """
        name = check_model_name(model)
        version = check_source(self.root, name, source) if source is not None else None
        async with self.lock(name):
            if version is None:
                return await self._load_model(name)
            return await self._load_version(name, version, action)

    async def _load_version(self, name: str, version: int, action: str = "load") -> dict[str, Any]:
        model = self.manager.get(name)
        if not (self.root / name / str(version)).is_dir():
            raise ModelNotFound(f"model {name!r} has no version folder {version} in the repository")
        started = time.perf_counter()
        try:
            config = load_model_config(self.root / name / CONFIG_FILE)
        except ConfigError as exc:
            raise self._failed(name, version, action, self.manager.repository.relative(str(exc)), started) from None
        served = self.manager.plan_version(name, self.manager.repository.version_entry(config, name, version))
        report = await self._prepare(served)
        if not served.ready:
            raise self._failed(name, version, action, served.reason, started, serving=_serving(model))
        previous = self.manager.install_version(served)
        if previous is not None and previous is not served:
            await self.manager.drain(previous, self.drain_seconds)
        return self._succeeded(name, version, action, started, report)

    async def _load_model(self, name: str) -> dict[str, Any]:
        if not (self.root / name).is_dir():
            raise ModelNotFound(f"no model folder {name!r} in the repository")
        started = time.perf_counter()
        old = self._served_or_none(name)
        entry = self.manager.repository.scan_one(name)
        new = self.manager.plan_model(entry)
        if new.error is not None:
            if old is None or not any(v.ready for v in old.versions.values()):
                self.manager.install_model(new)
                self._models_changed()
            raise self._failed(name, None, "load", new.error, started, serving=_serving(old))
        fresh = self._reuse(old, new)
        reports = await asyncio.gather(*(self._prepare(v) for v in fresh))
        if not any(v.ready for v in new.versions.values()):
            reason = "; ".join(f"version {v.version}: {v.reason}" for v in fresh if v.reason) or "no version loaded"
            await asyncio.gather(*(self.manager.drain(v, 0) for v in fresh if v.backend is not None))
            if old is None:
                self.manager.install_model(new)
                self._models_changed()
            raise self._failed(name, None, "load", reason, started, serving=_serving(old))
        if old is not None and old.traffic is not None and set(old.traffic.weights) <= set(new.versions):
            new.traffic = old.traffic
        self.manager.install_model(new)
        self._models_changed()
        self._applied_overrides.pop(name, None)  # the fresh config's labels: recorded ones apply again
        kept = {id(v) for v in new.versions.values()}
        if old is not None:
            await asyncio.gather(*(self.manager.drain(v, self.drain_seconds)
                                   for v in old.versions.values() if id(v) not in kept))  # fmt: skip
        for served, report in zip(fresh, reports, strict=True):
            if not served.ready:
                self.history.record(name, served.version, "load", "failed", served.reason)
                self.events.deployment(name, "failed")
            else:
                self._succeeded(name, served.version, "load", started, report)
        return {"model": name, "versions": {str(v): s.state.value for v, s in sorted(new.versions.items())}}

    def _reuse(self, old: ServedModel | None, new: ServedModel) -> list[ServedVersion]:
        """Keep old versions that are READY with the same config; return the ones to load."""
        fresh = []
        for number, served in list(new.versions.items()):
            previous = old.versions.get(number) if old is not None else None
            if previous is not None and previous.ready and previous.config == served.config:
                new.versions[number] = previous
            elif served.state is VersionState.LOADING:
                fresh.append(served)
        return fresh

    async def _prepare(self, served: ServedVersion) -> dict[str, Any]:
        """Load then warm up ``served``; on failure it ends UNAVAILABLE with the reason, unloaded."""
        started = time.perf_counter()
        await self.manager.load_version(served)
        loaded = time.perf_counter()
        if not served.ready or served.backend is None or served.call is None:
            return {}
        try:
            report = await warm_up(served.call, served.backend.signature, served.backend.source.version_dir,
                                   self.warmup)  # fmt: skip
        except WarmupFailed as exc:
            await self.manager.drain(served, 0)
            self.manager.set_state(served, VersionState.UNAVAILABLE, f"warm-up failed: {exc}")
            return {}
        return {"load_seconds": round(loaded - started, 4), "warmup_seconds": round(time.perf_counter() - loaded, 4),
                "warmup": report.to_dict()}  # fmt: skip

    # -- unload ---------------------------------------------------------------------------

    async def unload(self, model: object, version: object = None, record: bool = True) -> dict[str, Any]:
        """Unload one version, or every version of the model; in-flight requests finish first."""
        name = check_model_name(model)
        number = parse_version(version, "version") if version is not None else None
        async with self.lock(name):
            served_model = self.manager.get(name)
            if number is None:
                targets = list(served_model.versions.values())
                served_model.traffic = None
            else:
                if number not in served_model.versions:
                    raise ModelNotFound(f"model {name!r} has no served version {number}")
                targets = [served_model.versions[number]]
                if served_model.traffic is not None and number in served_model.traffic.weights:
                    served_model.traffic = None
                    self.history.record(name, number, "traffic", "cleared", "the split named an unloaded version")
            await asyncio.gather(*(self.manager.drain(v, self.drain_seconds) for v in targets))
            if record:
                self.history.record(name, number, "unload", "succeeded")
            self._report_weights(served_model)
        return {"model": name, "versions": {str(v.version): v.state.value for v in targets}}

    # -- labels and traffic -----------------------------------------------------------------

    async def set_labels(self, model: object, labels: object) -> dict[str, Any]:
        """Replace the model's labels (shared with replicas through the repository)."""
        name = check_model_name(model)
        async with self.lock(name):
            shown = self._apply_labels(self.manager.get(name), labels)
            revision = self.overrides.update(name, labels=shown)["revision"]
            self._applied_overrides[name] = revision
            self.history.record(name, None, "labels", "succeeded", labels=shown)
        return {"model": name, "labels": shown}

    async def set_traffic(self, model: object, doc: object) -> dict[str, Any]:
        """Set (or with ``{"weights": null}`` clear) the weighted split of unpinned requests."""
        name = check_model_name(model)
        if self.traffic_guard is not None:
            self.traffic_guard(name)
        async with self.lock(name):
            served_model = self.manager.get(name)
            split = self._apply_traffic(served_model, doc)
            revision = self.overrides.update(name, traffic=split)["revision"]
            self._applied_overrides[name] = revision
            self.history.record(name, None, "traffic", "succeeded", traffic=split)
        return {"model": name, "traffic": split}

    def clear_traffic_override(self, name: str) -> None:
        """Forget a hand-set split (a rollout takes over the model's traffic)."""
        if self.overrides.load(name).get("traffic") is not None:
            self._applied_overrides[name] = self.overrides.update(name, traffic=None)["revision"]

    def sync_overrides(self) -> None:
        """Apply labels and splits another replica (or this one before a restart) recorded."""
        for name in self.overrides.models():
            doc = self.overrides.load(name)
            if not doc or self._applied_overrides.get(name) == doc["revision"]:
                continue
            try:
                served_model = self.manager.get(name)
                if doc.get("labels") is not None:
                    self._apply_labels(served_model, doc["labels"])
                if not self._rollout_owns_traffic(name):
                    self._apply_traffic(served_model, doc.get("traffic") or {"weights": None})
            except GatewayError as exc:
                log.warning("cannot apply the recorded labels/traffic of %s yet: %s", name, exc.message)
                continue
            self._applied_overrides[name] = doc["revision"]

    def _rollout_owns_traffic(self, name: str) -> bool:
        if self.traffic_guard is None:
            return False
        try:
            self.traffic_guard(name)
        except DeploymentConflict:
            return True
        return False

    def _apply_labels(self, served_model: ServedModel, labels: object) -> dict[str, str]:
        if not isinstance(labels, dict):
            raise InvalidInput('labels: must be an object of label -> version like {"stable": "2"}')
        parsed: dict[str, int] = {}
        for label, raw in labels.items():
            if not isinstance(label, str) or not MODEL_NAME_PATTERN.match(label):
                raise InvalidInput(f"labels: {str(label)[:64]!r} must match {MODEL_NAME_PATTERN.pattern}")
            number = parse_version(raw, f"labels.{label}")
            if number not in served_model.versions or not served_model.versions[number].ready:
                raise InvalidInput(f"labels.{label}: version {number} is not a ready version of {served_model.name!r}")
            parsed[label] = number
        if served_model.config is None:
            raise InvalidInput(f"model {served_model.name!r} is unavailable; fix its config first")
        served_model.config = served_model.config.model_copy(update={"labels": parsed})
        return {k: str(v) for k, v in parsed.items()}

    def _apply_traffic(self, served_model: ServedModel, doc: object) -> dict[str, Any] | None:
        if isinstance(doc, dict) and doc.get("weights", ...) is None:
            served_model.traffic = None
        else:
            versions = served_model.versions
            served_model.traffic = parse_split(doc, lambda v: v in versions and versions[v].ready)
        self._report_weights(served_model)
        return served_model.traffic.to_dict() if served_model.traffic else None

    # -- views ----------------------------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """Every model with its versions (state, reason), labels, default and traffic split."""
        rows = []
        for name in self.manager.names():
            model = self.manager.get(name)
            row: dict[str, Any] = {
                "name": name,
                "state": "UNAVAILABLE" if model.error else _model_state(model),
                "versions": [_version_row(v) for v in sorted(model.versions.values(), key=lambda s: s.version)],
                "labels": {k: str(v) for k, v in (model.config.labels if model.config else {}).items()},
                "traffic": model.traffic.to_dict() if model.traffic else None,
                "weights": _weights(model),
            }
            if model.error:
                row["reason"] = model.error
            rows.append(row)
        return rows

    # -- helpers --------------------------------------------------------------------------------

    def _served_or_none(self, name: str) -> ServedModel | None:
        try:
            return self.manager.get(name)
        except ModelNotFound:
            return None

    def _failed(self, name: str, version: int | None, action: str, reason: str, started: float,
                serving: str = "") -> DeploymentFailed:  # fmt: skip
        self.history.record(name, version, action, "failed", reason,
                            duration_seconds=round(time.perf_counter() - started, 4))  # fmt: skip
        if action == "load":
            self.events.deployment(name, "failed")
        what = f"version {version} of model {name!r}" if version is not None else f"model {name!r}"
        tail = f"; {serving} keeps serving" if serving else ""
        log.warning("deployment of %s failed: %s", what, reason)
        return DeploymentFailed(f"{what} was not deployed: {reason}{tail}")

    def _succeeded(self, name: str, version: int, action: str, started: float,
                   report: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
        duration = round(time.perf_counter() - started, 4)
        self.history.record(name, version, action, "succeeded", duration_seconds=duration, **report)
        if action == "load":
            self.events.deployment(name, "succeeded")
        self._models_changed()
        self._report_weights(self.manager.get(name))
        log.info("model %s version %d deployed in %.3f s", name, version, duration)
        return {"model": name, "version": str(version), "state": "READY", "duration_seconds": duration, **report}

    def _models_changed(self) -> None:
        self.events.models_changed(self.manager.names(), self.manager.versions())

    def _report_weights(self, model: ServedModel) -> None:
        self.events.traffic_weights(model.name, _weights(model))

    def report_weights(self, model: ServedModel) -> None:
        """Export the share each version of ``model`` gets now."""
        self._report_weights(model)

    @staticmethod
    def serving_version(model: ServedModel) -> int | None:
        """The version getting the largest share of unpinned requests now (None: none serves)."""
        weights = _weights(model)
        best = max(weights.items(), key=lambda item: (item[1], int(item[0])), default=None)
        return int(best[0]) if best is not None and best[1] > 0 else None

    @staticmethod
    def pin_default(model: ServedModel, version: int) -> None:
        """Make ``version`` the model's default (after a rollout: the promoted or the restored one)."""
        if model.config is not None and version in model.versions:
            model.config = model.config.model_copy(update={"default_version": version})


def _weights(model: ServedModel) -> dict[str, float]:
    """The share of unpinned requests each version gets now (percent)."""
    ready = {v for v, s in model.versions.items() if s.ready}
    if model.traffic is not None:
        live = {v: w for v, w in model.traffic.weights.items() if v in ready and w > 0}
        total = sum(live.values())
        if total > 0:
            return {str(v): (100.0 * live.get(v, 0.0) / total) for v in sorted(model.versions)}
    try:
        default = model.default_version().version if ready else None
    except GatewayError:
        default = None
    return {str(v): (100.0 if v == default else 0.0) for v in sorted(model.versions)}


def _version_row(served: ServedVersion) -> dict[str, str]:
    return {"version": str(served.version), "state": served.state.value, "reason": served.reason}


def _model_state(model: ServedModel) -> str:
    states = {v.state for v in model.versions.values()}
    if VersionState.READY in states:
        return "READY"
    if VersionState.LOADING in states:
        return "LOADING"
    return "UNLOADED" if states == {VersionState.UNLOADED} else "UNAVAILABLE"


def _serving(model: ServedModel | None) -> str:
    if model is None:
        return ""
    ready = sorted(v.version for v in model.versions.values() if v.ready)
    return f"version {', '.join(map(str, ready))}" if ready else ""
