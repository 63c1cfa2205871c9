"""The data plane, the one door into the core, on a fake backend (no runtime, no protocol)."""

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from gateway.core.codec.limits import TensorLimits
from gateway.core.dataplane import DataPlane, ModelRef
from gateway.core.errors import BackendError, InvalidInput, ModelNotFound, ModelNotReady
from gateway.core.models import ModelManager, VersionState
from gateway.core.repository import ModelRepository
from gateway.core.types import InferRequest, RequestedOutput, Tensor
from tests.core.fakes import ALL_TYPES, RecordingEvents, echo_config, fake_registry, types_config, write_fake_model

pytestmark = pytest.mark.anyio


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    write_fake_model(
        tmp_path,
        "echo",
        echo_config(extra="labels: {stable: 1, canary: 2}\ndefault_version: 1\nversion_policy: {all: true}\n"),
        versions=(1, 2),
    )
    write_fake_model(tmp_path, "types", types_config())
    write_fake_model(tmp_path, "failing", echo_config(extra="parameters: {fail_infer: true}\n"))
    write_fake_model(tmp_path, "unloadable", echo_config(extra="parameters: {fail_load: cannot load it}\n"))
    write_fake_model(tmp_path, "broken", "backend: fake\nmax_batch_size: -3\n")
    return tmp_path


@pytest.fixture
async def events() -> RecordingEvents:
    return RecordingEvents()


@pytest.fixture
async def plane(repo: Path, events: RecordingEvents) -> AsyncIterator[DataPlane]:
    manager = ModelManager(ModelRepository(repo), fake_registry(), events)
    await manager.load_all()
    yield DataPlane(manager, events, TensorLimits(1 << 20))
    await manager.unload_all()


def x(rows: int = 2) -> Tensor:
    return Tensor("x", "FP32", np.arange(rows * 3, dtype=np.float32).reshape(rows, 3))


async def infer(plane: DataPlane, ref: ModelRef, request: InferRequest) -> list[Tensor]:
    return (await plane.infer(plane.resolve(ref), request)).outputs


async def test_infer_through_the_door(plane: DataPlane, events: RecordingEvents) -> None:
    target = plane.resolve(ModelRef("echo"))
    response = await plane.infer(target, InferRequest("echo", [x()], id="r1"))
    (out,) = response.outputs
    assert (out.name, out.datatype, out.shape) == ("y", "FP32", (2, 3))
    assert out.data.tolist() == x().data.tolist()
    assert response.id == "r1" and response.model_version == "1"
    assert events.named("backend_call") == [("echo", 1, "fake")]


async def test_every_datatype_passes_through(plane: DataPlane) -> None:
    values = {
        "BOOL": np.array([[True, False]]),
        "UINT64": np.array([[0, 2**64 - 1]], np.uint64),
        "INT8": np.array([[-128, 127]], np.int8),
        "INT64": np.array([[-(2**63), 2**63 - 1]], np.int64),
        "FP16": np.array([[1.5, -0.25]], np.float16),
        "FP64": np.array([[1e-300, 3.5]], np.float64),
        "BYTES": np.array([[b"hello", b"\xc3\xa9t\xc3\xa9"]], dtype=object),
    }
    for name in ("UINT8", "UINT16", "UINT32", "INT16", "INT32", "FP32"):
        values[name] = np.array([[1, 2]]).astype(np.dtype(name.lower().replace("fp", "float")))
    inputs = [Tensor(f"in_{t}", t, values[t]) for t in ALL_TYPES]
    outputs = {o.name: o for o in await infer(plane, ModelRef("types"), InferRequest("types", inputs))}
    for t, v in values.items():
        assert outputs[f"out_{t}"].datatype == t and outputs[f"out_{t}"].data.tolist() == v.tolist()


async def test_requested_output_subset(plane: DataPlane) -> None:
    inputs = [Tensor(f"in_{t}", t, np.zeros((1, 1), dtype=object if t == "BYTES" else np.float64)) for t in ALL_TYPES]
    for tensor in inputs:
        if tensor.datatype == "BYTES":
            tensor.data[0, 0] = b"x"
        else:
            tensor.data = tensor.data.astype(np.dtype(tensor.datatype.lower().replace("fp", "float")))
    request = InferRequest("types", inputs, outputs=[RequestedOutput("out_INT8")])
    assert [o.name for o in await infer(plane, ModelRef("types"), request)] == ["out_INT8"]
    request.outputs = [RequestedOutput("nope")]
    with pytest.raises(InvalidInput, match="unknown output 'nope'"):
        await infer(plane, ModelRef("types"), request)


