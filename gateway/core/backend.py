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
from typing import ClassVar, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError

from gateway.core.config import ModelConfig, format_validation_error
from gateway.core.errors import ConfigError
from gateway.core.events import NO_EVENTS, BackendEvents
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


class Backend(abc.ABC):
    """Serves one model version.

    Lifecycle: ``await load()`` once (off the request path), then any number of
    concurrent ``await infer(...)``, then ``await unload()``.
    """

    #: Registry name; matches ``backend:`` in config.yaml.
    name: ClassVar[str] = ""
    #: The platform string reported in model metadata (Triton's names where one exists).
    platform: ClassVar[str] = ""
    #: The pydantic model of ``parameters:`` for this backend (validated once, in ``__init__``).
    Parameters: ClassVar[type[BaseModel] | None] = None

    def __init__(self, source: ModelVersionSource) -> None:
        self.source = source
        if self.Parameters is not None:
            self.params = parse_parameters(self.Parameters, source)
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


P = TypeVar("P", bound=BaseModel)


def parse_parameters(model: type[P], source: ModelVersionSource) -> P:
    """``parameters:`` of one version validated against ``model``; a ConfigError names the file and field."""
    try:
        return model.model_validate(source.config.parameters)
    except ValidationError as exc:
        config = source.version_dir.parent / "config.yaml"
        raise ConfigError(f"{config}: parameters: {format_validation_error(exc)}") from None


BackendFactory = Callable[[ModelVersionSource], Backend]


class BackendRegistry:
    """Maps ``backend:`` names to factories. Explicit: nothing registers itself on import."""

    def __init__(self) -> None:
        self._factories: dict[str, BackendFactory] = {}
        self._platforms: dict[str, str] = {}

    def register(self, backend: type[Backend], factory: BackendFactory | None = None) -> None:
        """Register ``backend`` under its name (``factory`` defaults to the class itself)."""
        if backend.name in self._factories:
            raise ValueError(f"backend {backend.name!r} is already registered")
        self._factories[backend.name] = factory or backend
        self._platforms[backend.name] = backend.platform or backend.name

    def platform(self, name: str) -> str:
        """The platform string of a registered backend (the name itself for an unknown one)."""
        return self._platforms.get(name, name)

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
