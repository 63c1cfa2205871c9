"""Runtime load / unload / labels / traffic on real ONNX Runtime versions (no gateway process)."""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from gateway.backends import default_registry
from gateway.core.dataplane import DataPlane
from gateway.core.errors import InvalidInput, ModelNotFound, ModelNotReady
from gateway.core.history import DeploymentHistory
from gateway.core.lifecycle import DeploymentFailed, Lifecycle
from gateway.core.models import ModelManager, VersionState
from gateway.core.repository import ModelRepository
from gateway.core.types import InferRequest, Tensor
from gateway.metrics import Metrics
from tests.harness import infer_named
from tests.onnx_models import write_digits_repo, write_model

pytestmark = pytest.mark.anyio

PIXELS = np.arange(64, dtype=np.float32).reshape(1, 64) % 17


@pytest.fixture(scope="session")
def _digits_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("lifecycle_template")
    write_digits_repo(repo)
    write_model(repo, "slow", "backend: onnxruntime\nversion_policy: {all: true}\n", writer="slow")
    return repo


@pytest.fixture
def repo(_digits_template: Path, tmp_path: Path) -> Path:
    target = tmp_path / "repo"
    shutil.copytree(_digits_template, target)
    return target


@pytest.fixture
async def lifecycle(repo: Path) -> AsyncIterator[Lifecycle]:
    manager = ModelManager(ModelRepository(repo), default_registry())
    await manager.load_all()
    yield Lifecycle(manager, DeploymentHistory(repo))
    await manager.unload_all()


def add_version(repo: Path, version: int, source: int = 1) -> Path:
    target = repo / "digits_mlp" / str(version)
    shutil.copytree(repo / "digits_mlp" / str(source), target)
    return target


def request(version: str | None = None) -> InferRequest:
    return InferRequest("digits_mlp", [Tensor("pixels", "FP32", PIXELS)], model_version=version)


def tree(repo: Path) -> list[str]:
    return sorted(str(p.relative_to(repo)) for p in repo.rglob("*"))


async def test_loading_a_version_warms_it_up_then_it_serves(repo: Path, lifecycle: Lifecycle) -> None:
    add_version(repo, 2)
    result = await lifecycle.load("digits_mlp", "2")
    assert result["state"] == "READY" and result["warmup"]["samples"] == "generated from the input spec"
    assert lifecycle.manager.resolve("digits_mlp", None).version == 2
    assert lifecycle.manager.resolve("digits_mlp", "1").ready  # the old version is still loaded
    [record] = lifecycle.history.read("digits_mlp")
    assert record["action"] == "load" and record["outcome"] == "succeeded" and record["version"] == "2"
    assert record["warmup"]["requests"] == 3


async def test_a_version_that_cannot_load_never_serves_and_is_recorded(repo: Path, lifecycle: Lifecycle) -> None:
    (repo / "digits_mlp" / "2").mkdir()
    (repo / "digits_mlp" / "2" / "model.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(
        DeploymentFailed, match=r"version 2 .* was not deployed: failed to load.*version 1 keeps serving"
    ):
        await lifecycle.load("digits_mlp", "digits_mlp/2")
    assert lifecycle.manager.resolve("digits_mlp", None).version == 1
    assert 2 not in lifecycle.manager.get("digits_mlp").versions
    [record] = lifecycle.history.read()
    assert record["outcome"] == "failed" and "failed to load" in record["reason"] and str(repo) not in record["reason"]


async def test_stored_samples_and_expected_outputs_verify_a_version(repo: Path, lifecycle: Lifecycle) -> None:
    version_dir = add_version(repo, 2)
    served = lifecycle.manager.resolve("digits_mlp", "1")
    assert served.call is not None
    probs = (await served.call({"pixels": PIXELS}, ["probs"]))["probs"]
    (version_dir / "warmup").mkdir()
    np.savez(version_dir / "warmup" / "inputs.npz", pixels=PIXELS)
    np.savez(version_dir / "warmup" / "expected.npz", probs=probs)
    result = await lifecycle.load("digits_mlp", 2)
    assert result["warmup"] == {"requests": 3, "samples": "stored samples", "verified": True}


async def test_answers_that_differ_from_the_expected_outputs_fail_the_warm_up(repo: Path, lifecycle: Lifecycle) -> None:
    version_dir = add_version(repo, 2)
    (version_dir / "warmup").mkdir()
    np.savez(version_dir / "warmup" / "inputs.npz", pixels=PIXELS)
    np.savez(version_dir / "warmup" / "expected.npz", probs=np.full((1, 10), 0.1, np.float32))
    with pytest.raises(DeploymentFailed, match="warm-up failed: warm-up output 'probs' differs"):
        await lifecycle.load("digits_mlp", "2")
    assert lifecycle.manager.resolve("digits_mlp", None).version == 1
    assert lifecycle.history.read()[-1]["outcome"] == "failed"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("https://example.com/model.onnx", "URLs are not accepted"),
        ("s3://bucket/model", "URLs are not accepted"),
        ("../digits_mlp/1", "'..' are not accepted"),
        ("digits_mlp/../../etc", "'..' are not accepted"),
        ("/etc/passwd", "absolute paths"),
        ("other/1", "is not the folder of model 'digits_mlp'"),
        ("digits_mlp/1/model.onnx", "must be a version folder"),
        ("abc", "must be a positive version number"),
        (True, "must be a version folder"),
    ],
)
async def test_bad_sources_are_refused_and_touch_nothing(
    repo: Path, lifecycle: Lifecycle, source: object, message: str
) -> None:
    before = tree(repo)
    with pytest.raises(InvalidInput, match=message):
        await lifecycle.load("digits_mlp", source)
    assert tree(repo) == before
    assert lifecycle.history.read() == []


