"""The TF Serving backend against a second gateway process playing TF Serving.

The real ``tensorflow_model_server`` cannot be installed on this machine, so the TF Serving
side is a separate gateway process serving the Keras SavedModel with the ``tensorflow``
backend and speaking TF Serving's gRPC and REST APIs (:mod:`gateway.protocols.tfserving.grpc_api`,
:mod:`gateway.protocols.tfserving.rest_api`). The gateway under test (in this process) reaches it
only through ``backend: tfserving``. ``test_tfserving_contract.py`` runs the same backend
against a real TF Serving when one is available.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from gateway.backends.onnxruntime import OnnxRuntimeBackend
from gateway.backends.tensorflow import TensorFlowBackend
from gateway.backends.tflite import TFLiteBackend
from gateway.backends.tfserving import TFServingBackend, array_from_proto
from gateway.core.backend import BackendRegistry, ModelVersionSource
from gateway.core.codec.datatypes import v2_datatype
from gateway.core.config import ModelConfig
from gateway.core.dataplane import DataPlane
from gateway.core.errors import BackendError, BackendUnavailable, ConfigError, InvalidInput, ModelNotReady
from gateway.core.models import ModelManager
from gateway.core.repository import ModelRepository
from gateway.core.types import InferRequest, Tensor
from gateway.metrics import Metrics
from gateway.tensorproto import tensor_to_content_proto
from tests.backends.keras_models import KerasArtifacts, digit_images, shared_artifacts, write_version
from tests.harness import Served, infer_named, loaded, metadata_of

pytestmark = pytest.mark.anyio

_STARTUP_SECONDS = 240.0
_MAX_BODY = 64 * 1024 * 1024
_IMAGE = "inputs: [{name: image, datatype: FP32, shape: [-1, 8, 8, 1]}]\n"
_PROBS = "outputs: [{name: output_0, datatype: FP32, shape: [-1, 10]}]\n"


def registry() -> BackendRegistry:
    reg = BackendRegistry()
    for backend in (OnnxRuntimeBackend, TFLiteBackend, TensorFlowBackend, TFServingBackend):
        reg.register(backend)
    return reg


# -- codec: TensorProto <-> numpy, no server needed ---------------------------------------


@pytest.mark.parametrize(
    "array",
    [
        np.arange(6, dtype=np.float32).reshape(2, 3),
        np.array([[1.5, -0.25]], np.float16),
        np.array([1e-300, 2.5], np.float64),
        np.array([[-128, 127]], np.int8),
        np.array([0, 255], np.uint8),
        np.array([-(2**63), 2**63 - 1], np.int64),
        np.array([0, 2**64 - 1], np.uint64),
        np.array([[True], [False]]),
        np.array([[b"a", b"\xff\x00"]], dtype=object),
        np.zeros((0, 3), np.float32),
    ],
    ids=lambda a: str(a.dtype),
)
def test_tensor_proto_round_trip(array: np.ndarray) -> None:
    back = array_from_proto("t", tensor_to_content_proto(array, v2_datatype(array.dtype)))
    assert back.dtype == array.dtype and back.shape == array.shape and back.tolist() == array.tolist()


def test_typed_value_fields_and_broadcast_are_decoded() -> None:
    from gateway.protos.tfserving.tensorflow.core.framework import tensor_pb2, tensor_shape_pb2

    def shape(*dims: int) -> tensor_shape_pb2.TensorShapeProto:
        return tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims])

    floats = tensor_pb2.TensorProto(dtype="DT_FLOAT", tensor_shape=shape(2, 2), float_val=[1, 2, 3, 4])
    assert array_from_proto("f", floats).tolist() == [[1, 2], [3, 4]]
    filled = tensor_pb2.TensorProto(dtype="DT_INT32", tensor_shape=shape(3), int_val=[7])
    assert array_from_proto("i", filled).tolist() == [7, 7, 7]
    half_bits = np.array([1.5, -2.0], np.float16).view(np.uint16).tolist()
    halves = tensor_pb2.TensorProto(dtype="DT_HALF", tensor_shape=shape(2), half_val=half_bits)
    assert array_from_proto("h", halves).tolist() == [1.5, -2.0]
    short = tensor_pb2.TensorProto(dtype="DT_FLOAT", tensor_shape=shape(3), float_val=[1, 2])
    with pytest.raises(BackendError, match="unreadable tensor: input 'f': float_val has 2 values; the shape needs 3"):
        array_from_proto("f", short)


# -- a second gateway in the TF Serving role ------------------------------------------------


@dataclass(frozen=True)
class TFServingRole:
    grpc_address: str
    rest_url: str


def serve_tf_serving_role(repo: str) -> None:
    """Entry point of the TF Serving stand-in process; stops when its stdin closes."""
    asyncio.run(_serve_role(Path(repo)))


async def _serve_role(repo: Path) -> None:
    import grpc
    import uvicorn

    from gateway.protocols.http_app import HttpApp
    from gateway.protocols.mounts import ProtocolContext, mount_all

    metrics = Metrics()
    manager = ModelManager(ModelRepository(repo), registry(), metrics)
    plane = DataPlane(manager, metrics)
    tf_serving_only = ("gateway.protocols.tfserving.rest_api", "gateway.protocols.tfserving.grpc_api")
    mounts = mount_all(ProtocolContext(plane, metrics, _MAX_BODY), tf_serving_only)
    grpc_server = grpc.aio.server()
    for install in mounts.grpc_services:
        install(grpc_server)
    grpc_port = grpc_server.add_insecure_port("127.0.0.1:0")
    await grpc_server.start()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = HttpApp(mounts.http_routes, mounts.http_fast_paths)
    http = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    http_task = asyncio.create_task(http.serve([sock]))
    await manager.load_all()
    print(f"tfserving-role grpc=127.0.0.1:{grpc_port} http=http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    await asyncio.to_thread(sys.stdin.read)
    http.should_exit = True
    await http_task
    await grpc_server.stop(1)
    await manager.unload_all()


@pytest.fixture(scope="module")
def keras_artifacts(tmp_path_factory: pytest.TempPathFactory) -> KerasArtifacts:
    return shared_artifacts(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def tf_serving_role(
    keras_artifacts: KerasArtifacts, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TFServingRole]:
    repo = tmp_path_factory.mktemp("tfs_role_repo")
    write_version(repo, "digits_tf", 1, "tensorflow", keras_artifacts.savedmodel)
    (repo / "digits_tf" / "config.yaml").write_text("max_queue_size: 64\n", encoding="utf-8")
    code = f"from tests.backends.test_tfserving import serve_tf_serving_role; serve_tf_serving_role({str(repo)!r})"
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        line = _read_line(process.stdout, _STARTUP_SECONDS)
        assert line.startswith("tfserving-role "), f"the TF Serving stand-in did not start: {line!r}"
        fields = dict(part.split("=", 1) for part in line.split()[1:])
        yield TFServingRole(grpc_address=fields["grpc"], rest_url=fields["http"])
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


def _read_line(stream: object, timeout: float) -> str:
    """One line from the child's stdout, or '' if none arrives within ``timeout``."""
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)  # type: ignore[attr-defined]
    reader.start()
    reader.join(timeout)
    return box[0].strip() if box else ""


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def front_repo(keras_artifacts: KerasArtifacts, tf_serving_role: TFServingRole, tmp_path_factory: pytest.TempPathFactory
               ) -> Path:  # fmt: skip
    """The gateway under test: the same model via TF Serving (gRPC, REST), ONNX Runtime and TFLite."""
    repo = tmp_path_factory.mktemp("tfs_front_repo")
    grpc_params = f"parameters: {{address: '{tf_serving_role.grpc_address}', model_name: digits_tf}}\n"
    rest_params = f"parameters: {{protocol: rest, url: '{tf_serving_role.rest_url}', model_name: digits_tf}}\n"
    (repo / "digits").mkdir()
    for version, params in ((1, grpc_params), (2, rest_params)):
        (repo / "digits" / str(version)).mkdir()
        (repo / "digits" / str(version) / "config.yaml").write_text(f"backend: tfserving\n{params}", encoding="utf-8")
    write_version(repo, "digits", 3, "onnxruntime", keras_artifacts.onnx)
    write_version(repo, "digits", 4, "tflite", keras_artifacts.tflite)
    (repo / "digits" / "config.yaml").write_text("version_policy: {all: true}\n", encoding="utf-8")
    loose = "inputs: [{name: image, datatype: FP32, shape: [-1, -1, -1, 1]}]\n" + _PROBS
    for name, params in (("loose", grpc_params), ("loose_rest", rest_params)):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.yaml").write_text(f"backend: tfserving\n{loose}{params}", encoding="utf-8")
    missing = f"parameters: {{address: '{tf_serving_role.grpc_address}', model_name: nope}}\n"
    (repo / "absent" / "1").mkdir(parents=True)
    (repo / "absent" / "config.yaml").write_text(f"backend: tfserving\n{_IMAGE}{_PROBS}{missing}", encoding="utf-8")
    (repo / "absent_undeclared" / "1").mkdir(parents=True)
    (repo / "absent_undeclared" / "config.yaml").write_text(f"backend: tfserving\n{missing}", encoding="utf-8")
    return repo


