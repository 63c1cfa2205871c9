"""TF Serving behind the gateway (``backend: tfserving``): a client of TF Serving's own API.

gRPC by default: ``PredictionService.Predict`` with tensors as ``TensorProto`` whose
``tensor_content`` holds the raw little-endian bytes (no per-element protobuf fields),
``GetModelMetadata`` to read the signature when config.yaml declares no tensors, and
``ModelService.GetModelStatus`` for readiness. The messages come from
:mod:`gateway.protos.tfserving`, generated so that importing them does not import
TensorFlow. ``protocol: rest`` uses TF Serving's REST API instead (``:predict`` in the
columnar ``inputs`` format, which keeps shapes, plus ``/metadata`` and the status URL).

Errors: NOT_FOUND (404) -> ModelNotReady, UNAVAILABLE/connect errors -> BackendUnavailable,
INVALID_ARGUMENT (400) -> InvalidInput, DEADLINE_EXCEEDED (504) -> DeadlineExceeded,
RESOURCE_EXHAUSTED (429) -> Overloaded, anything else -> BackendError. Calls go through a
circuit breaker and a bounded retry of connection failures only, inside the model's deadline
(:mod:`gateway.backends.resilience`).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import httpx
import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.backends.resilience import CircuitBreaker, Deadline, RetryPolicy, retry
from gateway.core.backend import Backend, ModelVersionSource
from gateway.core.codec.datatypes import v2_datatype
from gateway.core.codec.limits import TensorLimits
from gateway.core.codec.values import array_from_json, array_to_json
from gateway.core.errors import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    DeadlineExceeded,
    GatewayError,
    InvalidInput,
    ModelNotReady,
    Overloaded,
)
from gateway.core.signature import declared_signature, merge_signature
from gateway.core.types import Signature, TensorSpec
from gateway.tensorproto import V2_DATATYPE, tensor_from_proto, tensor_to_content_proto

_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
#: A TF Serving answer is bounded by the gRPC message limit, not by the client-facing tensor limit.
_RESPONSE_LIMITS = TensorLimits(max_bytes=_MAX_MESSAGE_BYTES)


class TFServingParameters(BaseModel):
    """``parameters:`` accepted in config.yaml for ``backend: tfserving``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: Annotated[Literal["grpc", "rest"], Field(description="TF Serving API to use.")] = "grpc"
    address: Annotated[str | None, Field(description="gRPC host:port of TF Serving (protocol grpc).")] = None
    url: Annotated[str | None, Field(description="REST base URL, e.g. http://host:8501 (protocol rest).")] = None
    model_name: Annotated[str | None, Field(description="Model name on the TF Serving side (default: same).")] = None
    model_version: Annotated[int | None, Field(ge=1, description="Pin a TF Serving version; default: its latest.")] = (
        None
    )
    signature_name: Annotated[str, Field(min_length=1, description="SignatureDef to call.")] = "serving_default"
    connect_attempts: Annotated[int, Field(ge=1, le=10, description="Attempts when the connection fails.")] = 3
    breaker_failures: Annotated[int, Field(ge=1, description="Consecutive failures that open the breaker.")] = 5
    breaker_cooldown_seconds: Annotated[float, Field(gt=0, description="Open-breaker time before a probe.")] = 1.0
    health_timeout_seconds: Annotated[float, Field(gt=0, description="Timeout of one status probe.")] = 2.0

    @model_validator(mode="after")
    def _endpoint_for_protocol(self) -> TFServingParameters:
        if self.protocol == "grpc" and not self.address:
            raise ValueError("protocol grpc needs address (TF Serving's gRPC host:port)")
        if self.protocol == "rest" and not self.url:
            raise ValueError("protocol rest needs url (TF Serving's REST base URL, e.g. http://host:8501)")
        return self


class _Unreachable(BackendUnavailable):
    """The connection was never established: the request did not reach TF Serving, safe to retry."""


