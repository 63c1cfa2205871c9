"""ONNX Runtime, in-process: sessions run on a small per-model thread pool, off the event loop.

ONNX Runtime releases the GIL inside ``run``, so the pool's threads execute in parallel
while the event loop keeps decoding the next requests. ``parameters: {inline: true}``
runs the session on the event loop instead (see :mod:`gateway.backends.inline`): for
models whose call takes microseconds, where the hop to a thread costs more than the model.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gateway.backends.inline import INLINE_DESCRIPTION, run_blocking
from gateway.core.backend import Backend, ModelVersionSource
from gateway.core.errors import BackendError, ConfigError, InvalidInput, first_line
from gateway.core.signature import merge_signature
from gateway.core.types import Signature, TensorSpec

ARTIFACT = "model.onnx"
log = logging.getLogger(__name__)

_ORT_TO_V2 = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


class OnnxParameters(BaseModel):
    """``parameters:`` accepted in config.yaml for ``backend: onnxruntime``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    intra_op_threads: Annotated[int, Field(ge=0, description="Threads inside one operator; 0 = ORT default.")] = 1
    inter_op_threads: Annotated[int, Field(ge=0, description="Threads across operators; 0 = ORT default.")] = 1
    concurrency: Annotated[int, Field(ge=1, description="Session runs in parallel (thread pool size).")] = 2
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    inline: Annotated[bool, Field(description=INLINE_DESCRIPTION)] = False


class OnnxRuntimeBackend(Backend):
    """Serves ``<version>/model.onnx`` (or ``artifact:``) with onnxruntime's CPU provider."""

    name = "onnxruntime"
    platform = "onnxruntime_onnx"
    Parameters = OnnxParameters
    params: OnnxParameters

    def __init__(self, source: ModelVersionSource) -> None:
        super().__init__(source)
        self._session: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._bytes_inputs: frozenset[str] = frozenset()

    async def load_impl(self) -> Signature:
        path = self.source.artifact_path(ARTIFACT)
        if not path.is_file():
            raise ConfigError(f"{path}: artifact not found")
        self._session = await asyncio.to_thread(self._create_session, str(path))
        discovered = Signature(
            inputs=[_spec(i) for i in self._session.get_inputs()],
            outputs=[_spec(o) for o in self._session.get_outputs()],
        )
        signature = merge_signature(self.source.name, self.source.config, discovered)
        self._bytes_inputs = frozenset(t.name for t in signature.inputs if t.datatype == "BYTES")
        if not self.params.inline:
            self._executor = ThreadPoolExecutor(
                max_workers=self.params.concurrency, thread_name_prefix=f"ort-{self.source.name}"
            )
        return signature

    async def infer_impl(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        feed = {k: (_to_str(k, v) if k in self._bytes_inputs else v) for k, v in inputs.items()}
        try:
            results = await run_blocking(self._executor, self._session.run, list(outputs), feed)
        except Exception as exc:  # onnxruntime raises its own exception types for runtime failures
            log.warning("onnxruntime failed on %s v%d: %s", self.source.name, self.source.version, first_line(exc))
            raise BackendError(
                f"model {self.source.name!r} version {self.source.version}: ONNX Runtime failed while running "
                "the model (the gateway log has its message)"
            ) from None
        return {name: _from_ort(value) for name, value in zip(outputs, results, strict=True)}

    async def unload_impl(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._session = None

    def _create_session(self, path: str) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.params.intra_op_threads
        options.inter_op_num_threads = self.params.inter_op_threads
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.params.graph_optimization]
        try:
            return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # a corrupt or unsupported model: report it as a load failure
            log.warning("onnxruntime cannot load %s: %s", path, first_line(exc))
            raise ConfigError(
                f"{path}: ONNX Runtime cannot load it (not a valid ONNX model, or an unsupported operator or "
                "opset; the gateway log has its message)"
            ) from None


def _spec(node: Any) -> TensorSpec:
    datatype = _ORT_TO_V2.get(node.type)
    if datatype is None:
        raise ConfigError(f"tensor {node.name!r} has ONNX type {node.type}, which has no V2 datatype")
    shape = tuple(d if isinstance(d, int) and d > 0 else -1 for d in node.shape)
    return TensorSpec(node.name, datatype, shape)


def _to_str(name: str, array: np.ndarray) -> np.ndarray:
    """ORT string tensors want UTF-8 text; V2 BYTES elements are arbitrary bytes."""
    out = np.empty(array.shape, dtype=object)
    try:
        out.reshape(-1)[:] = [b.decode("utf-8") for b in array.reshape(-1)]
    except UnicodeDecodeError:
        raise InvalidInput(
            f"input {name!r}: BYTES elements must be UTF-8 text for ONNX Runtime string inputs"
        ) from None
    return out


def _from_ort(value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype == object:
        out = np.empty(array.shape, dtype=object)
        out.reshape(-1)[:] = [s.encode("utf-8") if isinstance(s, str) else s for s in array.ravel()]
        return out
    return array
