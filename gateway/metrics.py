"""Prometheus metrics for the gateway, in a registry of their own (one per server instance).

Naming follows Prometheus practice: a ``modelgate_`` prefix, base units (seconds),
``_total`` on counters. Label values are bounded: a model label is only ever a model the
repository knows (anything else is ``_unknown``), so a flood of made-up model names
creates no new series.

The series every request updates (requests, request and backend duration, in flight, batch size,
queue time) are lock-free ones (:mod:`gateway.lean_series`), updated from the event loop's thread
only; the rest are prometheus_client's. With ``--workers``, the request-path series reach the shared
files when :meth:`Metrics.flush` runs (every :data:`FLUSH_SECONDS`, before each scrape, at shutdown).
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from gateway import __version__
from gateway.lean_series import CounterChild, GaugeChild, HistogramChild, LeanCounter, LeanGauge, LeanHistogram

UNKNOWN: Final = "_unknown"
#: ``--workers``: how often each worker adds its request-path series to the shared files. A scrape
#: shows the worker that answers it as of now and every other worker as of its last flush (at most
#: this much older, plus however late its event loop is); a worker killed with SIGKILL loses the
#: updates of at most this long (a SIGTERM flushes them).
FLUSH_SECONDS: Final = 0.5
#: Latency buckets from 0.25 ms to 30 s: the demo models answer in well under a millisecond.
LATENCY_BUCKETS: Final = (
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


@dataclass(slots=True)
class RequestLabels:
    """Metric labels of one request; the handler fills in the version once it has resolved the model."""

    model: str
    version: str = ""


#: Rows per batched backend call: powers of two up to 1024.
BATCH_BUCKETS: Final = tuple(float(2**i) for i in range(11))


def outcome_of(client_error: bool, server_error: bool) -> str:
    if server_error:
        return "server_error"
    return "client_error" if client_error else "success"


_STATES: Final = ("LOADING", "READY", "UNAVAILABLE", "UNLOADED")


class Metrics:
    """All series the gateway exports: protocols record requests into it, and it implements
    :class:`gateway.core.events.CoreEvents` for what the core and the backends report."""

    def __init__(self, multiprocess: bool = False) -> None:
        #: Several serving processes share the values (prometheus_client's multiprocess mode): gauges
        #: computed by a function are set from it by :meth:`refresh`, since only stored values are shared.
        self.multiprocess = multiprocess
        self._functions: dict[tuple[str, str], tuple[Any, Callable[[], int]]] = {}
        self.registry = CollectorRegistry()
        self._known: set[str] = set()
        self._versions: dict[str, set[str]] | None = None
        self._request_children: dict[tuple[str, ...], tuple[CounterChild, HistogramChild]] = {}
        self._backend_children: dict[tuple[str, int, str], HistogramChild] = {}
        self._batch_children: dict[tuple[str, int], tuple[HistogramChild, HistogramChild]] = {}
        r = self.registry
        # The request path's series (lock-free; see gateway.lean_series), in their usual registry order.
        self.request_duration = LeanHistogram(
            "modelgate_request_duration_seconds",
            "Time from receiving a request to having its response ready, by outcome.",
            ["model", "version", "protocol", "outcome"],
            r,
            buckets=LATENCY_BUCKETS,
        )
        self.requests = LeanCounter(
            "modelgate_requests",
            "Requests answered, by protocol status (HTTP code for REST, gRPC code name for gRPC).",
            ["model", "version", "protocol", "status"],
            r,
        )
        self.inflight = LeanGauge(
            "modelgate_inflight_requests", "Requests being handled now.", ["protocol"], r, multiprocess_mode="livesum"
        )
        self.backend_duration = LeanHistogram(
            "modelgate_backend_inference_duration_seconds",
            "Time spent inside the backend call (excludes decoding and encoding).",
            ["model", "version", "backend"],
            r,
            buckets=LATENCY_BUCKETS,
        )
        self.model_state = Gauge(
            "modelgate_model_state", "1 for the current state of each model version.", ["model", "version", "state"],
            registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        self.rejections = Counter(
            "modelgate_rejected_requests", "Requests refused before reaching a backend, by reason.",
            ["model", "reason"], registry=r,
        )  # fmt: skip
        self.queue_depth_gauge = Gauge(
            "modelgate_queue_depth",
            "Requests admitted and not yet answered, per model version.",
            ["model", "version"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.retries = Counter(
            "modelgate_backend_retries", "Backend calls tried again after a failure that is safe to retry.",
            ["backend", "endpoint"], registry=r,
        )  # fmt: skip
        self.circuit_open = Gauge(
            "modelgate_backend_circuit_open", "1 while the circuit breaker of a backend endpoint is open.",
            ["backend", "endpoint"], registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        self.backend_up = Gauge(
            "modelgate_backend_up", "1 while a model version's backend is loaded and passes its health checks.",
            ["model", "version", "backend"], registry=r, multiprocess_mode="livemin",
        )  # fmt: skip
        self.batch_size = LeanHistogram(
            "modelgate_batch_size",
            "Rows in each backend call made by the dynamic batcher.",
            ["model", "version"],
            r,
            buckets=BATCH_BUCKETS,
        )
        self.queue_time = LeanHistogram(
            "modelgate_queue_time_seconds",
            "Time a request waited in the dynamic batcher's queue before its batch was dispatched.",
            ["model", "version"],
            r,
            buckets=LATENCY_BUCKETS,
        )
        self._lean = (self.request_duration, self.requests, self.inflight, self.backend_duration, self.batch_size,
                      self.queue_time)  # fmt: skip
        self._add_deployment_series()
        build = Gauge(
            "modelgate_build_info", "Build information.", ["version", "python"], registry=r, multiprocess_mode="livemax"
        )
        build.labels(__version__, platform.python_version()).set(1)

    def _add_deployment_series(self) -> None:
        r = self.registry
        self._weighted: dict[str, set[str]] = {}  # model -> versions with a modelgate_traffic_weight series
        self.deployments = Counter(
            "modelgate_deployments", "Deployments (loads, rollouts) by outcome.", ["model", "outcome"], registry=r
        )
        self.rollbacks = Counter("modelgate_rollbacks", "Rollouts rolled back, by reason.", ["model", "reason"],
                                 registry=r)  # fmt: skip
        self.traffic_weight = Gauge(
            "modelgate_traffic_weight", "Share (percent) of unpinned requests each version gets.",
            ["model", "version"], registry=r, multiprocess_mode="livemostrecent",
        )  # fmt: skip
        self.rollout_step_gauge = Gauge(
            "modelgate_rollout_step",
            "Current step of a running rollout (0: none).",
            ["model"],
            registry=r,
            multiprocess_mode="livemax",
        )

    # -- gateway.core.deploy_events.DeploymentEvents ------------------------------------------

    def deployment(self, model: str, outcome: str) -> None:
        self.deployments.labels(model, outcome).inc()

    def rollback(self, model: str, reason: str) -> None:
        self.rollbacks.labels(model, reason).inc()

    def traffic_weights(self, model: str, weights: Mapping[str, float]) -> None:
        """Export ``weights`` as the model's whole split: versions no longer in it lose their series."""
        for gone in self._weighted.get(model, set()) - weights.keys():
            self.traffic_weight.remove(model, gone)
        for version, weight in weights.items():
            self.traffic_weight.labels(model, version).set(weight)
        self._weighted[model] = set(weights)

    def rollout_step(self, model: str, step: int) -> None:
        self.rollout_step_gauge.labels(model).set(step)

    def models_changed(self, names: Sequence[str], versions: Mapping[str, Sequence[str]]) -> None:
        self.set_known_models(names, versions)
        for model in set(self._weighted) - set(names):  # a model no longer served has no split
            self.traffic_weights(model, {})
            del self._weighted[model]

    def set_known_models(self, names: Iterable[str], versions: Mapping[str, Iterable[str]] | None = None) -> None:
        """Which model names (and, if given, which versions of each) may appear as label values."""
        self._known = set(names)
        self._versions = {m: set(v) for m, v in versions.items()} if versions is not None else None
        self._request_children.clear()

    # -- CoreEvents ----------------------------------------------------------------------

    def served_versions(self, versions: Mapping[str, Sequence[str]]) -> None:
        self.set_known_models(versions, versions)

    def retry(self, backend: str, endpoint: str) -> None:
        self.retries.labels(backend, endpoint).inc()

    def breaker_state(self, backend: str, endpoint: str, is_open: bool) -> None:
        self.circuit_open.labels(backend, endpoint).set(1 if is_open else 0)

    def version_state(self, model: str, version: int, backend: str, state: str, up: bool) -> None:
        for candidate in _STATES:
            self.model_state.labels(model, str(version), candidate).set(1 if candidate == state else 0)
        self.backend_up.labels(model, str(version), backend).set(1 if up else 0)

    def queue_depth(self, model: str, version: int, depth: Callable[[], int]) -> None:
        child = self.queue_depth_gauge.labels(model, str(version))
        if self.multiprocess:
            self._functions[(model, str(version))] = (child, depth)
            child.set(depth())
        else:
            child.set_function(depth)

    def refresh(self) -> None:
        """Multiprocess mode: store the current value of every function-computed gauge."""
        for child, depth in list(self._functions.values()):
            child.set(depth())

    def flush(self) -> None:
        """Multiprocess mode: store function-computed gauges, and add the request-path series' changes
        since the last flush to this process's shared values (from the event loop's thread only)."""
        if not self.multiprocess:
            return
        self.refresh()
        for family in self._lean:
            family.flush()

    def backend_call(self, model: str, version: int, backend: str, seconds: float) -> None:
        key = (model, version, backend)
        child = self._backend_children.get(key)
        if child is None:
            child = self._backend_children[key] = self.backend_duration.labels(model, str(version), backend)
        child.observe(seconds)

    def rejected(self, model: str, reason: str) -> None:
        self.rejections.labels(model, reason).inc()

    def batch(self, model: str, version: int, rows: int, queue_seconds: Sequence[float]) -> None:
        key = (model, version)
        children = self._batch_children.get(key)
        if children is None:
            label = str(version)
            children = self._batch_children[key] = (
                self.batch_size.labels(model, label), self.queue_time.labels(model, label)
            )  # fmt: skip
        children[0].observe(rows)
        waited = children[1]
        for seconds in queue_seconds:
            waited.observe(seconds)

    # -- requests (recorded by the protocols) --------------------------------------------

    def inflight_for(self, protocol: str) -> GaugeChild:
        """The in-flight gauge of one protocol (``inc()`` when a request starts, ``dec()`` when it ends)."""
        return self.inflight.labels(protocol)

    def model_label(self, name: str) -> str:
        return name if name in self._known else UNKNOWN

    def observe_request(
        self, model: str, version: str, protocol: str, status: str, outcome: str, seconds: float
    ) -> None:
        """Count and time one answered request (label children are cached: this is the hot path)."""
        key = (model, version, protocol, status, outcome)
        children = self._request_children.get(key)
        if children is None:
            label = self.model_label(model)
            if label == UNKNOWN or (self._versions is not None and version not in self._versions.get(model, ())):
                version = ""
            children = (
                self.requests.labels(label, version, protocol, status),
                self.request_duration.labels(label, version, protocol, outcome),
            )
            if label != UNKNOWN:  # unknown names are not cached either: the cache stays bounded
                self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)


class _FlushFirst(Collector):
    """Flushes this worker's request-path series when a scrape starts (it adds no series itself)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        self._metrics.flush()
        return []


def exposition_registry(metrics: Metrics, multiprocess_dir: Path | None) -> CollectorRegistry:
    """What the metrics port serves: this process's registry, or every worker's values summed
    (prometheus_client's multiprocess collector over ``multiprocess_dir``; the worker answering the
    scrape flushes its own values first, the others' are at most :data:`FLUSH_SECONDS` old)."""
    if multiprocess_dir is None:
        return metrics.registry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    registry.register(_FlushFirst(metrics))
    MultiProcessCollector(registry, str(multiprocess_dir))  # type: ignore[no-untyped-call]
    return registry