class TFServingBackend(Backend):
    """One model version whose inference runs on a TF Serving (or a gateway in that role)."""

    name = "tfserving"
    platform = "tensorflow_savedmodel"
    Parameters = TFServingParameters
    params: TFServingParameters

    def __init__(self, source: ModelVersionSource) -> None:
        super().__init__(source)
        self.remote_name = self.params.model_name or source.name
        endpoint = self.params.address if self.params.protocol == "grpc" else self.params.url
        self._breaker = CircuitBreaker(
            str(endpoint), self.params.breaker_failures, self.params.breaker_cooldown_seconds
        )
        self._retry = RetryPolicy(max_attempts=self.params.connect_attempts)
        self._transport: _Transport | None = None

    async def load_impl(self) -> Signature:
        self._breaker.add_listener(
            lambda is_open: self.events.breaker_state(self.name, self._breaker.endpoint, is_open)
        )
        transport: _Transport = _GrpcTransport(self) if self.params.protocol == "grpc" else _RestTransport(self)
        try:
            config = self.source.config
            if config.inputs and config.outputs:
                signature = declared_signature(self.source.name, config)
            else:
                signature = merge_signature(self.source.name, config, await transport.metadata())
        except GatewayError as exc:
            await transport.close()
            raise ConfigError(f"model {self.source.name!r}: cannot read its signature from TF Serving: {exc}") from None
        except BaseException:
            await transport.close()
            raise
        self._transport = transport
        return signature

    async def infer_impl(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        transport = self._transport
        if transport is None:
            raise ModelNotReady(f"model {self.source.name!r} version {self.source.version} is not loaded")
        specs = {spec.name: spec for spec in self.signature.outputs}
        wanted = [specs[name] for name in outputs]
        deadline = Deadline.after(self.source.config.timeout_seconds)
        return await retry(
            lambda: self._breaker.call(lambda: transport.predict(inputs, wanted, deadline), _endpoint_failure),
            self._retry,
            _safe_to_retry,
            deadline,
            on_retry=lambda: self.events.retry(self.name, self._breaker.endpoint),
        )

    async def health_impl(self) -> bool:
        return self._transport is not None and await self._transport.available()

    async def unload_impl(self) -> None:
        if self._transport is not None:
            await self._transport.close()
            self._transport = None

    def describe(self) -> str:
        version = f" version {self.params.model_version}" if self.params.model_version else ""
        return f"TF Serving model {self.remote_name!r}{version}"


class _Transport(abc.ABC):
    """One way of talking to TF Serving; raises gateway errors only."""

    def __init__(self, backend: TFServingBackend) -> None:
        self.backend = backend
        self.params = backend.params

    @abc.abstractmethod
    async def metadata(self) -> Signature: ...

    @abc.abstractmethod
    async def predict(
        self, inputs: Mapping[str, np.ndarray], outputs: Sequence[TensorSpec], deadline: Deadline
    ) -> dict[str, np.ndarray]: ...

    @abc.abstractmethod
    async def available(self) -> bool: ...

    @abc.abstractmethod
    async def close(self) -> None: ...


# -- gRPC --------------------------------------------------------------------------------


class _GrpcTransport(_Transport):
    def __init__(self, backend: TFServingBackend) -> None:
        super().__init__(backend)
        import grpc

        from gateway.protos.tfserving.tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self._channel = grpc.aio.insecure_channel(
            str(self.params.address),
            options=[
                ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
            ],
        )
        # the generated stubs are untyped; their methods are typed through the messages they take
        predict_stub: Any = prediction_service_pb2_grpc.PredictionServiceStub
        model_stub: Any = model_service_pb2_grpc.ModelServiceStub
        self._predict = predict_stub(self._channel)
        self._models = model_stub(self._channel)

    def _model_spec(self) -> Any:
        from gateway.protos.tfserving.tensorflow_serving.apis import model_pb2

        spec = model_pb2.ModelSpec(name=self.backend.remote_name, signature_name=self.params.signature_name)
        if self.params.model_version is not None:
            spec.version.value = self.params.model_version
        return spec

    async def metadata(self) -> Signature:
        from gateway.protos.tfserving.tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=self._model_spec(), metadata_field=["signature_def"]
        )
        response = await self._call(self._predict.GetModelMetadata, request, self.params.health_timeout_seconds * 5)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        if not response.metadata["signature_def"].Unpack(signatures):
            raise BackendError(f"{self.backend.describe()}: metadata holds no SignatureDefMap")
        found = signatures.signature_def
        name = self.params.signature_name
        if name not in found:
            raise ConfigError(f"parameters.signature_name {name!r} is not served (TF Serving has {sorted(found)})")
        signature = found[name]
        return Signature(
            inputs=[_info_spec(k, v.dtype, _proto_dims(v.tensor_shape)) for k, v in sorted(signature.inputs.items())],
            outputs=[_info_spec(k, v.dtype, _proto_dims(v.tensor_shape)) for k, v in sorted(signature.outputs.items())],
        )

    async def predict(
        self, inputs: Mapping[str, np.ndarray], outputs: Sequence[TensorSpec], deadline: Deadline
    ) -> dict[str, np.ndarray]:
        from gateway.protos.tfserving.tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest(model_spec=self._model_spec(), output_filter=[s.name for s in outputs])
        for name, array in inputs.items():
            request.inputs[name].CopyFrom(tensor_to_content_proto(array, v2_datatype(array.dtype)))
        response = await self._call(self._predict.Predict, request, max(deadline.remaining(), 0.001))
        result = {}
        for spec in outputs:
            if spec.name not in response.outputs:
                raise BackendError(f"{self.backend.describe()} returned no output {spec.name!r}")
            result[spec.name] = array_from_proto(spec.name, response.outputs[spec.name])
        return result

    async def available(self) -> bool:
        import grpc

        from gateway.protos.tfserving.tensorflow_serving.apis import get_model_status_pb2

        spec = self._model_spec()
        spec.ClearField("signature_name")
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=spec)
        try:
            response = await self._models.GetModelStatus(request, timeout=self.params.health_timeout_seconds)
        except grpc.aio.AioRpcError:
            return False
        available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        return any(status.state == available for status in response.model_version_status)

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: Any, request: Any, timeout: float) -> Any:
        import grpc

        try:
            return await method(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise _grpc_error(self.backend.describe(), exc.code().name, exc.details() or "") from None


def _grpc_error(what: str, code: str, details: str) -> GatewayError:
    if code == "UNAVAILABLE":
        return _Unreachable(f"{what}: TF Serving is unreachable ({details})")
    return _error_for(what, code, details)


def _error_for(what: str, code: str, details: str) -> GatewayError:
    """The one mapping of TF Serving's error codes (gRPC names; REST statuses are translated first)."""
    cls: type[GatewayError] = {
        "NOT_FOUND": ModelNotReady,
        "UNAVAILABLE": BackendUnavailable,
        "INVALID_ARGUMENT": InvalidInput,
        "FAILED_PRECONDITION": InvalidInput,
        "DEADLINE_EXCEEDED": DeadlineExceeded,
        "RESOURCE_EXHAUSTED": Overloaded,
    }.get(code, BackendError)
    return cls(f"{what}: {details}" if details else f"{what}: {code}")


def array_from_proto(name: str, proto: Any) -> np.ndarray:
    """A response tensor as numpy (``tensor_content`` or typed fields, one value filling the shape).

    The codec's InvalidInput means TF Serving sent something malformed, which is the
    backend's failure here, not the client's.
    """
    try:
        return tensor_from_proto(name, proto, limits=_RESPONSE_LIMITS).data
    except InvalidInput as exc:
        raise BackendError(f"TF Serving returned an unreadable tensor: {exc.message}") from None


def _proto_dims(shape: Any) -> list[int] | None:
    return None if shape.unknown_rank else [int(d.size) for d in shape.dim]


def _info_spec(name: str, dtype: int, dims: list[int] | None) -> TensorSpec:
    datatype = V2_DATATYPE.get(int(dtype))
    if datatype is None:
        raise ConfigError(f"TF Serving tensor {name!r} has DataType {dtype}, which has no V2 datatype")
    if dims is None:
        raise ConfigError(f"TF Serving tensor {name!r} has unknown rank; declare it in config.yaml")
    return TensorSpec(name, datatype, tuple(-1 if d < 0 else d for d in dims))


# -- REST --------------------------------------------------------------------------------

_HTTP_TO_CODE = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE",
                 504: "DEADLINE_EXCEEDED"}  # fmt: skip


