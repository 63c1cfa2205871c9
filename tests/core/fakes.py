"""A fake backend and an event recorder: core tests need no ONNX Runtime or other runtime.

``FakeBackend`` takes its signature from config.yaml and answers output *i* with input *i*
(cast to the output's datatype), so any datatype round-trips through the data plane.
``parameters: {fail_load: "why"}`` makes loading fail, ``{fail_infer: true}`` every call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from gateway.core.backend import Backend, BackendRegistry
from gateway.core.codec.datatypes import numpy_dtype
from gateway.core.errors import BackendError, ConfigError
from gateway.core.signature import declared_signature
from gateway.core.types import Signature

ALL_TYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
             "FP64", "BYTES")  # fmt: skip


class FakeParameters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fail_load: str | None = None
    fail_infer: bool = False


class FakeBackend(Backend):
    name = "fake"
    platform = "fake_platform"
    Parameters = FakeParameters
    params: FakeParameters

    async def load_impl(self) -> Signature:
        if self.params.fail_load:
            raise ConfigError(self.params.fail_load)
        return declared_signature(self.source.name, self.source.config)

    async def infer_impl(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        if self.params.fail_infer:
            raise BackendError("the fake backend was told to fail")
        by_position = {spec.name: spec for spec in self.signature.outputs}
        names = [spec.name for spec in self.signature.inputs]
        result = {}
        for index, spec in enumerate(self.signature.outputs):
            if spec.name in outputs:
                value = inputs[names[index]]
                result[spec.name] = value if spec.datatype == "BYTES" else value.astype(numpy_dtype(spec.datatype))
        assert set(result) <= set(by_position)
        return result


def fake_registry() -> BackendRegistry:
    registry = BackendRegistry()
    registry.register(FakeBackend)
    return registry


def write_fake_model(repo: Path, name: str, config: str, versions: Sequence[int] = (1,)) -> Path:
    """``<repo>/<name>/config.yaml`` plus empty version folders (the fake backend needs no artifact)."""
    model = repo / name
    for version in versions:
        (model / str(version)).mkdir(parents=True, exist_ok=True)
    (model / "config.yaml").write_text(config, encoding="utf-8")
    return model


def echo_config(datatype: str = "FP32", shape: str = "[-1, 3]", extra: str = "") -> str:
    return (
        f"backend: fake\nmax_batch_size: 8\ninputs: [{{name: x, datatype: {datatype}, shape: {shape}}}]\n"
        f"outputs: [{{name: y, datatype: {datatype}, shape: {shape}}}]\n{extra}"
    )


def types_config() -> str:
    inputs = ", ".join(f"{{name: in_{t}, datatype: {t}, shape: [-1, -1]}}" for t in ALL_TYPES)
    outputs = ", ".join(f"{{name: out_{t}, datatype: {t}, shape: [-1, -1]}}" for t in ALL_TYPES)
    return f"backend: fake\ninputs: [{inputs}]\noutputs: [{outputs}]\n"


class RecordingEvents:
    """A :class:`gateway.core.events.CoreEvents` that remembers every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.depths: dict[tuple[str, int], Callable[[], int]] = {}

    def named(self, event: str) -> list[tuple[object, ...]]:
        return [call[1:] for call in self.calls if call[0] == event]

    def retry(self, backend: str, endpoint: str) -> None:
        self.calls.append(("retry", backend, endpoint))

    def breaker_state(self, backend: str, endpoint: str, is_open: bool) -> None:
        self.calls.append(("breaker_state", backend, endpoint, is_open))

    def served_versions(self, versions: Mapping[str, Sequence[str]]) -> None:
        self.calls.append(("served_versions", {k: list(v) for k, v in versions.items()}))

    def version_state(self, model: str, version: int, backend: str, state: str, up: bool) -> None:
        self.calls.append(("version_state", model, version, backend, state, up))

    def queue_depth(self, model: str, version: int, depth: Callable[[], int]) -> None:
        self.depths[(model, version)] = depth

    def backend_call(self, model: str, version: int, backend: str, seconds: float) -> None:
        self.calls.append(("backend_call", model, version, backend))

    def rejected(self, model: str, reason: str) -> None:
        self.calls.append(("rejected", model, reason))

    def batch(self, model: str, version: int, rows: int, queue_seconds: Sequence[float]) -> None:
        self.calls.append(("batch", model, version, rows, len(queue_seconds)))
