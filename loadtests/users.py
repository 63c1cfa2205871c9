"""Locust users, one per protocol; each sends requests drawn from the run's input pool and checks every answer.

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
from locust import User, task
from locust.contrib.fasthttp import FastHttpUser, ResponseContextManager

from loadtests import wire
from loadtests.config import RunConfig
from loadtests.tensors import Request, Sampler
from loadtests.wire import Output, WrongAnswer
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


def _judge(workload: Workload, sampler: Sampler, request: Request, outputs: dict[str, Output]) -> None:
    """Raise :class:`WrongAnswer` unless ``outputs`` is the right answer to ``request``."""
    batch = workload.config.batch_size if workload.config.batched else 1
    workload.checker.check(outputs, batch, sampler.expected(request), sampler.labels(request))


class PoolHttpUser(FastHttpUser):
    """Shared loop of the HTTP users: pace, send one request from the pool, check the answer."""

    abstract = True
    network_timeout = REQUEST_TIMEOUT_SECONDS
    connection_timeout = REQUEST_TIMEOUT_SECONDS

    def on_start(self) -> None:
        self.workload = _workload(self)
        self.sampler: Sampler = self.workload.sampler()

    @task
    def infer(self) -> None:
        request = self.sampler.next()
        body, headers = self.encode(request)
        context = _pace(self.workload)
        with self.client.post(
            self.path(),
            data=cast(Any, body),  # Locust's annotation says str, but it sends bytes as they are
            headers=headers,
            name=self.workload.config.request_name,
            catch_response=True,
            context=context,
        ) as response:
            self.judge(response, request)

    def judge(self, response: ResponseContextManager, request: Request) -> None:
        if response.status_code != 200:
            text = (response.text or "")[:200] if response.content else ""
            response.failure(f"HTTP {response.status_code}: {text}".strip())  # type: ignore[no-untyped-call]
            return
        try:
            _judge(self.workload, self.sampler, request, self.decode(response))
        except WrongAnswer as exc:
            response.failure(str(exc))  # type: ignore[no-untyped-call]
        else:
            response.success()  # type: ignore[no-untyped-call]

    def path(self) -> str:
        raise NotImplementedError

    def encode(self, request: Request) -> tuple[bytes, dict[str, str]]:
        raise NotImplementedError

    def decode(self, response: ResponseContextManager) -> dict[str, Output]:
        raise NotImplementedError


def _header(response: ResponseContextManager, name: str) -> str | None:
    headers = response.headers
    value = headers.get(name) if headers is not None else None
    return value[0] if isinstance(value, list) else value


class V2RestUser(PoolHttpUser):
    """Open Inference Protocol REST with JSON tensors."""

    def path(self) -> str:
        return v2_infer_path(self.workload.config)

    def encode(self, request: Request) -> tuple[bytes, dict[str, str]]:
        body = wire.v2_json_body(request.tensors, self.workload.config.inputs)
        return body, {"Content-Type": "application/json"}

    def decode(self, response: ResponseContextManager) -> dict[str, Output]:
        return wire.decode_v2(response.content or b"", None)


class V2BinaryUser(PoolHttpUser):
    """Open Inference Protocol REST with the binary tensor extension both ways."""

    def path(self) -> str:
        return v2_infer_path(self.workload.config)

    def encode(self, request: Request) -> tuple[bytes, dict[str, str]]:
        body, header_length = wire.v2_binary_body(request.tensors, self.workload.config.inputs)
        return body, {"Content-Type": "application/octet-stream", wire.HEADER_LENGTH: str(header_length)}

    def decode(self, response: ResponseContextManager) -> dict[str, Output]:
        return wire.decode_v2(response.content or b"", _header(response, wire.HEADER_LENGTH))


class TfsRestUser(PoolHttpUser):
    """TF Serving REST ``:predict`` in the columnar format (named ``inputs``)."""

    def path(self) -> str:
        return tfs_predict_path(self.workload.config)

    def encode(self, request: Request) -> tuple[bytes, dict[str, str]]:
        return wire.tfs_rest_body(request.tensors, self.workload.config.inputs), {"Content-Type": "application/json"}

    def decode(self, response: ResponseContextManager) -> dict[str, Output]:
        return wire.decode_tfs_rest(response.content or b"", self.workload.config.outputs)


def grpc_target(host: str) -> str:
    """``grpc://host:port`` (or plain ``host:port``) as grpcio's target string."""
    return host.removeprefix("grpc://").rstrip("/")


