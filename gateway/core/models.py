"""The model manager: loads what the repository describes and resolves requests to versions.

Loading happens at start-up (and on reload), never on the request path. Each served
version has a state; a version that fails to load is UNAVAILABLE with the reason, and the
rest of the repository is served regardless.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass, field
from typing import Any

from gateway.core.backend import Backend, BackendRegistry
from gateway.core.batching import DynamicBatcher, InferFn
from gateway.core.config import MODEL_NAME_PATTERN, VERSION_PATTERN, ModelConfig
from gateway.core.errors import ConfigError, GatewayError, InvalidInput, ModelNotFound, ModelNotReady
from gateway.core.events import NO_EVENTS, CoreEvents
from gateway.core.repository import ModelEntry, ModelRepository, VersionEntry
from gateway.core.scheduler import ModelGate
from gateway.core.tracing import NO_TRACER, Tracer
from gateway.core.traffic import TrafficSplit

log = logging.getLogger(__name__)


class VersionState(enum.Enum):
    LOADING = "LOADING"
    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"
    UNLOADED = "UNLOADED"


@dataclass(slots=True)
class ServedVersion:
    """One version the gateway knows about, whatever its state."""

    model: str
    version: int
    config: ModelConfig | None
    backend: Backend | None = None
    state: VersionState = VersionState.LOADING
    reason: str = ""
    gate: ModelGate | None = None
    #: Loaded, but the last health check failed (READY again when it passes).
    unhealthy: bool = False
    #: What the data plane calls: the backend, or a dynamic batcher in front of it.
    call: InferFn | None = None

    @property
    def ready(self) -> bool:
        return self.state is VersionState.READY


@dataclass(slots=True)
class ServedModel:
    """A model directory: its config (if valid) and versions by number."""

    name: str
    config: ModelConfig | None
    versions: dict[int, ServedVersion] = field(default_factory=dict)
    error: str | None = None
    #: Weighted split (and shadow) for requests naming no version; None: the default version.
    traffic: TrafficSplit | None = None

    def default_version(self) -> ServedVersion:
        """The configured default (while it is READY), else the highest READY version."""
        if self.error is not None:
            raise ModelNotReady(f"model {self.name!r} is unavailable: {self.error}")
        configured = self.config.default_version if self.config is not None else None
        if configured is not None and configured in self.versions:
            chosen = self.versions[configured]
            if chosen.ready or not any(v.ready for v in self.versions.values()):
                return chosen
        ready = [v for v in self.versions.values() if v.ready]
        if ready:
            return max(ready, key=lambda v: v.version)
        return max(self.versions.values(), key=lambda v: v.version)


#: Longest model name or label echoed back in an error message.
_ECHO_LIMIT = 64


def clip(text: str) -> str:
    """A client-supplied name as it may appear in an error message: truncated."""
    return text if len(text) <= _ECHO_LIMIT else text[:_ECHO_LIMIT] + "..."


def echo(text: str) -> str:
    """A client-supplied name quoted (repr) and truncated, for the gateway's own messages."""
    return repr(clip(text))


def _caller(
    backend: Backend, config: ModelConfig, events: CoreEvents, model: str, version: int, tracer: Tracer
) -> InferFn:
    batching = config.dynamic_batching
    if batching is None:
        return backend.infer
    batcher = DynamicBatcher(
        backend.infer,
        config.max_batch_size,
        batching.concurrency,
        batching.max_delay_ms / 1000,
        batching.preferred_batch_sizes,
        lambda rows, waits: events.batch(model, version, rows, waits),
        tracer,
        config.backend or "",
    )
    return batcher.infer


