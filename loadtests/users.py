"""Locust users, one per protocol; each sends digits images and checks every answer.

The HTTP users are ``FastHttpUser`` (geventhttpclient): on this machine one Locust process reaches
about 7.7k requests/s with it against 1.7k with ``HttpUser``, and the load generator shares two cores
with the server. The gRPC user drives grpcio (made gevent-friendly by the locustfile) and reports each
call through ``environment.events.request`` like the built-in clients do. A response that arrives
but is wrong (see :mod:`loadtests.answers`) is reported as a failure with the reason.
"""

from __future__ import annotations

import time
from typing import Any, cast

import gevent
import grpc
import numpy as np
from locust import User, task
from locust.contrib.fasthttp import FastHttpUser, ResponseContextManager

from loadtests import binary
from loadtests.answers import WrongAnswer, check_answer, decode_grpc, decode_tfs, decode_v2_json
from loadtests.config import RunConfig
from loadtests.payloads import Batch, BatchSampler, tfs_body, v2_json_body
from loadtests.workload import Workload, workload_for

#: Client-side deadline per request; a hung server shows up as failures, not as a hung run.
REQUEST_TIMEOUT_SECONDS = 30.0


def _workload(user: User) -> Workload:
    options = user.environment.parsed_options
    path = getattr(options, "loadtest_config", None) if options is not None else None
    if not path:
        raise RuntimeError("run this locustfile with --loadtest-config FILE (the `modelgate loadtest` command does)")
    return workload_for(str(path))


def _pace(workload: Workload) -> dict[str, float]:
    """Open loop: sleep until this request's slot and put its lateness in the request's context.

    Closed loop: send at once (an empty context).
    """
    schedule = workload.schedule
    if schedule is None:
        return {}
    slot = schedule.claim()
    wait = slot - schedule.now()
    if wait > 0:
        gevent.sleep(wait)
    return {"lag_ms": 1000.0 * schedule.started(slot)}


def _version_suffix(config: RunConfig) -> str:
    return f"/versions/{config.version}" if config.version else ""


def v2_infer_path(config: RunConfig) -> str:
    """``/v2/models/{m}[/versions/{v}]/infer``."""
    return f"/v2/models/{config.model}{_version_suffix(config)}/infer"


def tfs_predict_path(config: RunConfig) -> str:
    """``/v1/models/{m}[/versions/{v}]:predict``."""
    return f"/v1/models/{config.model}{_version_suffix(config)}:predict"


class DigitsHttpUser(FastHttpUser):
    """Shared loop of the HTTP users: pace, send one batch, check the answer."""

    abstract = True
    network_timeout = REQUEST_TIMEOUT_SECONDS
    connection_timeout = REQUEST_TIMEOUT_SECONDS

    def on_start(self) -> None:
        self.workload = _workload(self)
        self.sampler: BatchSampler = self.workload.sampler()

    @task
    def infer(self) -> None:
        batch = self.sampler.next()
        body, headers = self.encode(batch)
        context = _pace(self.workload)
        with self.client.post(
            self.path(),
            data=cast(Any, body),  # Locust's annotation says str, but it sends bytes as they are
            headers=headers,
            name=self.workload.config.request_name,
            catch_response=True,
            context=context,
        ) as response:
            self.judge(response, batch)

    def judge(self, response: ResponseContextManager, batch: Batch) -> None:
        if response.status_code != 200:
            text = (response.text or "")[:200] if response.content else ""
            response.failure(f"HTTP {response.status_code}: {text}".strip())  # type: ignore[no-untyped-call]
            return
        try:
            check_answer(self.decode(response), batch)
        except WrongAnswer as exc:
            response.failure(str(exc))  # type: ignore[no-untyped-call]
        else:
            response.success()  # type: ignore[no-untyped-call]

    def path(self) -> str:
        raise NotImplementedError

    def encode(self, batch: Batch) -> tuple[bytes, dict[str, str]]:
        raise NotImplementedError

    def decode(self, response: ResponseContextManager) -> np.ndarray:
        raise NotImplementedError


class V2RestUser(DigitsHttpUser):
    """Open Inference Protocol REST with JSON tensors."""

    def path(self) -> str:
        return v2_infer_path(self.workload.config)

    def encode(self, batch: Batch) -> tuple[bytes, dict[str, str]]:
        config = self.workload.config
        return v2_json_body(batch, config.input_name, config.output_name), {"Content-Type": "application/json"}

    def decode(self, response: ResponseContextManager) -> np.ndarray:
        return decode_v2_json(response.content or b"", self.workload.config.output_name)