@pytest.fixture(scope="module")
async def served_front(front_repo: Path) -> AsyncIterator[Served]:
    async with loaded(front_repo, registry()) as served:
        yield served


@pytest.fixture(scope="module")
def front(served_front: Served) -> DataPlane:
    return served_front.dataplane


async def infer(plane: DataPlane, model: str, version: str | None, images: np.ndarray) -> np.ndarray:
    response = await infer_named(plane, InferRequest(model, [Tensor("image", "FP32", images)], model_version=version))
    (output,) = response.outputs
    return output.data


@pytest.mark.frameworks
@pytest.mark.e2e
@pytest.mark.parametrize("batch", [1, 32])
async def test_same_answer_through_tfserving_onnxruntime_and_tflite(front: DataPlane, batch: int) -> None:
    images = digit_images(batch, offset=200)
    via_grpc, via_rest, onnx, tflite = [await infer(front, "digits", v, images) for v in ("1", "2", "3", "4")]
    assert via_grpc.shape == (batch, 10) and via_grpc.dtype == np.float32
    for other in (via_rest, onnx, tflite):
        np.testing.assert_allclose(via_grpc, other, atol=1e-5)


@pytest.mark.frameworks
@pytest.mark.e2e
async def test_signature_is_read_from_tf_serving_metadata(front: DataPlane) -> None:
    for version in ("1", "2"):
        meta = metadata_of(front, "digits", version)
        assert [(t.name, t.datatype, t.shape) for t in meta.inputs] == [("image", "FP32", (-1, 8, 8, 1))]
        assert [(t.name, t.datatype, t.shape) for t in meta.outputs] == [("output_0", "FP32", (-1, 10))]


