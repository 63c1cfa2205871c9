"""Check the target before any load: reachable, the model exists, and it takes digits images.

A release engineer who mistypes a host or a model name should get one clear line within seconds,
not a minute of Locust failures. Each check raises :class:`LoadTestError` saying what was asked and
what came back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from loadtests.config import Protocol
from loadtests.errors import LoadTestError
from loadtests.payloads import CLASSES, PIXELS

PROBE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class ModelInfo:
    """The tensor names requests use: the input taking the 64 pixels and the 10-way output."""

    input_name: str
    output_name: str


def check_host(protocol: Protocol, host: str) -> None:
    """HTTP protocols need ``http(s)://host:port``; gRPC takes ``grpc://host:port`` or ``host:port``."""
    if protocol is Protocol.GRPC:
        target = host.removeprefix("grpc://")
        if "://" in target or ":" not in target:
            raise LoadTestError(f"--host {host!r}: gRPC needs grpc://HOST:PORT (or HOST:PORT)")
        return
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LoadTestError(f"--host {host!r}: protocol {protocol.value} needs http://HOST:PORT")


def _fits(tensor: Mapping[str, Any], size: int) -> bool:
    shape = tensor.get("shape")
    return tensor.get("datatype") == "FP32" and isinstance(shape, Sequence) and len(shape) == 2 and shape[-1] == size


def model_info(model: str, inputs: Sequence[Mapping[str, Any]], outputs: Sequence[Mapping[str, Any]]) -> ModelInfo:
    """Pick the FP32 [-1, 64] input and FP32 [-1, 10] output, or say why the model does not fit."""
    input_name = next((str(t["name"]) for t in inputs if _fits(t, PIXELS)), None)
    output_name = next((str(t["name"]) for t in outputs if _fits(t, CLASSES)), None)
    if input_name is None or output_name is None:
        described = ", ".join(f"{t.get('name')} {t.get('datatype')} {t.get('shape')}" for t in (*inputs, *outputs))
        raise LoadTestError(
            f"model {model!r} does not take digits images (needs an FP32 [-1, {PIXELS}] input and an "
            f"FP32 [-1, {CLASSES}] output; it has {described or 'no tensors'})"
        )
    return ModelInfo(input_name, output_name)


def _get(url: str) -> httpx.Response:
    try:
        return httpx.get(url, timeout=PROBE_TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        raise LoadTestError(f"cannot reach {url}: {exc or type(exc).__name__}") from None


def _http_error(model: str, url: str, response: httpx.Response) -> LoadTestError:
    detail = response.text.strip()[:200]
    if response.status_code == 404:
        return LoadTestError(f"unknown model {model!r}: GET {url} returned 404 {detail}")
    return LoadTestError(f"GET {url} returned {response.status_code} {detail}")


def probe_v2_rest(host: str, model: str, version: str | None) -> ModelInfo:
    suffix = f"/versions/{version}" if version else ""
    url = f"{host.rstrip('/')}/v2/models/{model}{suffix}"
    response = _get(url)
    if response.status_code != 200:
        raise _http_error(model, url, response)
    try:
        metadata = response.json()
    except ValueError:
        raise LoadTestError(f"GET {url} did not return JSON metadata") from None
    return model_info(model, metadata.get("inputs") or [], metadata.get("outputs") or [])


def probe_tfs_rest(host: str, model: str, version: str | None) -> ModelInfo:
    """TF Serving's status endpoint only says the model exists; instances need no tensor names."""
    suffix = f"/versions/{version}" if version else ""
    url = f"{host.rstrip('/')}/v1/models/{model}{suffix}"
    response = _get(url)
    if response.status_code != 200:
        raise _http_error(model, url, response)
    return ModelInfo("", "")


def probe_v2_grpc(host: str, model: str, version: str | None) -> ModelInfo:
    import grpc

    from gateway.protos import open_inference_grpc_pb2 as pb
    from gateway.protos import open_inference_grpc_pb2_grpc as pb_grpc

    target = host.removeprefix("grpc://").rstrip("/")
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        request = pb.ModelMetadataRequest(name=model, version=version or "")
        try:
            metadata = stub.ModelMetadata(request, timeout=PROBE_TIMEOUT_SECONDS)
        except grpc.RpcError as exc:
            code = exc.code() if callable(getattr(exc, "code", None)) else None
            details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
            if code == grpc.StatusCode.NOT_FOUND:
                raise LoadTestError(f"unknown model {model!r}: ModelMetadata at {target} said {details}") from None
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise LoadTestError(f"cannot reach gRPC {target}: {details}") from None
            raise LoadTestError(f"ModelMetadata at {target} failed: {details}") from None
    inputs = [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in metadata.inputs]
    outputs = [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in metadata.outputs]
    return model_info(model, inputs, outputs)


def probe(protocol: Protocol, host: str, model: str, version: str | None) -> ModelInfo:
    """Run the checks for ``protocol``; raises :class:`LoadTestError` with the reason."""
    check_host(protocol, host)
    if protocol is Protocol.GRPC:
        return probe_v2_grpc(host, model, version)
    if protocol is Protocol.TFS:
        return probe_tfs_rest(host, model, version)
    return probe_v2_rest(host, model, version)
