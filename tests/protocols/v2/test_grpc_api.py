"""The V2 gRPC service end to end in-process: a real grpc.aio server on a free port, real ONNX models."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from demo.digits import load_digits_split
from gateway.core.codec.datatypes import V2_TO_NUMPY
from gateway.core.dataplane import DataPlane
from gateway.core.errors import (
    BackendError,
    BackendUnavailable,
    DeadlineExceeded,
    GatewayError,
    InvalidInput,
    ModelNotFound,
    Overloaded,
    PayloadTooLarge,
    Unsupported,
)
from gateway.core.types import InferRequest, RequestedOutput, Tensor
from gateway.metrics import Metrics
from gateway.protocols.grpc_errors import INTERNAL_DETAILS, STATUS_BY_KIND, status_on_error
from gateway.protocols.grpc_server import GrpcLimits, bounded_server_options
from gateway.protocols.mounts import Mounts
from gateway.protocols.v2.grpc_api import SERVICE_NAME
from gateway.protocols.v2.grpc_codec import ModelInferRequestConverter, ModelInferResponseConverter
from gateway.protos import open_inference_grpc_pb2 as pb
from gateway.protos import open_inference_grpc_pb2_grpc as pb_grpc
from tests.harness import grpc_served, loaded
from tests.onnx_models import write_slow_model

pytestmark = pytest.mark.anyio

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
#: For a MatMul chain (tests.onnx_models.write_slow_model): "slow" is 12 x 1500^3 (about a second on one
#: thread), so a second request reaches the gate while the first is still in flight even on a busy
#: machine; "hasty" is 6 x 1500^3 (about half a second) against a 10 ms deadline, so even a fast machine
#: cannot answer in time.
SLOW_CONFIG = """\
backend: onnxruntime
max_queue_size: 1
timeout_seconds: {timeout}
parameters: {{graph_optimization: disable}}
"""


@dataclass
class Gateway:
    stub: pb_grpc.GRPCInferenceServiceStub
    health_stub: health_pb2_grpc.HealthStub
    mounts: Mounts
    dataplane: DataPlane
    metrics: Metrics


@asynccontextmanager
async def serve(repo: Path, max_message_bytes: int = 64 * 1024 * 1024) -> AsyncIterator[Gateway]:
    """Load ``repo``, serve it over gRPC on a free port and yield connected stubs."""
    async with loaded(repo) as served, grpc_served(served, max_message_bytes) as (channel, mounts):
        yield Gateway(
            pb_grpc.GRPCInferenceServiceStub(channel),  # type: ignore[no-untyped-call]
            health_pb2_grpc.HealthStub(channel),
            mounts,
            served.dataplane,
            served.metrics,
        )


@pytest.fixture
def repo(mixed_repo: Path) -> Path:
    """digits_mlp, the every-datatype identity model ``types``, ``broken`` (bad config) and ``corrupt`` (bad file)."""
    corrupt = mixed_repo / "corrupt"
    (corrupt / "1").mkdir(parents=True)
    (corrupt / "1" / "model.onnx").write_bytes(b"not an onnx model")
    (corrupt / "config.yaml").write_text("backend: onnxruntime\n", encoding="utf-8")
    return mixed_repo


@pytest.fixture
async def gateway(repo: Path) -> AsyncIterator[Gateway]:
    async with serve(repo) as gw:
        yield gw


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return load_digits_split()[2][:5]


def digits_request(pixels: np.ndarray, **fields: Any) -> pb.ModelInferRequest:
    request = InferRequest("digits_mlp", [Tensor("pixels", "FP32", pixels)], **fields)
    return ModelInferRequestConverter.from_types(request)


async def rpc_error(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


# -- health and metadata -------------------------------------------------------------------


async def test_server_live_ready_and_metadata(gateway: Gateway) -> None:
    assert (await gateway.stub.ServerLive(pb.ServerLiveRequest())).live
    assert (await gateway.stub.ServerReady(pb.ServerReadyRequest())).ready
    metadata = await gateway.stub.ServerMetadata(pb.ServerMetadataRequest())
    assert metadata.name == "modelgate" and metadata.version
    assert "binary_tensor_data" in metadata.extensions


async def test_model_ready(gateway: Gateway) -> None:
    assert (await gateway.stub.ModelReady(pb.ModelReadyRequest(name="digits_mlp"))).ready
    assert (await gateway.stub.ModelReady(pb.ModelReadyRequest(name="digits_mlp", version="1"))).ready
    assert not (await gateway.stub.ModelReady(pb.ModelReadyRequest(name="broken"))).ready
    assert not (await gateway.stub.ModelReady(pb.ModelReadyRequest(name="corrupt"))).ready
    unknown = await rpc_error(gateway.stub.ModelReady(pb.ModelReadyRequest(name="nope")))
    assert unknown.code() == grpc.StatusCode.NOT_FOUND and "nope" in unknown.details()
    version = await rpc_error(gateway.stub.ModelReady(pb.ModelReadyRequest(name="digits_mlp", version="7")))
    assert version.code() == grpc.StatusCode.NOT_FOUND and "7" in version.details()


async def test_model_metadata(gateway: Gateway) -> None:
    metadata = await gateway.stub.ModelMetadata(pb.ModelMetadataRequest(name="digits_mlp"))
    assert (metadata.name, list(metadata.versions), metadata.platform) == ("digits_mlp", ["1"], "onnxruntime_onnx")
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [("pixels", "FP32", [-1, 64])]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [("probs", "FP32", [-1, 10])]
    versioned = await gateway.stub.ModelMetadata(pb.ModelMetadataRequest(name="digits_mlp", version="1"))
    assert versioned == metadata


@pytest.mark.parametrize(
    ("name", "version", "code"),
    [
        ("nope", "", grpc.StatusCode.NOT_FOUND),
        ("digits_mlp", "2", grpc.StatusCode.NOT_FOUND),
        ("broken", "", grpc.StatusCode.UNAVAILABLE),
        ("corrupt", "", grpc.StatusCode.UNAVAILABLE),
    ],
)
async def test_model_metadata_errors(gateway: Gateway, name: str, version: str, code: grpc.StatusCode) -> None:
    error = await rpc_error(gateway.stub.ModelMetadata(pb.ModelMetadataRequest(name=name, version=version)))
    assert error.code() == code
    assert name in error.details() and "Traceback" not in error.details()


async def test_health_follows_readiness_and_graceful_shutdown(gateway: Gateway) -> None:
    async def status(service: str) -> int:
        return int((await gateway.health_stub.Check(health_pb2.HealthCheckRequest(service=service))).status)

    assert await status("") == SERVING
    assert await status(SERVICE_NAME) == SERVING
    unknown = await rpc_error(gateway.health_stub.Check(health_pb2.HealthCheckRequest(service="other.Service")))
    assert unknown.code() == grpc.StatusCode.NOT_FOUND
    gateway.dataplane.draining = True
    assert await status(SERVICE_NAME) == NOT_SERVING
    gateway.dataplane.draining = False
    assert await status(SERVICE_NAME) == SERVING
    for hook in gateway.mounts.on_drain:
        await hook()
    assert await status("") == NOT_SERVING
    assert await status(SERVICE_NAME) == NOT_SERVING


# -- inference -----------------------------------------------------------------------------


async def test_raw_infer_matches_onnxruntime(gateway: Gateway, repo: Path, digits: np.ndarray) -> None:
    reply = await gateway.stub.ModelInfer(digits_request(digits, id="req-1"))
    assert (reply.model_name, reply.model_version, reply.id) == ("digits_mlp", "1", "req-1")
    assert [(o.name, o.datatype, list(o.shape)) for o in reply.outputs] == [("probs", "FP32", [5, 10])]
    assert len(reply.raw_output_contents) == 1
    probs = ModelInferResponseConverter.to_types(reply).outputs[0].data
    session = ort.InferenceSession(str(repo / "digits_mlp" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    (expected,) = session.run(["probs"], {"pixels": digits})
    assert np.allclose(probs, expected, rtol=1e-5, atol=1e-6)


async def test_typed_fp32_contents_and_explicit_version(gateway: Gateway, digits: np.ndarray) -> None:
    raw = await gateway.stub.ModelInfer(digits_request(digits))
    typed_request = ModelInferRequestConverter.from_types(
        InferRequest("digits_mlp", [Tensor("pixels", "FP32", digits)], model_version="1"), raw=False
    )
    assert not typed_request.raw_input_contents and len(typed_request.inputs[0].contents.fp32_contents) == 5 * 64
    typed = await gateway.stub.ModelInfer(typed_request)
    assert typed.model_version == "1" and typed.id == ""
    assert typed.raw_output_contents == raw.raw_output_contents


async def test_every_datatype_and_requested_output_subset(gateway: Gateway) -> None:
    rng = np.random.default_rng(0)
    inputs = []
    for datatype, dtype in V2_TO_NUMPY.items():
        if datatype == "BYTES":
            data = np.array([[b"a", b"\x00\x7f"], [b"", "é".encode()]], dtype=object)
        elif datatype == "BOOL":
            data = rng.integers(0, 2, (2, 2)).astype(bool)
        else:
            data = (rng.standard_normal((2, 2)) * 100).astype(dtype)
        inputs.append(Tensor(f"in_{datatype}", datatype, data))
    request = InferRequest("types", inputs)
    full = ModelInferResponseConverter.to_types(
        await gateway.stub.ModelInfer(ModelInferRequestConverter.from_types(request))
    )
    assert [t.name for t in full.outputs] == [f"out_{t.datatype}" for t in inputs]
    for sent, received in zip(inputs, full.outputs, strict=True):
        assert received.datatype == sent.datatype and received.data.tolist() == sent.data.tolist()
    request.outputs = [RequestedOutput("out_FP16"), RequestedOutput("out_BYTES")]
    subset = await gateway.stub.ModelInfer(ModelInferRequestConverter.from_types(request))
    assert [o.name for o in subset.outputs] == ["out_FP16", "out_BYTES"] and len(subset.raw_output_contents) == 2


async def test_good_model_serves_beside_broken_ones(gateway: Gateway, digits: np.ndarray) -> None:
    for name, code in (("broken", grpc.StatusCode.UNAVAILABLE), ("corrupt", grpc.StatusCode.UNAVAILABLE)):
        request = digits_request(digits)
        request.model_name = name
        error = await rpc_error(gateway.stub.ModelInfer(request))
        assert error.code() == code and name in error.details()
    reply = await gateway.stub.ModelInfer(digits_request(digits))
    assert list(reply.outputs[0].shape) == [5, 10]


def _pixels_entry(request: pb.ModelInferRequest) -> pb.ModelInferRequest.InferInputTensor:
    return request.inputs[0]


Mutation = Callable[[pb.ModelInferRequest], None]


def _set(**fields: Any) -> Mutation:
    def mutate(request: pb.ModelInferRequest) -> None:
        for key, value in fields.items():
            setattr(request, key, value)

    return mutate


def _rename_input(request: pb.ModelInferRequest) -> None:
    _pixels_entry(request).name = "pixelz"


def _wrong_datatype(request: pb.ModelInferRequest) -> None:
    _pixels_entry(request).datatype = "FP64"
    request.raw_input_contents[0] = np.zeros((2, 64), np.float64).tobytes()


def _wrong_shape(request: pb.ModelInferRequest) -> None:
    _pixels_entry(request).shape[:] = [2, 32, 2]


def _short_raw(request: pb.ModelInferRequest) -> None:
    request.raw_input_contents[0] = request.raw_input_contents[0][:-1]


def _mixed(request: pb.ModelInferRequest) -> None:
    _pixels_entry(request).contents.fp32_contents.extend([0.0] * 128)


def _extra_raw(request: pb.ModelInferRequest) -> None:
    request.raw_input_contents.append(b"")


def _fp16_typed(request: pb.ModelInferRequest) -> None:
    del request.raw_input_contents[:]
    _pixels_entry(request).datatype = "FP16"
    _pixels_entry(request).contents.fp32_contents.extend([0.0] * 128)


def _no_inputs(request: pb.ModelInferRequest) -> None:
    del request.inputs[:]
    del request.raw_input_contents[:]


def _negative_dim(request: pb.ModelInferRequest) -> None:
    _pixels_entry(request).shape[:] = [-2, 64]


def _typed_count(request: pb.ModelInferRequest) -> None:
    del request.raw_input_contents[:]
    _pixels_entry(request).contents.fp32_contents.extend([0.0] * 100)


def _unknown_output(request: pb.ModelInferRequest) -> None:
    request.outputs.add(name="logits")


def _over_max_batch(request: pb.ModelInferRequest) -> None:
    _pixels_entry(request).shape[:] = [1025, 64]
    request.raw_input_contents[0] = np.zeros((1025, 64), np.float32).tobytes()


INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("mutate", "code", "named"),
    [
        pytest.param(_set(model_name="nope"), grpc.StatusCode.NOT_FOUND, "nope", id="unknown-model"),
        pytest.param(_set(model_version="9"), grpc.StatusCode.NOT_FOUND, "9", id="unknown-version"),
        pytest.param(
            _set(model_version="v1"),
            INVALID,
            "version 'v1' of model 'digits_mlp' is not valid",
            id="non-numeric-version",
        ),
        pytest.param(_set(model_name=""), INVALID, "a model name is required", id="no-model-name"),
        pytest.param(_rename_input, INVALID, "pixelz", id="unknown-input"),
        pytest.param(_wrong_datatype, INVALID, "pixels", id="wrong-datatype"),
        pytest.param(_wrong_shape, INVALID, "pixels", id="wrong-shape"),
        pytest.param(_short_raw, INVALID, "pixels", id="raw-byte-count"),
        pytest.param(_mixed, INVALID, "pixels", id="raw-and-typed"),
        pytest.param(_extra_raw, INVALID, "raw_input_contents", id="raw-entry-count"),
        pytest.param(_fp16_typed, INVALID, "pixels", id="fp16-typed"),
        pytest.param(_no_inputs, INVALID, "pixels", id="missing-input"),
        pytest.param(_negative_dim, INVALID, "pixels", id="negative-dim"),
        pytest.param(_typed_count, INVALID, "pixels", id="typed-element-count"),
        pytest.param(_unknown_output, INVALID, "logits", id="unknown-output"),
        pytest.param(_over_max_batch, INVALID, "max_batch_size", id="over-max-batch"),
    ],
)
async def test_infer_errors_name_the_problem(
    gateway: Gateway, digits: np.ndarray, mutate: Mutation, code: grpc.StatusCode, named: str
) -> None:
    request = digits_request(digits[:2])
    mutate(request)
    error = await rpc_error(gateway.stub.ModelInfer(request))
    assert error.code() == code, error.details()
    assert named in error.details()
    assert "Traceback" not in error.details()


async def test_metrics_count_by_status(gateway: Gateway, digits: np.ndarray) -> None:
    def count(model: str, version: str, status: str) -> float | None:
        labels = {"model": model, "version": version, "protocol": "grpc", "status": status}
        return gateway.metrics.registry.get_sample_value("modelgate_requests_total", labels)

    def durations(outcome: str) -> float | None:
        labels = {"model": "digits_mlp", "version": "1", "protocol": "grpc", "outcome": outcome}
        return gateway.metrics.registry.get_sample_value("modelgate_request_duration_seconds_count", labels)

    await gateway.stub.ModelInfer(digits_request(digits))
    await gateway.stub.ModelInfer(digits_request(digits))
    bad = digits_request(digits)
    _short_raw(bad)
    await rpc_error(gateway.stub.ModelInfer(bad))
    await rpc_error(gateway.stub.ModelInfer(digits_request(digits, model_version="12345")))
    unknown = digits_request(digits)
    unknown.model_name = "made_up"
    await rpc_error(gateway.stub.ModelInfer(unknown))
    broken = digits_request(digits)
    broken.model_name = "broken"
    await rpc_error(gateway.stub.ModelInfer(broken))

    assert count("digits_mlp", "1", "OK") == 2
    assert count("digits_mlp", "1", "INVALID_ARGUMENT") == 1
    assert count("digits_mlp", "", "NOT_FOUND") == 1  # a made-up version never becomes a label value
    assert count("_unknown", "", "NOT_FOUND") == 1
    assert count("broken", "", "UNAVAILABLE") == 1
    assert durations("success") == 2 and durations("client_error") == 1
    assert gateway.metrics.registry.get_sample_value("modelgate_inflight_requests", {"protocol": "grpc"}) == 0


async def test_message_over_the_limit_is_resource_exhausted(repo: Path) -> None:
    async with serve(repo, max_message_bytes=4096) as gw:
        error = await rpc_error(gw.stub.ModelInfer(digits_request(np.zeros((32, 64), np.float32))))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        reply = await gw.stub.ModelInfer(digits_request(np.zeros((2, 64), np.float32)))
        assert list(reply.outputs[0].shape) == [2, 10]


async def test_server_options_refuse_a_second_server_on_the_same_port() -> None:
    first = grpc.aio.server(options=bounded_server_options(GrpcLimits(max_message_bytes=1024)))
    port = first.add_insecure_port("127.0.0.1:0")
    await first.start()
    try:
        second = grpc.aio.server(options=bounded_server_options(GrpcLimits(max_message_bytes=1024)))
        with pytest.raises(RuntimeError):
            second.add_insecure_port(f"127.0.0.1:{port}")
        await second.stop(grace=None)
    finally:
        await first.stop(grace=None)


# -- overload and deadline on a slow model ---------------------------------------------------


@pytest.fixture
def slow_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "slow_repo"
    for name, timeout, repeats in (("slow", 60, 12), ("hasty", 0.01, 6)):
        write_slow_model(repo / name / "1" / "model.onnx", size=1500, repeats=repeats)
        (repo / name / "config.yaml").write_text(SLOW_CONFIG.format(timeout=timeout), encoding="utf-8")
    return repo


def slow_request(model: str) -> pb.ModelInferRequest:
    return ModelInferRequestConverter.from_types(
        InferRequest(model, [Tensor("x", "FP32", np.ones((1, 1), np.float32))])
    )


async def wait_until(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.002)


async def test_overload_is_resource_exhausted_with_retry_after(slow_repo: Path) -> None:
    async with serve(slow_repo) as gw:
        registry = gw.metrics.registry
        first = asyncio.ensure_future(gw.stub.ModelInfer(slow_request("slow")))
        await wait_until(lambda: registry.get_sample_value("modelgate_inflight_requests", {"protocol": "grpc"}) == 1)
        error = await rpc_error(gw.stub.ModelInfer(slow_request("slow")))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_queue_size" in error.details()
        assert ("retry-after", "1") in tuple(error.trailing_metadata() or ())
        reply = await first
        assert ModelInferResponseConverter.to_types(reply).outputs[0].data.tolist() == [[1.0]]


async def test_model_deadline_is_deadline_exceeded(slow_repo: Path) -> None:
    async with serve(slow_repo) as gw:
        error = await rpc_error(gw.stub.ModelInfer(slow_request("hasty")))
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "timeout_seconds" in error.details()
        labels = {"model": "hasty", "version": "1", "protocol": "grpc", "status": "DEADLINE_EXCEEDED"}
        assert gw.metrics.registry.get_sample_value("modelgate_requests_total", labels) == 1


# -- the error table, through a real server ----------------------------------------------------


RAISES: dict[str, Exception] = {
    "invalid": InvalidInput("bad field 'x'"),
    "not_found": ModelNotFound("no model 'm'"),
    "unavailable": BackendUnavailable("backend down"),
    "overloaded": Overloaded("queue full", retry_after=0.2),
    "deadline": DeadlineExceeded("too slow"),
    "too_large": PayloadTooLarge("body over 10 bytes"),
    "unsupported": Unsupported("no streaming"),
    "backend": BackendError("backend crashed"),
    "bug": ValueError("secret internals"),
}


@pytest.fixture
async def raising_stub() -> AsyncIterator[Callable[[str], Awaitable[object]]]:
    """A unary method ``test.Errors/Raise`` whose handler raises ``RAISES[request]`` inside status_on_error."""

    async def handler(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        async with status_on_error(context):
            raise RAISES[request.decode()]
        return b""  # pragma: no cover

    method = grpc.unary_unary_rpc_method_handler(handler)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Errors", {"Raise": method}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/test.Errors/Raise")
        yield lambda key: call(key.encode())
    await server.stop(grace=None)


def test_every_error_kind_has_a_status() -> None:
    from gateway.core.errors import ErrorKind

    assert set(STATUS_BY_KIND) == set(ErrorKind)


@pytest.mark.parametrize(
    ("key", "code"),
    [
        ("invalid", grpc.StatusCode.INVALID_ARGUMENT),
        ("not_found", grpc.StatusCode.NOT_FOUND),
        ("unavailable", grpc.StatusCode.UNAVAILABLE),
        ("overloaded", grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("deadline", grpc.StatusCode.DEADLINE_EXCEEDED),
        ("too_large", grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("unsupported", grpc.StatusCode.UNIMPLEMENTED),
        ("backend", grpc.StatusCode.INTERNAL),
        ("bug", grpc.StatusCode.INTERNAL),
    ],
)
async def test_status_on_error_maps_every_error(
    raising_stub: Callable[[str], Awaitable[object]], key: str, code: grpc.StatusCode
) -> None:
    error = await rpc_error(raising_stub(key))
    assert error.code() == code
    raised = RAISES[key]
    expected = raised.message if isinstance(raised, GatewayError) else INTERNAL_DETAILS
    assert error.details() == expected
    retry = [value for name, value in error.trailing_metadata() or () if name == "retry-after"]
    assert retry == (["1"] if key == "overloaded" else [])


async def test_route_key_metadata_keeps_a_caller_on_one_version(mixed_repo: Path) -> None:
    """``x-modelgate-route-key`` metadata: with a traffic split, one key always reaches the same version."""
    import shutil

    from gateway.core.history import DeploymentHistory
    from gateway.core.lifecycle import Lifecycle
    from gateway.core.traffic import ROUTE_KEY_HEADER

    shutil.copytree(mixed_repo / "digits_mlp" / "1", mixed_repo / "digits_mlp" / "2")
    config = mixed_repo / "digits_mlp" / "config.yaml"
    config.write_text(config.read_text().replace("version_policy: {latest: 1}", "version_policy: {all: true}"))
    async with loaded(mixed_repo) as served, grpc_served(served) as (channel, _):
        lifecycle = Lifecycle(served.manager, DeploymentHistory(mixed_repo))
        await lifecycle.set_traffic("digits_mlp", {"weights": {"1": 50, "2": 50}})
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        x = np.zeros((1, 64), np.float32)
        message = ModelInferRequestConverter.from_types(InferRequest("digits_mlp", [Tensor("pixels", "FP32", x)]))

        async def version(key: str) -> str:
            response = await stub.ModelInfer(message, metadata=((ROUTE_KEY_HEADER, key),))
            return str(response.model_version)

        for key in ("user-1", "user-2", "user-3"):
            assert len({await version(key) for _ in range(12)}) == 1, key
        reached = {await version(f"user-{i}") for i in range(40)}
    assert reached == {"1", "2"}  # distinct keys still split
