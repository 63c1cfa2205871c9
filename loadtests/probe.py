"""Check the target before any load: reachable, the model exists, and what tensors it takes.

Each protocol asks in its own words: V2 REST ``GET /v2/models/{m}[/versions/{v}]``, V2 gRPC
``ModelMetadata``, TF Serving REST ``GET /v1/models/{m}[/versions/{v}]/metadata`` and TF Serving
gRPC ``GetModelMetadata`` (the ``serving_default`` SignatureDef), so a load test can also target a
real TF Serving. Each failure raises :class:`LoadTestError` saying what was asked and what came back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from loadtests.config import Protocol
from loadtests.errors import LoadTestError
from loadtests.tensors import TensorSpec, specs_from_metadata

PROBE_TIMEOUT_SECONDS = 5.0
SIGNATURE = "serving_default"


@dataclass(frozen=True)
class ModelInfo:
    """The model's signature, the versions the server lists, and the version it would serve (if it says)."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    versions: tuple[str, ...] = field(default_factory=tuple)
    served_version: str | None = None


def check_host(protocol: Protocol, host: str) -> None:
    """HTTP protocols need ``http(s)://host:port``; gRPC ones take ``grpc://host:port`` or ``host:port``."""
    if protocol.grpc:
        target = host.removeprefix("grpc://")
        if "://" in target or ":" not in target:
            raise LoadTestError(f"--host {host!r}: protocol {protocol.value} needs grpc://HOST:PORT (or HOST:PORT)")
        return
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LoadTestError(f"--host {host!r}: protocol {protocol.value} needs http://HOST:PORT")


def _get(url: str) -> httpx.Response:
    try:
        return httpx.get(url, timeout=PROBE_TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        raise LoadTestError(f"cannot reach {url}: {exc or type(exc).__name__}") from None


def _json(model: str, url: str) -> Any:
    response = _get(url)
    if response.status_code != 200:
        detail = response.text.strip()[:200]
        if response.status_code == 404:
            raise LoadTestError(f"unknown model {model!r}: GET {url} returned 404 {detail}")
        raise LoadTestError(f"GET {url} returned {response.status_code} {detail}")
    try:
        return response.json()
    except ValueError:
        raise LoadTestError(f"GET {url} did not return JSON metadata") from None


def _signature(model: str, where: str, inputs: Any, outputs: Any) -> tuple[tuple[TensorSpec, ...], ...]:
    try:
        specs = tuple(specs_from_metadata(inputs)), tuple(specs_from_metadata(outputs))
    except ValueError as exc:
        raise LoadTestError(f"model {model!r}: {where} is unusable: {exc}") from None
    if not specs[0]:
        raise LoadTestError(f"model {model!r}: {where} lists no inputs, so no request can be built")
    return specs


def _suffix(version: str | None) -> str:
    return f"/versions/{version}" if version else ""


def probe_v2_rest(host: str, model: str, version: str | None) -> ModelInfo:
    url = f"{host.rstrip('/')}/v2/models/{model}{_suffix(version)}"
    doc = _json(model, url)
    if not isinstance(doc, dict):
        raise LoadTestError(f"GET {url} did not return a metadata object")
    inputs, outputs = _signature(model, f"the metadata at {url}", doc.get("inputs"), doc.get("outputs"))
    versions = tuple(str(v) for v in doc.get("versions") or [])
    return ModelInfo(inputs, outputs, versions, version)


def _grpc_error(target: str, model: str, call: str, exc: Any) -> LoadTestError:
    import grpc

    code = exc.code() if callable(getattr(exc, "code", None)) else None
    details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
    if code == grpc.StatusCode.NOT_FOUND:
        return LoadTestError(f"unknown model {model!r}: {call} at {target} said {details}")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return LoadTestError(f"cannot reach gRPC {target}: {details}")
    return LoadTestError(f"{call} at {target} failed: {details}")


def probe_v2_grpc(host: str, model: str, version: str | None) -> ModelInfo:
    import grpc

    from gateway.protos import open_inference_grpc_pb2 as pb
    from gateway.protos import open_inference_grpc_pb2_grpc as pb_grpc

    target = host.removeprefix("grpc://").rstrip("/")
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name=model, version=version or ""), timeout=5.0)
        except grpc.RpcError as exc:
            raise _grpc_error(target, model, "ModelMetadata", exc) from None
    as_dicts = [
        [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in group]
        for group in (metadata.inputs, metadata.outputs)
    ]
    inputs, outputs = _signature(model, f"ModelMetadata at {target}", *as_dicts)
    return ModelInfo(inputs, outputs, tuple(metadata.versions), version)


