"""What the core reports about itself: an interface the metrics module implements.

The core never imports a metrics library. The model manager, the data plane and the
backends call these methods; :class:`gateway.metrics.Metrics` turns them into Prometheus
series, and :data:`NO_EVENTS` ignores them (tests, ``modelgate models``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol


class BackendEvents(Protocol):
    """What remote backends report about their calls."""

    def retry(self, backend: str, endpoint: str) -> None:
        """A failed call to ``endpoint`` is being tried again."""

    def breaker_state(self, backend: str, endpoint: str, is_open: bool) -> None:
        """The circuit breaker for ``endpoint`` opened (``True``) or closed again."""


class CoreEvents(BackendEvents, Protocol):
    """Everything the core reports: backend events plus model and inference events."""

    def served_versions(self, versions: Mapping[str, Sequence[str]]) -> None:
        """The models and versions the repository serves now (the bounded set of label values)."""

    def version_state(self, model: str, version: int, backend: str, state: str, up: bool) -> None:
        """A version changed state (LOADING, READY, UNAVAILABLE, UNLOADED); ``up`` = loaded and healthy."""

    def queue_depth(self, model: str, version: int, depth: Callable[[], int]) -> None:
        """A version's admission gate exists; ``depth()`` reads its requests in flight."""

    def backend_call(self, model: str, version: int, backend: str, seconds: float) -> None:
        """A backend call (or a batch it joined) took ``seconds``."""

    def rejected(self, model: str, reason: str) -> None:
        """A request was refused before reaching a backend (``resource_exhausted``, ``deadline_exceeded``)."""

    def batch(self, model: str, version: int, rows: int, queue_seconds: Sequence[float]) -> None:
        """The dynamic batcher dispatched ``rows`` rows; each request had waited ``queue_seconds``."""


class _NoEvents:
    def retry(self, backend: str, endpoint: str) -> None:
        return None

    def breaker_state(self, backend: str, endpoint: str, is_open: bool) -> None:
        return None

    def served_versions(self, versions: Mapping[str, Sequence[str]]) -> None:
        return None

    def version_state(self, model: str, version: int, backend: str, state: str, up: bool) -> None:
        return None

    def queue_depth(self, model: str, version: int, depth: Callable[[], int]) -> None:
        return None

    def backend_call(self, model: str, version: int, backend: str, seconds: float) -> None:
        return None

    def rejected(self, model: str, reason: str) -> None:
        return None

    def batch(self, model: str, version: int, rows: int, queue_seconds: Sequence[float]) -> None:
        return None


NO_EVENTS: CoreEvents = _NoEvents()