class PoolGrpcUser(User):
    """Shared loop of the gRPC users; each call is reported through ``environment.events.request``."""

    abstract = True

    def on_start(self) -> None:
        self.workload = _workload(self)
        self.sampler = self.workload.sampler()
        self.channel = grpc.insecure_channel(grpc_target(self.host or ""))
        self.call = self.make_call(self.channel)

    def on_stop(self) -> None:
        self.channel.close()

    @task
    def infer(self) -> None:
        request = self.sampler.next()
        message = self.encode(request)
        context = _pace(self.workload)
        exception: Exception | None = None
        started = time.perf_counter()
        try:
            response = self.call(message, timeout=REQUEST_TIMEOUT_SECONDS)
        except grpc.RpcError as exc:
            response, exception = None, GrpcFailure(_grpc_status(exc))
        # Like Locust's HTTP clients, time the call only; checking the answer is not the server's latency.
        elapsed_ms = 1000.0 * (time.perf_counter() - started)
        if response is not None:
            try:
                _judge(self.workload, self.sampler, request, self.decode(response))
            except WrongAnswer as exc:
                exception = exc
        self.environment.events.request.fire(
            request_type="grpc",
            name=self.workload.config.request_name,
            response_time=elapsed_ms,
            response_length=response.ByteSize() if response is not None else 0,
            exception=exception,
            context=context,
        )

    def make_call(self, channel: grpc.Channel) -> Any:
        raise NotImplementedError

    def encode(self, request: Request) -> Any:
        raise NotImplementedError

    def decode(self, response: Any) -> dict[str, Output]:
        raise NotImplementedError


class V2GrpcUser(PoolGrpcUser):
    """Open Inference Protocol gRPC ``ModelInfer`` with ``raw_input_contents``."""

    def make_call(self, channel: grpc.Channel) -> Any:
        from gateway.protos import open_inference_grpc_pb2_grpc

        return open_inference_grpc_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer  # type: ignore[no-untyped-call]

    def encode(self, request: Request) -> Any:
        config = self.workload.config
        return wire.v2_grpc_request(config.model, config.version, request.tensors, config.inputs)

    def decode(self, response: Any) -> dict[str, Output]:
        return wire.decode_v2_grpc(response)


class TfsGrpcUser(PoolGrpcUser):
    """TF Serving gRPC ``PredictionService.Predict`` with ``TensorProto`` inputs (no TensorFlow import)."""

    def make_call(self, channel: grpc.Channel) -> Any:
        from gateway.protos.tfserving.tensorflow_serving.apis import prediction_service_pb2_grpc

        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict  # type: ignore[no-untyped-call]

    def encode(self, request: Request) -> Any:
        config = self.workload.config
        return wire.tfs_grpc_request(config.model, config.version, request.tensors, config.inputs)

    def decode(self, response: Any) -> dict[str, Output]:
        return wire.decode_tfs_grpc(response)


class GrpcFailure(Exception):
    """A gRPC call that ended with a status other than OK."""


def _grpc_status(exc: grpc.RpcError) -> str:
    """A short, stable failure message: the status code name and the server's details."""
    code = getattr(exc, "code", None)
    details = getattr(exc, "details", None)
    if callable(code) and callable(details):
        return f"gRPC {getattr(code(), 'name', code())}: {details()}"
    return f"gRPC error: {exc}"