class V2BinaryUser(DigitsHttpUser):
    """Open Inference Protocol REST with the binary tensor extension both ways."""

    def path(self) -> str:
        return v2_infer_path(self.workload.config)

    def encode(self, batch: Batch) -> tuple[bytes, dict[str, str]]:
        config = self.workload.config
        body, header_length = binary.encode_request(batch, config.input_name, config.output_name)
        return body, {"Content-Type": "application/octet-stream", binary.HEADER_LENGTH: str(header_length)}

    def decode(self, response: ResponseContextManager) -> np.ndarray:
        headers = response.headers
        header = headers.get(binary.HEADER_LENGTH) if headers is not None else None
        header_length = header[0] if isinstance(header, list) else header
        return binary.decode_response(response.content or b"", header_length, self.workload.config.output_name)


class TfsRestUser(DigitsHttpUser):
    """TF Serving REST ``:predict`` in row ("instances") format."""

    def path(self) -> str:
        return tfs_predict_path(self.workload.config)

    def encode(self, batch: Batch) -> tuple[bytes, dict[str, str]]:
        return tfs_body(batch), {"Content-Type": "application/json"}

    def decode(self, response: ResponseContextManager) -> np.ndarray:
        return decode_tfs(response.content or b"")


def grpc_target(host: str) -> str:
    """``grpc://host:port`` (or plain ``host:port``) as grpcio's target string."""
    return host.removeprefix("grpc://").rstrip("/")


class V2GrpcUser(User):
    """Open Inference Protocol gRPC ``ModelInfer`` with ``raw_input_contents``."""

    def on_start(self) -> None:
        from gateway.protos import open_inference_grpc_pb2_grpc

        self.workload = _workload(self)
        self.sampler = self.workload.sampler()
        self.channel = grpc.insecure_channel(grpc_target(self.host or ""))
        self.stub = open_inference_grpc_pb2_grpc.GRPCInferenceServiceStub(self.channel)  # type: ignore[no-untyped-call]

    def on_stop(self) -> None:
        self.channel.close()

    @task
    def infer(self) -> None:
        batch = self.sampler.next()
        request = self._request(batch)
        context = _pace(self.workload)
        exception: Exception | None = None
        started = time.perf_counter()
        try:
            response = self.stub.ModelInfer(request, timeout=REQUEST_TIMEOUT_SECONDS)
        except grpc.RpcError as exc:
            response, exception = None, GrpcFailure(_grpc_status(exc))
        # Like Locust's HTTP clients, time the call only; checking the answer is not the server's latency.
        elapsed_ms = 1000.0 * (time.perf_counter() - started)
        if response is not None:
            exception = self._check(response, batch)
        self.environment.events.request.fire(
            request_type="grpc",
            name=self.workload.config.request_name,
            response_time=elapsed_ms,
            response_length=response.ByteSize() if response is not None else 0,
            exception=exception,
            context=context,
        )

    def _check(self, response: Any, batch: Batch) -> WrongAnswer | None:
        try:
            output_name = self.workload.config.output_name
            check_answer(decode_grpc(response.raw_output_contents, response.outputs, output_name), batch)
        except WrongAnswer as exc:
            return exc
        return None

    def _request(self, batch: Batch) -> Any:
        from gateway.protos import open_inference_grpc_pb2 as pb

        config = self.workload.config
        tensor = pb.ModelInferRequest.InferInputTensor(
            name=config.input_name, datatype="FP32", shape=list(batch.pixels.shape)
        )
        return pb.ModelInferRequest(
            model_name=config.model,
            model_version=config.version or "",
            inputs=[tensor],
            outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name=config.output_name)],
            raw_input_contents=[batch.pixels.astype("<f4").tobytes()],
        )


class GrpcFailure(Exception):
    """A gRPC call that ended with a status other than OK."""


def _grpc_status(exc: grpc.RpcError) -> str:
    """A short, stable failure message: the status code name and the server's details."""
    code = getattr(exc, "code", None)
    details = getattr(exc, "details", None)
    if callable(code) and callable(details):
        return f"gRPC {getattr(code(), 'name', code())}: {details()}"
    return f"gRPC error: {exc}"
