"""The protocol-neutral data plane that every adapter (V2 REST/gRPC, TF Serving) calls.

It resolves the model version, validates the request against the version's signature,
passes admission control and the deadline, calls the backend, and assembles the
response. Adapters only translate wire formats and map :class:`ErrorKind` to status codes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from gateway import __version__
from gateway.core.datatypes import numpy_dtype
from gateway.core.errors import BackendError, GatewayError, ModelNotReady
from gateway.core.evidence import EvidenceBook
from gateway.core.models import ModelManager, ServedVersion, VersionState
from gateway.core.shadow import ShadowMirror
from gateway.core.traffic import route_key
from gateway.core.types import InferRequest, InferResponse, Signature, Tensor, TensorSpec
from gateway.core.validation import select_outputs, validate_inputs
from gateway.metrics import Metrics

SERVER_NAME = "modelgate"
#: V2 extensions this server implements (reported by GET /v2 and ServerMetadata).
EXTENSIONS = ("binary_tensor_data", "model_repository")


@dataclass(slots=True)
class ModelMetadata:
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": self.versions,
            "platform": self.platform,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
        }


class DataPlane:
    """Health, metadata and inference on top of a :class:`ModelManager`."""

    def __init__(self, manager: ModelManager, metrics: Metrics, evidence: EvidenceBook | None = None) -> None:
        self.manager = manager
        self.metrics = metrics
        self.draining = False
        #: What each version did with live traffic and shadow copies (rollout decisions read it).
        self.evidence = evidence if evidence is not None else EvidenceBook()
        self.shadow = ShadowMirror(self.evidence, lambda served, request: self.infer_version(served, request, False))

    # -- health -------------------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        """Ready once start-up loading finished and until shutdown begins.

        A model that failed to load does not make the server unready (it is reported per
        model and in the repository index): the others keep serving.
        """
        return self.manager.loaded and not self.draining

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}

    def model_ready(self, name: str, version: str | None) -> bool:
        return self.manager.resolve(name, version).ready

    # -- metadata -----------------------------------------------------------------------

    def model_metadata(self, name: str, version: str | None) -> ModelMetadata:
        served = self.manager.resolve(name, version)
        signature = self._signature(served)
        model = self.manager.get(name)
        versions = [str(v) for v, s in sorted(model.versions.items()) if s.ready]
        platform = (served.config.platform if served.config else None) or _platform(served)
        return ModelMetadata(name, versions, platform, list(signature.inputs), list(signature.outputs))

    def repository_index(self) -> list[dict[str, Any]]:
        return self.manager.index()

    # -- inference ----------------------------------------------------------------------

    async def infer(self, request: InferRequest) -> InferResponse:
        """Validate, admit, run with a deadline, and shape the response."""
        served = self.manager.resolve(request.model_name, request.model_version, route_key(request))
        response = await self.infer_version(served, request)
        if not request.model_version:  # split requests may be copied to a shadow version
            self.shadow.mirror(self.manager.get(request.model_name), served, request, response)
        return response

    async def infer_version(self, served: ServedVersion, request: InferRequest, observe: bool = True) -> InferResponse:
        """Inference on an already resolved version (TF Serving labels resolve differently).

        ``observe``: record the outcome as live evidence of the version (shadow copies do not).
        """
        signature = self._signature(served)
        assert served.config is not None and served.gate is not None and served.call is not None
        arrays = validate_inputs(request.inputs, signature, served.config.max_batch_size)
        wanted = select_outputs(request.outputs, signature)
        names = [spec.name for spec in wanted]
        call = served.call
        started = time.perf_counter()
        try:
            results = await served.gate.run(lambda: call(arrays, names))
        except GatewayError as exc:
            self.metrics.rejections.labels(served.model, exc.kind.value.lower()).inc()
            if observe and not exc.is_client_error:
                self.evidence.observe(served.model, served.version, False, time.perf_counter() - started)
            raise
        finally:
            self.metrics.observe_backend(served.model, served.version, served.config.backend or "",
                                         time.perf_counter() - started)  # fmt: skip
        if observe:
            self.evidence.observe(served.model, served.version, True, time.perf_counter() - started)
        outputs = [_output_tensor(spec, results) for spec in wanted]
        return InferResponse(served.model, str(served.version), outputs, id=request.id)

    def _signature(self, served: ServedVersion) -> Signature:
        if served.state is not VersionState.READY or served.backend is None:
            reason = f": {served.reason}" if served.reason else ""
            raise ModelNotReady(
                f"model {served.model!r} version {served.version} is {served.state.value.lower()}{reason}"
            )
        return served.backend.signature


def _platform(served: ServedVersion) -> str:
    backend = served.config.backend if served.config else ""
    return {"onnxruntime": "onnxruntime_onnx", "tensorflow": "tensorflow_savedmodel", "tflite": "tflite"}.get(
        backend or "", backend or ""
    )


def _output_tensor(spec: TensorSpec, results: dict[str, Any]) -> Tensor:
    try:
        data = results[spec.name]
    except KeyError:
        raise BackendError(f"backend returned no output {spec.name!r}") from None
    want = numpy_dtype(spec.datatype)
    if spec.datatype != "BYTES" and data.dtype != want:
        data = data.astype(want)
    return Tensor(spec.name, spec.datatype, data)