async def test_a_symlink_out_of_the_repository_is_refused(repo: Path, lifecycle: Lifecycle, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    shutil.copytree(repo / "digits_mlp" / "1", outside)
    (repo / "digits_mlp" / "7").symlink_to(outside)
    with pytest.raises(InvalidInput, match="resolves outside the model repository"):
        await lifecycle.load("digits_mlp", "7")
    assert 7 not in lifecycle.manager.get("digits_mlp").versions


@pytest.mark.parametrize("model", ["..", "a/b", "https://x", "", "../../etc"])
async def test_bad_model_names_are_refused(lifecycle: Lifecycle, model: str) -> None:
    with pytest.raises(InvalidInput, match="is not a model name"):
        await lifecycle.load(model)


async def test_unknown_model_or_version_folder_is_not_found(lifecycle: Lifecycle) -> None:
    with pytest.raises(ModelNotFound):
        await lifecycle.load("nope")
    with pytest.raises(ModelNotFound, match="no version folder 9"):
        await lifecycle.load("digits_mlp", "9")


async def test_reloading_the_model_swaps_to_the_policys_versions(repo: Path, lifecycle: Lifecycle) -> None:
    old = lifecycle.manager.resolve("digits_mlp", "1")
    add_version(repo, 2)
    result = await lifecycle.load("digits_mlp")  # version_policy latest: 1
    assert result["versions"] == {"2": "READY"}
    assert old.state is VersionState.UNLOADED
    assert lifecycle.manager.resolve("digits_mlp", None).version == 2


async def test_a_failed_model_reload_keeps_the_old_version_serving(repo: Path, lifecycle: Lifecycle) -> None:
    (repo / "digits_mlp" / "2").mkdir()
    (repo / "digits_mlp" / "2" / "model.onnx").write_bytes(b"garbage")
    with pytest.raises(DeploymentFailed, match="version 1 keeps serving"):
        await lifecycle.load("digits_mlp")
    assert (
        lifecycle.manager.resolve("digits_mlp", None).version == 1
        and lifecycle.manager.resolve("digits_mlp", "1").ready
    )


async def test_unloading_lets_in_flight_requests_finish(repo: Path, lifecycle: Lifecycle) -> None:
    dataplane = DataPlane(lifecycle.manager, Metrics())
    served = lifecycle.manager.resolve("slow", "1")
    assert served.gate is not None
    x = np.ones((1, 1), np.float32)
    inflight = asyncio.create_task(infer_named(dataplane, InferRequest("slow", [Tensor("x", "FP32", x)])))
    for _ in range(2000):  # bounded: the request reaches the backend within a few event-loop turns
        if served.gate.depth:
            break
        await asyncio.sleep(0.005)
    assert served.gate.depth == 1
    await lifecycle.unload("slow", "1")
    response = await inflight
    assert response.outputs[0].data.tolist() == [[1.0]]
    assert served.state is VersionState.UNLOADED
    with pytest.raises(ModelNotReady, match="unloaded"):
        await infer_named(dataplane, InferRequest("slow", [Tensor("x", "FP32", x)]))


async def test_labels_and_weighted_split(repo: Path, lifecycle: Lifecycle) -> None:
    add_version(repo, 2)
    await lifecycle.load("digits_mlp", "2")
    await lifecycle.set_labels("digits_mlp", {"stable": "1", "canary": 2})
    assert lifecycle.manager.resolve_label("digits_mlp", "canary").version == 2
    await lifecycle.set_traffic("digits_mlp", {"weights": {"1": 90, "2": 10}})
    picks = Counter(lifecycle.manager.resolve("digits_mlp", None).version for _ in range(200))
    assert picks == {1: 180, 2: 20}
    sticky = {lifecycle.manager.resolve("digits_mlp", None, key="user-42").version for _ in range(50)}
    assert len(sticky) == 1
    keyed = Counter(lifecycle.manager.resolve("digits_mlp", None, key=f"user-{i}").version for i in range(2000))
    assert 100 < keyed[2] < 300  # a hash split: about 10 % of distinct keys
    assert lifecycle.manager.resolve("digits_mlp", "1").version == 1  # naming a version bypasses the split
    assert [m["weights"] for m in lifecycle.models() if m["name"] == "digits_mlp"] == [{"1": 90.0, "2": 10.0}]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"weights": {"1": 90}}, "must sum to 100"),
        ({"weights": {"1": 50, "9": 50}}, r"weights.9: version 9 is not loaded"),
        ({"weights": {"1": "x"}}, "must be a number from 0 to 100"),
        ({"weights": {"v1": 100}}, "must be a positive version number"),
        ({}, "weights: required"),
        (
            {"weights": {"1": 100}, "shadow": {"version": "1", "share": 2}},
            r"shadow.share: must be a number in \(0, 1\]",
        ),
    ],
)
async def test_bad_splits_are_refused(lifecycle: Lifecycle, doc: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        await lifecycle.set_traffic("digits_mlp", doc)