def _tfs_specs(tensors: Mapping[str, Any]) -> list[dict[str, Any]]:
    """SignatureDef ``inputs``/``outputs`` (JSON as TF Serving prints it) as V2-style dicts."""
    from gateway.protos.tfserving.tensorflow.core.framework import types_pb2
    from gateway.tensorproto import V2_DATATYPE

    specs = []
    for key, info in tensors.items():
        try:
            dtype = types_pb2.DataType.Value(str(info.get("dtype")))
        except ValueError:
            dtype = -1
        shape = info.get("tensor_shape") or {}
        dims = [int(d.get("size", -1)) for d in shape.get("dim") or []]
        specs.append({"name": key, "datatype": V2_DATATYPE.get(dtype, str(info.get("dtype"))), "shape": dims})
    return specs


def _tfs_signature(model: str, where: str, doc: Any) -> tuple[tuple[TensorSpec, ...], ...]:
    try:
        signature = doc["metadata"]["signature_def"]["signature_def"][SIGNATURE]
    except (KeyError, TypeError):
        raise LoadTestError(f"model {model!r}: {where} has no {SIGNATURE!r} signature") from None
    return _signature(
        model, where, _tfs_specs(signature.get("inputs") or {}), _tfs_specs(signature.get("outputs") or {})
    )


def probe_tfs_rest(host: str, model: str, version: str | None) -> ModelInfo:
    url = f"{host.rstrip('/')}/v1/models/{model}{_suffix(version)}/metadata"
    doc = _json(model, url)
    inputs, outputs = _tfs_signature(model, f"the metadata at {url}", doc)
    served = str(((doc.get("model_spec") or {}).get("version")) or version or "") or None
    return ModelInfo(inputs, outputs, (), served)


def probe_tfs_grpc(host: str, model: str, version: str | None) -> ModelInfo:
    import grpc
    from google.protobuf import json_format, wrappers_pb2

    from gateway.protos.tfserving.tensorflow_serving.apis import (
        get_model_metadata_pb2,
        model_pb2,
        prediction_service_pb2_grpc,
    )

    target = host.removeprefix("grpc://").rstrip("/")
    spec = model_pb2.ModelSpec(name=model)
    if version:
        spec.version.CopyFrom(wrappers_pb2.Int64Value(value=int(version)))
    request = get_model_metadata_pb2.GetModelMetadataRequest(model_spec=spec, metadata_field=["signature_def"])
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            response = stub.GetModelMetadata(request, timeout=PROBE_TIMEOUT_SECONDS)
        except grpc.RpcError as exc:
            raise _grpc_error(target, model, "GetModelMetadata", exc) from None
    signatures = get_model_metadata_pb2.SignatureDefMap()
    if "signature_def" not in response.metadata or not response.metadata["signature_def"].Unpack(signatures):
        raise LoadTestError(f"model {model!r}: GetModelMetadata at {target} returned no signature_def")
    doc = {"metadata": {"signature_def": json_format.MessageToDict(signatures, preserving_proto_field_name=True)}}
    inputs, outputs = _tfs_signature(model, f"GetModelMetadata at {target}", doc)
    served = str(response.model_spec.version.value) if response.model_spec.HasField("version") else version
    return ModelInfo(inputs, outputs, (), served)


def probe(protocol: Protocol, host: str, model: str, version: str | None) -> ModelInfo:
    """Run the checks for ``protocol``; raises :class:`LoadTestError` with the reason."""
    check_host(protocol, host)
    if version is not None and not (version.isdigit() and version[0] != "0"):
        raise LoadTestError(f"--model-version {version!r}: a version is a positive integer without leading zeros")
    probes = {
        Protocol.REST: probe_v2_rest,
        Protocol.BINARY: probe_v2_rest,
        Protocol.GRPC: probe_v2_grpc,
        Protocol.TFS: probe_tfs_rest,
        Protocol.TFS_GRPC: probe_tfs_grpc,
    }
    return probes[protocol](host, model, version)
