"""TFLite models (``backend: tflite``) with ai-edge-litert, in the gateway process.

Why in-process and not in a worker: ``ai_edge_litert`` imports no TensorFlow (34 MB and
0.1 s to import), a batch-1 invoke takes ~10 µs, and a frame round trip to a worker would
cost more than the inference itself. The isolation rule targets framework backends
(TensorFlow, torch); LiteRT is a small C++ interpreter like ONNX Runtime, which also runs
in-process.

An interpreter is not thread-safe, so each version owns one interpreter and a
single-thread executor: requests are serialised per interpreter and run off the event
loop (or on the event loop itself with ``parameters: {inline: true}``, see
:mod:`gateway.backends.inline`). The batch dimension is resized per request (``resize_tensor_input(strict=True)``
+ ``allocate_tensors``), only when the incoming shapes differ from the previous request's.
Names come from the model's signature (the SavedModel names, e.g. ``image`` and
``output_0``) when it has one, else from the tensor details.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gateway.backends.inline import INLINE_DESCRIPTION, run_blocking
from gateway.core.backend import Backend, ModelVersionSource
from gateway.core.codec.datatypes import v2_datatype
from gateway.core.errors import BackendError, ConfigError, InvalidInput, first_line
from gateway.core.signature import merge_signature
from gateway.core.types import Signature, TensorSpec

ARTIFACT = "model.tflite"
log = logging.getLogger(__name__)


class TFLiteParameters(BaseModel):
    """``parameters:`` accepted in config.yaml for ``backend: tflite``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_threads: Annotated[int, Field(ge=1, description="Threads the interpreter uses for one invoke.")] = 2
    signature_name: Annotated[
        str | None, Field(description="Signature whose names to use; default: the only (or first) one.")
    ] = None
    inline: Annotated[bool, Field(description=INLINE_DESCRIPTION)] = False


class TFLiteBackend(Backend):
    """Serves ``<version>/model.tflite`` (or ``artifact:``) with ``ai_edge_litert``."""

    name = "tflite"
    platform = "tensorflow_lite"
    Parameters = TFLiteParameters
    params: TFLiteParameters

    def __init__(self, source: ModelVersionSource) -> None:
        super().__init__(source)
        self._runner: TFLiteRunner | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def load_impl(self) -> Signature:
        path = self.source.artifact_path(ARTIFACT)
        if not path.is_file():
            raise ConfigError(f"{path}: artifact not found")
        runner = TFLiteRunner(str(path), self.params)
        discovered = await asyncio.to_thread(runner.load)
        signature = merge_signature(self.source.name, self.source.config, discovered)
        self._runner = runner
        if not self.params.inline:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"tflite-{self.source.name}")
        return signature

    async def infer_impl(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        assert self._runner is not None
        return await run_blocking(self._executor, self._runner.infer, inputs, outputs)

    async def unload_impl(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._runner = None


class TFLiteRunner:
    """One interpreter; call ``infer`` from one thread at a time."""

    def __init__(self, path: str, params: TFLiteParameters) -> None:
        self._path = path
        self._params = params
        self._interpreter: Any = None
        self._inputs: dict[str, int] = {}
        self._outputs: dict[str, int] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}

    def load(self) -> Signature:
        from ai_edge_litert.interpreter import Interpreter

        try:
            interpreter = Interpreter(model_path=self._path, num_threads=self._params.num_threads)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            log.warning("LiteRT cannot load %s: %s", self._path, first_line(exc))
            raise ConfigError(
                f"{self._path}: LiteRT cannot load it (not a valid TFLite model; the gateway log has its message)"
            ) from None
        input_details, output_details = self._details(interpreter)
        self._interpreter = interpreter
        self._inputs = {name: int(d["index"]) for name, d in input_details.items()}
        self._outputs = {name: int(d["index"]) for name, d in output_details.items()}
        self._shapes = {name: tuple(int(x) for x in d["shape"]) for name, d in input_details.items()}
        return Signature(
            inputs=[_spec(name, d) for name, d in input_details.items()],
            outputs=[_spec(name, d) for name, d in output_details.items()],
        )

    def infer(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        interpreter = self._interpreter
        try:
            self._resize(inputs)
            for name, value in inputs.items():
                interpreter.set_tensor(self._inputs[name], value)
            interpreter.invoke()
        except ValueError as exc:  # LiteRT raises ValueError for shapes/values it cannot take
            self._shapes.clear()  # the interpreter's allocation is unknown now: resize next time
            log.info("LiteRT rejected an input: %s", first_line(exc))
            raise InvalidInput("the model rejected the input's shape or values (LiteRT could not run it)") from None
        except RuntimeError as exc:
            self._shapes.clear()
            log.warning("LiteRT failed: %s", first_line(exc))
            raise BackendError("LiteRT failed while running the model (the gateway log has its message)") from None
        return {name: np.array(interpreter.get_tensor(self._outputs[name])) for name in outputs}

    def _resize(self, inputs: Mapping[str, np.ndarray]) -> None:
        changed = {name: value.shape for name, value in inputs.items() if self._shapes.get(name) != value.shape}
        if not changed:
            return
        for name, shape in changed.items():
            self._interpreter.resize_tensor_input(self._inputs[name], list(shape), strict=True)
        self._interpreter.allocate_tensors()
        self._shapes.update(changed)

    def _details(self, interpreter: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Tensor details keyed by the signature's names (or by tensor names without one)."""
        signatures = interpreter.get_signature_list()
        wanted = self._params.signature_name
        if wanted is not None and wanted not in signatures:
            raise ConfigError(
                f"{self._path}: parameters.signature_name {wanted!r} is not in the model (it has {sorted(signatures)})"
            )
        if signatures:
            key = wanted or next(iter(signatures))
            runner = interpreter.get_signature_runner(key)
            inputs, outputs = dict(runner.get_input_details()), dict(runner.get_output_details())
            primary = {int(d["index"]) for d in interpreter.get_input_details()}
            if {int(d["index"]) for d in inputs.values()} != primary:
                raise ConfigError(f"{self._path}: signature {key!r} is not the model's primary subgraph (unsupported)")
            return inputs, outputs
        return (
            {d["name"]: d for d in interpreter.get_input_details()},
            {d["name"]: d for d in interpreter.get_output_details()},
        )


def _spec(name: str, details: Mapping[str, Any]) -> TensorSpec:
    dtype = np.dtype(details["dtype"])
    try:
        datatype = v2_datatype(dtype)
    except InvalidInput:
        raise ConfigError(f"tensor {name!r} has LiteRT dtype {dtype}, which has no V2 datatype") from None
    signature = details.get("shape_signature")
    dims = signature if signature is not None and len(signature) else details["shape"]
    return TensorSpec(name, datatype, tuple(int(d) for d in dims))
