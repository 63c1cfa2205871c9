"""TensorFlow SavedModels (``backend: tensorflow``), served from a worker process.

The gateway side (:class:`TensorFlowBackend`) never imports TensorFlow: it validates the
parameters and starts a worker (:mod:`gateway.backends.worker`). Inside the worker,
:class:`SavedModelRuntime` loads the SavedModel with ``tf.saved_model.load`` and calls one
of its signatures (``serving_default`` unless ``parameters.signature_name`` says
otherwise). Input and output names, datatypes and shapes come from the signature's
``structured_input_signature`` and ``structured_outputs``; concrete functions are
thread-safe, so the worker runs ``worker_threads`` requests at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from gateway.backends.worker.supervisor import WorkerBackend, WorkerParameters
from gateway.core.codec.datatypes import v2_datatype
from gateway.core.errors import BackendError, ConfigError, InvalidInput, first_line
from gateway.core.types import Signature, TensorSpec

ARTIFACT = "model.savedmodel"


class TensorFlowParameters(WorkerParameters):
    """``parameters:`` accepted in config.yaml for ``backend: tensorflow``."""

    signature_name: Annotated[str, Field(min_length=1, description="SavedModel signature to serve.")] = (
        "serving_default"
    )
    intra_op_threads: Annotated[int, Field(ge=0, description="Threads inside one op; 0 = TF default.")] = 1
    inter_op_threads: Annotated[int, Field(ge=0, description="Ops run in parallel; 0 = TF default.")] = 1


class TensorFlowBackend(WorkerBackend):
    """Serves ``<version>/model.savedmodel/`` (or ``artifact:``) in a TensorFlow worker process."""

    name = "tensorflow"
    platform = "tensorflow_savedmodel"
    Parameters = TensorFlowParameters
    params: TensorFlowParameters
    runtime = "gateway.backends.tensorflow:SavedModelRuntime"

    @property
    def worker_parameters(self) -> WorkerParameters:
        return self.params

    def worker_spec(self) -> dict[str, Any]:
        path = self.source.artifact_path(ARTIFACT)
        if not (path / "saved_model.pb").is_file():
            raise ConfigError(f"{path}: artifact not found (expected a SavedModel directory with saved_model.pb)")
        return {
            "path": str(path),
            "signature_name": self.params.signature_name,
            "intra_op_threads": self.params.intra_op_threads,
            "inter_op_threads": self.params.inter_op_threads,
        }


class SavedModelRuntime:
    """Runs inside the worker process: the only place TensorFlow is imported."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self._path = str(spec["path"])
        self._signature_name = str(spec["signature_name"])
        self._intra = int(spec["intra_op_threads"])
        self._inter = int(spec["inter_op_threads"])
        self._function: Any = None

    def load(self) -> Signature:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(self._intra)
        tf.config.threading.set_inter_op_parallelism_threads(self._inter)
        try:
            loaded = tf.saved_model.load(self._path)
        except (OSError, ValueError, tf.errors.OpError) as exc:
            raise ConfigError(f"{self._path}: TensorFlow cannot load it: {first_line(exc)}") from None
        signatures = dict(loaded.signatures)
        if self._signature_name not in signatures:
            raise ConfigError(
                f"{self._path}: parameters.signature_name {self._signature_name!r} is not in the SavedModel "
                f"(it has {sorted(signatures)})"
            )
        self._loaded = loaded  # keeps the variables the function captures alive
        self._function = signatures[self._signature_name]
        _, keyword_specs = self._function.structured_input_signature
        return Signature(
            inputs=[_spec(name, spec) for name, spec in sorted(keyword_specs.items())],
            outputs=[_spec(name, spec) for name, spec in sorted(self._function.structured_outputs.items())],
        )

    def infer(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        try:
            results = self._function(**{name: tf.constant(value) for name, value in inputs.items()})
        except tf.errors.InvalidArgumentError as exc:
            raise InvalidInput(f"TensorFlow rejected the input: {first_line(exc.message)}") from None
        except tf.errors.OpError as exc:
            raise BackendError(f"TensorFlow failed: {first_line(exc.message)}") from None
        return {name: _numpy(results[name]) for name in outputs}


def _spec(name: str, spec: Any) -> TensorSpec:
    if spec.dtype.name == "string":
        datatype = "BYTES"
    else:
        try:
            datatype = v2_datatype(np.dtype(spec.dtype.as_numpy_dtype))
        except (InvalidInput, TypeError):
            raise ConfigError(
                f"tensor {name!r} has TensorFlow dtype {spec.dtype.name}, which has no V2 datatype"
            ) from None
    if spec.shape.rank is None:
        raise ConfigError(f"tensor {name!r} has unknown rank; the gateway needs a fixed rank")
    shape = tuple(-1 if d is None else int(d) for d in spec.shape.as_list())
    return TensorSpec(name, datatype, shape)


def _numpy(tensor: Any) -> np.ndarray:
    array = np.asarray(tensor.numpy())
    if array.dtype.kind == "S":  # fixed-width bytes from a string tensor: V2 BYTES wants objects
        return array.astype(object)
    return array