@pytest.mark.frameworks
@pytest.mark.e2e
async def test_health_follows_tf_serving_model_status(served_front: Served) -> None:
    for model in ("digits", "absent"):
        backend = served_front.manager.resolve(model, "1").backend
        assert backend is not None
        assert await backend.health() is (model == "digits")


@pytest.mark.frameworks
@pytest.mark.e2e
async def test_tf_serving_errors_map_to_gateway_errors(front: DataPlane) -> None:
    with pytest.raises(ModelNotReady, match="TF Serving model 'nope'"):
        await infer(front, "absent", None, digit_images(1))
    for model in ("loose", "loose_rest"):
        with pytest.raises(InvalidInput, match="shape"):
            await infer(front, model, None, np.zeros((1, 4, 4, 1), np.float32))
    (row,) = [r for r in front.repository_index() if r["name"] == "absent_undeclared"]
    assert row["state"] == "UNAVAILABLE" and "cannot read its signature from TF Serving" in row["reason"]


# -- no server at all ------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
async def test_unreachable_tf_serving_gives_503_and_unhealthy(tmp_path: Path, protocol: str) -> None:
    port = _closed_port()
    endpoint = {"address": f"127.0.0.1:{port}"} if protocol == "grpc" else {"url": f"http://127.0.0.1:{port}"}
    config = ModelConfig.model_validate(
        {
            "backend": "tfserving",
            "inputs": [{"name": "image", "datatype": "FP32", "shape": [-1, 8, 8, 1]}],
            "outputs": [{"name": "output_0", "datatype": "FP32", "shape": [-1, 10]}],
            "timeout_seconds": 5,
            "parameters": {"protocol": protocol, **endpoint},
        }
    )
    backend = TFServingBackend(ModelVersionSource("digits", 1, config, tmp_path))
    await backend.load()
    try:
        assert not await backend.health()
        with pytest.raises(BackendUnavailable, match=r"unreachable|cannot connect"):
            await backend.infer({"image": digit_images(1)}, ["output_0"])
    finally:
        await backend.unload()


def test_parameters_need_the_endpoint_of_their_protocol(tmp_path: Path) -> None:
    for params, message in (
        ({}, "protocol grpc needs address"),
        ({"protocol": "rest"}, "protocol rest needs url"),
        ({"protocol": "soap", "address": "x:1"}, "parameters: protocol: Input should be 'grpc' or 'rest'"),
    ):
        config = ModelConfig.model_validate({"backend": "tfserving", "parameters": params})
        with pytest.raises(ConfigError, match=message):
            TFServingBackend(ModelVersionSource("m", 1, config, tmp_path))