@pytest.mark.parametrize(
    ("ref", "error", "message"),
    [
        (ModelRef("nope"), ModelNotFound, "unknown model 'nope'"),
        (ModelRef("echo", "9"), ModelNotFound, "no served version 9"),
        (ModelRef("echo", label="prod"), ModelNotFound, "no label 'prod'"),
        (ModelRef("echo", "01"), InvalidInput, "version '01' of model 'echo' is not valid"),
        (ModelRef("echo", "%31"), InvalidInput, "is not valid"),
        (ModelRef("echo", "\uff11"), InvalidInput, "is not valid"),
        (ModelRef("echo", "0"), InvalidInput, "is not valid"),
        (ModelRef("echo", "1" * 4301), InvalidInput, "is not valid"),
        (ModelRef("echo", "1" * 19), InvalidInput, "1 to 18 ASCII digits"),
        (ModelRef("bad/name"), InvalidInput, "model name 'bad/name' is not valid"),
        (ModelRef("echo", label="bad label"), InvalidInput, "label 'bad label' is not valid"),
    ],
)
async def test_resolution_errors(plane: DataPlane, ref: ModelRef, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        plane.resolve(ref)


async def test_names_echoed_in_errors_are_truncated(plane: DataPlane) -> None:
    with pytest.raises(InvalidInput, match="model name 'mmm") as info:
        plane.resolve(ModelRef("m" * 10_000))
    assert len(info.value.message) < 200
    with pytest.raises(InvalidInput) as bad:
        plane.resolve(ModelRef("echo", "1" * 10_000))
    assert len(bad.value.message) < 200


async def test_labels_and_default_version(plane: DataPlane) -> None:
    assert plane.resolve(ModelRef("echo")).version == 1
    assert plane.resolve(ModelRef("echo", label="canary")).version == 2
    outputs = await plane.infer(plane.resolve(ModelRef("echo", "2")), InferRequest("echo", [x()]))
    assert outputs.model_version == "2"
    assert plane.model_metadata(plane.resolve(ModelRef("echo"))).versions == ["1", "2"]


async def test_input_rules_come_from_the_resolved_version(plane: DataPlane) -> None:
    rules = plane.input_rules(plane.resolve(ModelRef("echo")))
    assert rules.max_batch_size == 8 and rules.limits.max_bytes == 1 << 20
    with pytest.raises(InvalidInput, match="batch size 9 is over max_batch_size 8"):
        rules.check("x", "FP32", [9, 3])


async def test_validation_before_the_backend(plane: DataPlane, events: RecordingEvents) -> None:
    target = plane.resolve(ModelRef("echo"))
    with pytest.raises(InvalidInput, match="datatype FP64"):
        await plane.infer(target, InferRequest("echo", [Tensor("x", "FP64", np.zeros((1, 3)))]))
    with pytest.raises(InvalidInput, match="missing inputs"):
        await plane.infer(target, InferRequest("echo", []))
    assert events.named("backend_call") == []


async def test_broken_and_unloadable_models_are_reported_and_others_serve(plane: DataPlane) -> None:
    rows = {r["name"]: r for r in plane.repository_index()}
    assert rows["broken"]["state"] == "UNAVAILABLE" and "max_batch_size" in rows["broken"]["reason"]
    assert rows["unloadable"]["state"] == "UNAVAILABLE" and "cannot load it" in rows["unloadable"]["reason"]
    assert rows["echo"]["state"] == "READY"
    assert plane.ready() and plane.model_ready(ModelRef("echo"))
    assert not plane.model_ready(ModelRef("broken")) and not plane.model_ready(ModelRef("unloadable"))
    with pytest.raises(ModelNotReady, match="unavailable: failed to load: cannot load it"):
        plane.input_rules(plane.resolve(ModelRef("unloadable")))


async def test_backend_failures_are_reported_as_events(plane: DataPlane, events: RecordingEvents) -> None:
    with pytest.raises(BackendError):
        await infer(plane, ModelRef("failing"), InferRequest("failing", [x()]))
    assert events.named("rejected") == [("failing", "internal")]


async def test_metadata_platform_comes_from_the_registry(plane: DataPlane) -> None:
    meta = plane.model_metadata(plane.resolve(ModelRef("echo"))).to_dict()
    assert meta["platform"] == "fake_platform"
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]


async def test_model_status_lists_versions(plane: DataPlane) -> None:
    assert [(s.version, s.state) for s in plane.model_status(ModelRef("echo"))] == [
        (1, VersionState.READY),
        (2, VersionState.READY),
    ]
    assert [s.version for s in plane.model_status(ModelRef("echo", label="canary"))] == [2]
    with pytest.raises(ModelNotReady):
        plane.model_status(ModelRef("broken"))


async def test_state_events_and_served_versions(events: RecordingEvents, plane: DataPlane) -> None:
    assert ("echo", 1, "fake", "READY", True) in events.named("version_state")
    assert ("unloadable", 1, "fake", "UNAVAILABLE", False) in events.named("version_state")
    (served,) = events.named("served_versions")
    assert served[0]["echo"] == ["1", "2"]
    assert events.depths[("echo", 1)]() == 0


async def test_batched_calls_are_reported_and_preferred_sizes_are_checked(tmp_path: Path) -> None:
    batching = "dynamic_batching: {concurrency: 1, preferred_batch_sizes: [4]}\n"
    write_fake_model(tmp_path, "batched", echo_config(extra=batching))
    write_fake_model(tmp_path, "toobig", echo_config(extra="dynamic_batching: {preferred_batch_sizes: [64]}\n"))
    events = RecordingEvents()
    manager = ModelManager(ModelRepository(tmp_path), fake_registry(), events)
    await manager.load_all()
    plane = DataPlane(manager, events)
    target = plane.resolve(ModelRef("batched"))
    await plane.infer(target, InferRequest("batched", [x(3)]))
    assert events.named("batch") == [("batched", 1, 3, 1)]
    (row,) = [r for r in plane.repository_index() if r["name"] == "toobig"]
    assert row["state"] == "UNAVAILABLE" and "preferred_batch_sizes: [64] over max_batch_size 8" in row["reason"]
    await manager.unload_all()