class _RestTransport(_Transport):
    def __init__(self, backend: TFServingBackend) -> None:
        super().__init__(backend)
        base = str(self.params.url).rstrip("/")
        version = f"/versions/{self.params.model_version}" if self.params.model_version else ""
        self._model_url = f"{base}/v1/models/{backend.remote_name}{version}"
        self._client = httpx.AsyncClient(timeout=backend.source.config.timeout_seconds)

    async def metadata(self) -> Signature:
        body = await self._request("GET", f"{self._model_url}/metadata", None, self.params.health_timeout_seconds * 5)
        try:
            found = body["metadata"]["signature_def"]["signature_def"]
        except (KeyError, TypeError):
            raise BackendError(f"{self.backend.describe()}: metadata has no signature_def") from None
        name = self.params.signature_name
        if name not in found:
            raise ConfigError(f"parameters.signature_name {name!r} is not served (TF Serving has {sorted(found)})")
        return Signature(inputs=_json_specs(found[name]["inputs"]), outputs=_json_specs(found[name]["outputs"]))

    async def predict(
        self, inputs: Mapping[str, np.ndarray], outputs: Sequence[TensorSpec], deadline: Deadline
    ) -> dict[str, np.ndarray]:
        payload = {
            "signature_name": self.params.signature_name,
            "inputs": {name: _json_value(name, array) for name, array in inputs.items()},
        }
        body = await self._request("POST", f"{self._model_url}:predict", payload, max(deadline.remaining(), 0.001))
        if "outputs" not in body:
            raise BackendError(f"{self.backend.describe()} answered :predict without 'outputs'")
        values = body["outputs"]
        by_name = values if isinstance(values, dict) else {s.name: values for s in self.backend.signature.outputs}
        result = {}
        for spec in outputs:
            if spec.name not in by_name:
                raise BackendError(f"{self.backend.describe()} returned no output {spec.name!r}")
            result[spec.name] = _array_from_json(spec.name, by_name[spec.name], spec.datatype)
        return result

    async def available(self) -> bool:
        try:
            response = await self._client.get(self._model_url, timeout=self.params.health_timeout_seconds)
            statuses = response.json().get("model_version_status", []) if response.status_code == 200 else []
        except (httpx.HTTPError, ValueError, AttributeError):
            return False
        return any(isinstance(s, dict) and s.get("state") == "AVAILABLE" for s in statuses)

    async def close(self) -> None:
        await self._client.aclose()

    async def _request(self, method: str, url: str, payload: Any, timeout: float) -> dict[str, Any]:
        what = self.backend.describe()
        try:
            content = None if payload is None else orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
            headers = None if payload is None else {"content-type": "application/json"}
            response = await self._client.request(method, url, content=content, headers=headers, timeout=timeout)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _Unreachable(f"{what}: cannot connect to {self.params.url}: {exc}") from None
        except httpx.TimeoutException:
            raise DeadlineExceeded(f"{what}: no answer from {self.params.url} in time") from None
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"{what}: connection to {self.params.url} failed: {exc!r}") from None
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text[:200]}
        if response.status_code != 200 or not isinstance(body, dict):
            message = body.get("error", "") if isinstance(body, dict) else ""
            code = _HTTP_TO_CODE.get(response.status_code, f"HTTP {response.status_code}")
            raise _error_for(what, code, str(message))
        return body