class ModelManager:
    """Owns every backend instance; the data plane asks it which version serves a request."""

    def __init__(
        self,
        repository: ModelRepository,
        registry: BackendRegistry,
        events: CoreEvents = NO_EVENTS,
        tracer: Tracer = NO_TRACER,
    ) -> None:
        self.repository = repository
        self.registry = registry
        self._events = events
        #: Where request spans go (the data plane and the batchers report into it).
        self.tracer = tracer
        self._models: dict[str, ServedModel] = {}
        self.loaded = False

    async def plan_all(self) -> None:
        """Scan and validate the repository and create backends, without loading artifacts."""
        self._models = {entry.name: self._plan(entry) for entry in self.repository.scan()}

    async def load_all(self) -> None:
        """Scan the repository and load every selected version (concurrently)."""
        await self.plan_all()
        pending = [v for m in self._models.values() for v in m.versions.values() if v.state is VersionState.LOADING]
        await asyncio.gather(*(self._load(v) for v in pending))
        self._events.served_versions(self.versions())
        self.loaded = True

    async def unload_all(self) -> None:
        versions = [v for m in self._models.values() for v in m.versions.values()]
        await asyncio.gather(*(self._unload(v) for v in versions))

    def names(self) -> list[str]:
        return sorted(self._models)

    def versions(self) -> dict[str, list[str]]:
        """Served version numbers (as strings) per model: the bounded set of metric label values."""
        return {name: [str(v) for v in model.versions] for name, model in self._models.items()}

    def get(self, name: str) -> ServedModel:
        try:
            return self._models[name]
        except KeyError:
            if not name:
                raise InvalidInput("a model name is required") from None
            if not MODEL_NAME_PATTERN.fullmatch(name):
                raise InvalidInput(
                    f"model name {echo(name)} is not valid (names match {MODEL_NAME_PATTERN.pattern})"
                ) from None
            raise ModelNotFound(f"unknown model {echo(name)}") from None

    def resolve(
        self, name: str, version: str | None = None, label: str | None = None, key: str | None = None
    ) -> ServedVersion:
        """The version a request names: a version number, a label, or neither (the traffic split, else the
        default; ``key``, a caller's route key, makes the split sticky: one key, one version).

        Versions are 1 to 18 ASCII digits without a leading zero; anything else is a 400, an
        unknown model, version or label a 404.
        """
        model = self.get(name)
        if label:
            return self._by_label(model, label)
        if not version:
            return self.route(model, key)
        if not VERSION_PATTERN.fullmatch(version):
            raise InvalidInput(
                f"version {echo(version)} of model {name!r} is not valid (1 to 18 ASCII digits without a leading zero)"
            )
        served = model.versions.get(int(version))
        if served is None:
            raise ModelNotFound(f"model {name!r} has no served version {version} (served: {sorted(model.versions)})")
        return served

    @staticmethod
    def route(model: ServedModel, key: str | None = None) -> ServedVersion:
        """The version serving a request that names none: the split's pick, else the default."""
        if model.traffic is not None and model.error is None:
            versions = model.versions
            chosen = model.traffic.pick(key, lambda v: v in versions and versions[v].ready)
            if chosen is not None:
                return versions[chosen]
        return model.default_version()

    # -- runtime changes (the lifecycle calls these; never on the request path) ----------

    def install_model(self, model: ServedModel) -> ServedModel | None:
        """Put ``model`` in service in one step; returns the one it replaces."""
        previous = self._models.get(model.name)
        self._models[model.name] = model
        return previous

    def install_version(self, served: ServedVersion) -> ServedVersion | None:
        """Add a prepared (loaded and warmed-up) version to its model; returns the one it replaces."""
        model = self.get(served.model)
        previous = model.versions.get(served.version)
        model.versions[served.version] = served
        return previous

    def plan_version(self, model: str, item: VersionEntry) -> ServedVersion:
        """A not-yet-loaded version for ``item`` (UNAVAILABLE with the reason if it cannot be)."""
        return self._plan_version(model, item)

    async def load_version(self, served: ServedVersion) -> None:
        """Load a planned version (state READY or UNAVAILABLE with the reason)."""
        if served.state is VersionState.LOADING:
            await self._load(served)

    async def drain(self, served: ServedVersion, timeout: float) -> None:
        """Stop new requests to ``served``, let those in flight finish (within ``timeout``), unload it."""
        was_loaded = served.backend is not None and (served.ready or served.unhealthy)
        self._set(served, VersionState.UNLOADED, "unloaded")
        gate = served.gate
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while gate is not None and gate.depth > 0 and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if was_loaded and served.backend is not None:
            try:
                await served.backend.unload()
            except (GatewayError, OSError, RuntimeError) as exc:
                log.warning("unloading %s version %d: %s", served.model, served.version, exc)

    def resolve_label(self, name: str, label: str) -> ServedVersion:
        return self._by_label(self.get(name), label)

    @staticmethod
    def _by_label(model: ServedModel, label: str) -> ServedVersion:
        labels = model.config.labels if model.config is not None else {}
        if label not in labels:
            if not MODEL_NAME_PATTERN.fullmatch(label):
                raise InvalidInput(f"label {echo(label)} is not valid (labels match {MODEL_NAME_PATTERN.pattern})")
            raise ModelNotFound(f"model {model.name!r} has no label {echo(label)} (labels: {sorted(labels)})")
        return model.versions[labels[label]]

    def index(self) -> list[dict[str, Any]]:
        """One row per model version (or per broken model), Triton's repository index shape."""
        rows: list[dict[str, Any]] = []
        for model in self._models.values():
            if model.error is not None:
                rows.append({"name": model.name, "state": "UNAVAILABLE", "reason": model.error})
                continue
            for served in model.versions.values():
                row = {"name": model.name, "version": str(served.version), "state": served.state.value}
                if served.reason:
                    row["reason"] = served.reason
                rows.append(row)
        return rows

    async def check_health(self) -> None:
        """Probe every loaded version's backend; flip READY <-> UNAVAILABLE on the result.

        Only versions that loaded are probed: a load failure stays UNAVAILABLE until reload.
        """
        loaded = [v for v in self.all_versions() if v.backend is not None and (v.ready or v.unhealthy)]
        results = await asyncio.gather(*(self._probe(v) for v in loaded))
        for served, healthy in zip(loaded, results, strict=True):
            if healthy and served.unhealthy:
                served.unhealthy = False
                self._set(served, VersionState.READY, "")
                log.info("model %s version %d is healthy again", served.model, served.version)
            elif not healthy and not served.unhealthy:
                served.unhealthy = True
                self._set(served, VersionState.UNAVAILABLE, "backend health check failed")
                log.warning("model %s version %d failed its health check", served.model, served.version)

    @staticmethod
    async def _probe(served: ServedVersion) -> bool:
        assert served.backend is not None
        try:
            return await served.backend.health_impl()
        except (GatewayError, OSError, RuntimeError) as exc:
            log.debug("health check of %s v%d raised %s", served.model, served.version, exc)
            return False

    def all_versions(self) -> list[ServedVersion]:
        return [v for m in self._models.values() for v in m.versions.values()]

    def _plan(self, entry: ModelEntry) -> ServedModel:
        model = ServedModel(entry.name, entry.config, error=entry.error)
        for item in entry.versions:
            model.versions[item.version] = self._plan_version(entry.name, item)
        return model

    def plan_model(self, entry: ModelEntry) -> ServedModel:
        """A not-yet-loaded model for a freshly scanned entry (the lifecycle loads and installs it)."""
        return self._plan(entry)

    def _plan_version(self, model: str, item: VersionEntry) -> ServedVersion:
        served = ServedVersion(model, item.version, item.source.config if item.source else None)
        if item.source is None:
            self._set(served, VersionState.UNAVAILABLE, item.error or "invalid version config")
        else:
            try:
                served.backend = self.registry.create(item.source)
                served.backend.events = self._events
            except ConfigError as exc:
                self._set(served, VersionState.UNAVAILABLE, self.repository.relative(str(exc)))
        return served

    async def _load(self, served: ServedVersion) -> None:
        assert served.backend is not None and served.config is not None
        try:
            await served.backend.load()
        except (ConfigError, GatewayError, OSError, RuntimeError, ValueError) as exc:
            log.warning("model %s version %d failed to load: %s", served.model, served.version, exc)
            self._set(served, VersionState.UNAVAILABLE, self.repository.relative(f"failed to load: {exc}"))
            return
        gate = ModelGate(served.model, served.config.max_queue_size, served.config.timeout_seconds)
        served.gate = gate
        served.call = _caller(served.backend, served.config, self._events, served.model, served.version, self.tracer)
        self._events.queue_depth(served.model, served.version, lambda: gate.depth)
        self._set(served, VersionState.READY, "")
        log.info("model %s version %d is ready (%s)", served.model, served.version, served.config.backend)

    async def _unload(self, served: ServedVersion) -> None:
        # Unhealthy versions are loaded too: they hold processes (a TorchServe, a worker) to stop.
        if served.backend is not None and (served.ready or served.unhealthy):
            try:
                await served.backend.unload()
            except (GatewayError, OSError, RuntimeError) as exc:
                log.warning("unloading %s version %d: %s", served.model, served.version, exc)
        self._set(served, VersionState.UNLOADED, "")

    def set_state(self, served: ServedVersion, state: VersionState, reason: str) -> None:
        """Record a state change made outside the manager (e.g. a failed warm-up) and report it."""
        self._set(served, state, reason)

    def _set(self, served: ServedVersion, state: VersionState, reason: str) -> None:
        served.state = state
        served.reason = reason
        backend = served.config.backend if served.config is not None else None
        if backend:
            self._events.version_state(served.model, served.version, backend, state.value, served.ready)
