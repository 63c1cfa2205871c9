"""The one interface every backend implements, and the explicit backend registry.

A backend instance serves one version of one model. The data plane calls only the
public methods; subclasses implement the ``*_impl`` hooks. Heavy frameworks must be
imported inside the backend module's functions, never at import time, so that the
gateway process stays lean unless a configured model needs them.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from gateway.core.config import ModelConfig
from gateway.core.errors import ConfigError
from gateway.core.types import Signature


@dataclass(frozen=True, slots=True)
class ModelVersionSource:
    """Everything a backend needs to load one model version."""

    name: str
    version: int
    config: ModelConfig
    #: ``<repository>/<model>/<version>``; the artifact lives inside it.
    version_dir: Path

    def artifact_path(self, default: str) -> Path:
        """The artifact: ``config.artifact`` if set, else the backend's default name."""
        return self.version_dir / (self.config.artifact or default)


class BackendEvents(Protocol):
    """What remote backends report about their calls (the gateway's metrics implement it)."""

    def retry(self, backend: str, endpoint: str) -> None:
        """A failed call to ``endpoint`` is being tried again."""

    def breaker_state(self, backend: str, endpoint: str, is_open: bool) -> None:
        """The circuit breaker for ``endpoint`` opened (``True``) or closed again."""


class _NoEvents:
    def retry(self, backend: str, endpoint: str) -> None:
        return None

    def breaker_state(self, backend: str, endpoint: str, is_open: bool) -> None:
        return None


NO_EVENTS: BackendEvents = _NoEvents()


class Backend(abc.ABC):
    """Serves one model version.

    Lifecycle: ``await load()`` once (off the request path), then any number of
    concurrent ``await infer(...)``, then ``await unload()``.
    """

    #: Registry name; matches ``backend:`` in config.yaml.
    name: str = ""

    def __init__(self, source: ModelVersionSource) -> None:
        self.source = source
        self._signature: Signature | None = None
        #: Where retries and breaker changes are reported; the model manager sets it.
        self.events: BackendEvents = NO_EVENTS

    @property
    def signature(self) -> Signature:
        """Inputs and outputs, known once loaded."""
        if self._signature is None:
            raise RuntimeError(f"{self.source.name} v{self.source.version} is not loaded")
        return self._signature

    async def load(self) -> None:
        """Load the artifact and resolve the signature (config merged with the artifact)."""
        self._signature = await self.load_impl()

    async def unload(self) -> None:
        """Release resources; the instance is not used afterwards."""
        await self.unload_impl()
        self._signature = None

    async def infer(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Run the model on validated inputs and return the requested outputs by name.

        The data plane has already checked names, datatypes and shapes against
        :attr:`signature`; backends raise :class:`gateway.core.errors.GatewayError`
        subclasses for their own failures.
        """
        return await self.infer_impl(inputs, outputs)

    async def health(self) -> bool:
        """Whether this version can serve right now (remote backends probe their server)."""
        return self._signature is not None and await self.health_impl()

    @abc.abstractmethod
    async def load_impl(self) -> Signature: ...

    @abc.abstractmethod
    async def infer_impl(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]: ...

    async def unload_impl(self) -> None:
        return None

    async def health_impl(self) -> bool:
        return True


BackendFactory = Callable[[ModelVersionSource], Backend]


class BackendRegistry:
    """Maps ``backend:`` names to factories. Explicit: nothing registers itself on import."""

    def __init__(self) -> None:
        self._factories: dict[str, BackendFactory] = {}

    def register(self, name: str, factory: BackendFactory) -> None:
        if name in self._factories:
            raise ValueError(f"backend {name!r} is already registered")
        self._factories[name] = factory

    def create(self, source: ModelVersionSource) -> Backend:
        name = source.config.backend or ""
        try:
            factory = self._factories[name]
        except KeyError:
            raise ConfigError(
                f"backend {name!r} is not available in this gateway (available: {', '.join(sorted(self._factories))})"
            ) from None
        return factory(source)

    def names(self) -> list[str]:
        return sorted(self._factories)