def _json_specs(tensors: Mapping[str, Any]) -> list[TensorSpec]:
    specs = []
    for name, info in sorted(tensors.items()):
        shape = info.get("tensor_shape", {})
        dims = None if shape.get("unknown_rank") else [int(d["size"]) for d in shape.get("dim", [])]
        specs.append(_info_spec(name, _dtype_number(str(info.get("dtype"))), dims))
    return specs


def _dtype_number(name: str) -> int:
    """``DT_FLOAT`` -> 1 (the REST metadata spells DataTypes by name); -1 if unknown."""
    from gateway.protos.tfserving.tensorflow.core.framework import types_pb2

    try:
        return int(types_pb2.DataType.Value(name))
    except ValueError:
        return -1


def _json_value(name: str, array: np.ndarray) -> Any:
    """Columnar JSON for one tensor; BYTES elements as {"b64": ...} so any bytes survive."""
    return array_to_json(name, array, v2_datatype(array.dtype), b64=True, nested=True)


def _array_from_json(name: str, value: Any, datatype: str) -> np.ndarray:
    try:
        return array_from_json(name, datatype, value, "outputs", b64=True, finite=False)
    except InvalidInput as exc:
        raise BackendError(f"TF Serving returned an unreadable tensor: {exc.message}") from None


def _safe_to_retry(exc: BaseException) -> bool:
    return isinstance(exc, _Unreachable)


def _endpoint_failure(exc: BaseException) -> bool:
    """Errors that say the endpoint is unhealthy (they feed the circuit breaker)."""
    return isinstance(exc, BackendUnavailable)
