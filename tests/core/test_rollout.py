"""Rollouts walked by the controller in-process, over real ONNX Runtime versions that go wrong.

Decisions depend on request counts only (dwell 0, ticks called by the test), except the
latency case. There the slow version costs hundreds of times the stable one's CPU, and the
node times requests in CPU seconds (``time.process_time``): a busy machine's scheduling stalls
do not inflate the stable version's p99 as they do its wall-clock p99.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from gateway.backends import default_registry
from gateway.core.dataplane import DataPlane
from gateway.core.errors import DeploymentConflict, GatewayError, InvalidInput
from gateway.core.history import DeploymentHistory
from gateway.core.lifecycle import Lifecycle
from gateway.core.models import ModelManager, VersionState
from gateway.core.repository import ModelRepository
from gateway.core.rollout.controller import RolloutController
from gateway.core.types import InferRequest, Tensor
from gateway.metrics import Metrics
from tests.harness import infer_named
from tests.lifecycle_models import add_variant
from tests.onnx_models import write_digits_repo

pytestmark = pytest.mark.anyio

PIXELS = (np.arange(64, dtype=np.float32) % 17).reshape(1, 64)


@pytest.fixture(scope="session")
def _template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("rollout_template")
    write_digits_repo(repo)
    (repo / "digits_mlp" / "config.yaml").write_text(
        (repo / "digits_mlp" / "config.yaml").read_text().replace("{latest: 1}", "{specific: [1]}")
    )
    return repo


@pytest.fixture
def repo(_template: Path, tmp_path: Path) -> Path:
    target = tmp_path / "repo"
    shutil.copytree(_template, target)
    return target


@dataclass
class Node:
    """One gateway's core: manager, data plane, lifecycle, controller."""

    manager: ModelManager
    dataplane: DataPlane
    lifecycle: Lifecycle
    controller: RolloutController
    metrics: Metrics

    async def request(self) -> str:
        """One unpinned request; the version that answered, or 'error'."""
        try:
            response = await infer_named(self.dataplane, InferRequest("digits_mlp", [Tensor("pixels", "FP32", PIXELS)]))
        except GatewayError:
            return "error"
        return response.model_version

    async def close(self) -> None:
        await self.controller.close()
        await self.dataplane.shadow.drain()
        await self.manager.unload_all()


async def make_node(repo: Path, name: str, clock: Callable[[], float] = time.time,
                    stopwatch: Callable[[], float] = time.perf_counter) -> Node:  # fmt: skip
    metrics = Metrics()
    manager = ModelManager(ModelRepository(repo), default_registry())
    await manager.load_all()
    dataplane = DataPlane(manager, metrics, stopwatch=stopwatch)
    lifecycle = Lifecycle(manager, DeploymentHistory(repo), metrics)
    controller = RolloutController(lifecycle, dataplane.evidence, name, poll_seconds=0.5, clock=clock)
    await controller.tick()
    return Node(manager, dataplane, lifecycle, controller, metrics)


@pytest.fixture
async def node(repo: Path) -> AsyncIterator[Node]:
    n = await make_node(repo, "replica-a")
    yield n
    await n.close()


@pytest.fixture
async def cpu_timed_node(repo: Path) -> AsyncIterator[Node]:
    """A node whose rollout evidence times requests in CPU seconds (see the module docstring)."""
    n = await make_node(repo, "replica-a", stopwatch=time.process_time)
    yield n
    await n.close()


async def drive(node: Node, requests: int, ticks_every: int = 10) -> list[str]:
    answers = []
    for i in range(requests):
        answers.append(await node.request())
        if i % ticks_every == ticks_every - 1:
            await node.controller.tick()
    return answers


def actions(repo: Path) -> list[tuple[str, str]]:
    return [(r["action"], r["outcome"]) for r in DeploymentHistory(repo).read() if r["action"].startswith("rollout")]


def metric(node: Node, name: str, labels: dict[str, str]) -> float | None:
    return node.metrics.registry.get_sample_value(name, labels)


def _frozen_clock() -> float:
    return 1_800_000_000.0


PLAN = {
    "version": "2",
    "steps": [20, 50, 100],
    "min_requests": 20,
    # Latency is judged only by the slow-version test: here a busy machine's stall must not look like a slow
    # candidate (the p99 of 20 requests is their maximum).
    "slo": {"max_error_rate": 0.05, "max_p99_ratio": None},
}


async def test_a_good_version_is_rolled_out_step_by_step(repo: Path, node: Node) -> None:
    add_variant(repo, 2, "same")
    started = await node.controller.start("digits_mlp", PLAN)
    assert started["weights"] == {"1": 80.0, "2": 20.0} and started["status"] == "canary"
    assert metric(node, "modelgate_traffic_weight", {"model": "digits_mlp", "version": "2"}) == 20.0
    answers = await drive(node, 400)
    assert "error" not in answers
    assert actions(repo) == [
        ("rollout_load", "succeeded"), ("rollout_start", "started"), ("rollout_advance", "advanced"),
        ("rollout_advance", "advanced"), ("rollout_promote", "succeeded"),
    ]  # fmt: skip
    assert node.controller.status("digits_mlp")["status"] == "promoted"
    assert node.manager.resolve("digits_mlp", None).version == 2
    assert metric(node, "modelgate_deployments_total", {"model": "digits_mlp", "outcome": "succeeded"}) == 1
    assert metric(node, "modelgate_traffic_weight", {"model": "digits_mlp", "version": "1"}) == 0.0
    promote = DeploymentHistory(repo).read()[-1]
    assert promote["evidence"]["candidate"]["requests"] >= 20 and promote["failed_requests"] == 0


async def test_a_version_that_fails_is_rolled_back_within_its_first_canary_share(repo: Path, node: Node) -> None:
    add_variant(repo, 2, "errors")
    await node.controller.start("digits_mlp", PLAN)
    answers = await drive(node, 300)
    failures = answers.count("error")
    assert 1 < failures <= 3  # max_error_rate 0.05 over min_requests 20 tolerates one error
    first_ok_after = answers.index("error")
    assert answers[first_ok_after:].count("2") == 0  # the bad version never answered correctly
    record = DeploymentHistory(repo).read()[-1]
    assert (record["action"], record["outcome"], record["rollback_reason"]) == ("rollout_rollback", "rolled_back",
                                                                                 "error_rate")  # fmt: skip
    assert record["step"] == 1 and record["evidence"]["candidate"]["errors"] == failures
    assert answers[-50:] == ["1"] * 50
    await node.controller.close()
    assert node.manager.get("digits_mlp").versions[2].state is VersionState.UNLOADED
    assert metric(node, "modelgate_rollbacks_total", {"model": "digits_mlp", "reason": "error_rate"}) == 1


async def test_a_slow_version_is_rolled_back_on_latency(repo: Path, cpu_timed_node: Node) -> None:
    node = cpu_timed_node
    add_variant(repo, 2, "slow")
    # p99 over 60+ candidate and 240+ stable requests: a few hiccups of the stable version do not move it.
    plan = {**PLAN, "min_requests": 60, "slo": {"max_p99_ratio": 3, "latency_floor_seconds": 0.001}}
    await node.controller.start("digits_mlp", plan)
    answers = await drive(node, 400)
    assert "error" not in answers
    record = DeploymentHistory(repo).read()[-1]
    assert record["rollback_reason"] == "latency" and record["step"] == 1
    assert answers.count("2") < 80  # it never got past its first (20 %) share
    assert answers[-50:] == ["1"] * 50


async def test_different_answers_are_caught_in_the_shadow_phase(repo: Path, node: Node) -> None:
    add_variant(repo, 2, "wrong")
    plan = {**PLAN, "shadow": {"share": 1.0, "min_requests": 20}, "slo": {"max_disagreement": 0.05}}
    started = await node.controller.start("digits_mlp", plan)
    assert started["status"] == "shadow" and started["weights"] == {"1": 100.0}
    answers = []
    for _ in range(100):
        answers.append(await node.request())
        await node.dataplane.shadow.drain()
        await node.controller.tick()
    assert set(answers) == {"1"}  # the candidate never served a caller
    record = DeploymentHistory(repo).read()[-1]
    assert record["rollback_reason"] == "disagreement" and record["step"] == 0
    assert record["evidence"]["candidate"]["disagreement"] == 1.0


async def test_operator_commands(repo: Path, node: Node) -> None:
    add_variant(repo, 2, "same")
    await node.controller.start("digits_mlp", PLAN)
    with pytest.raises(DeploymentConflict, match="has a rollout of version 2 running"):
        await node.controller.start("digits_mlp", PLAN)
    paused = await node.controller.command("digits_mlp", "pause")
    assert paused["status"] == "paused" and paused["weights"] == {"1": 80.0, "2": 20.0}
    await drive(node, 100)
    assert node.controller.status("digits_mlp")["status"] == "paused"  # no advance while paused
    assert (await node.controller.command("digits_mlp", "resume"))["status"] == "canary"
    aborted = await node.controller.command("digits_mlp", "abort")
    assert aborted["status"] == "aborted" and aborted["weights"] == {"1": 100.0}
    assert set(await drive(node, 30)) == {"1"}
    with pytest.raises(InvalidInput, match=r"plan: steps: .*the last step must be 100"):
        await node.controller.start("digits_mlp", {"version": "2", "steps": [10, 50]})


async def test_a_restarted_gateway_resumes_the_rollout(repo: Path, node: Node) -> None:
    add_variant(repo, 2, "same")
    await node.controller.start("digits_mlp", PLAN)
    await drive(node, 100, ticks_every=100)  # 20 of 100 requests on the candidate, then one advance: 50 %
    assert node.controller.status("digits_mlp")["step_percent"] == 50.0
    await node.close()  # the gateway stops mid-rollout
    restarted = await make_node(repo, "replica-b")
    try:
        view = restarted.controller.status("digits_mlp")
        assert view["status"] == "canary" and view["weights"] == {"1": 50.0, "2": 50.0}
        assert restarted.manager.resolve("digits_mlp", "2").ready  # the candidate was loaded and warmed up again
        await drive(restarted, 300)
        assert restarted.controller.status("digits_mlp")["status"] == "promoted"
    finally:
        await restarted.close()


async def test_two_gateways_sharing_a_repository_converge(repo: Path) -> None:
    add_variant(repo, 2, "same")
    # Leases and evidence expire in wall-clock time (1.5 s here): on a busy machine the leader's lease could
    # lapse between two of its ticks and the follower take over. One frozen clock keeps leadership where
    # the test put it; decisions still depend on request counts only.
    node = await make_node(repo, "replica-a", clock=_frozen_clock)
    follower = await make_node(repo, "replica-z", clock=_frozen_clock)
    try:
        await node.controller.tick()  # replica-a leads (it took the lease first)
        await node.controller.start("digits_mlp", PLAN)
        await follower.controller.tick()
        assert follower.controller.status("digits_mlp")["weights"] == {"1": 80.0, "2": 20.0}
        assert follower.manager.resolve("digits_mlp", "2").ready
        # Only the follower gets traffic: the leader advances on the follower's published evidence.
        for _ in range(40):
            await drive(follower, 10, ticks_every=10)
            await node.controller.tick()
            if node.controller.status("digits_mlp")["status"] == "promoted":
                break
        await follower.controller.tick()
        assert follower.controller.status("digits_mlp")["status"] == "promoted"
        assert follower.manager.resolve("digits_mlp", None).version == 2
        assert node.manager.resolve("digits_mlp", None).version == 2
        promote = DeploymentHistory(repo).read()[-1]
        assert promote["action"] == "rollout_promote" and promote["replica"] == "replica-a"  # the leader decided
        assert promote["evidence"]["candidate"]["requests"] >= 20  # counted from the follower's published evidence
    finally:
        await follower.close()
        await node.close()


async def test_hand_set_splits_and_labels_reach_other_replicas_and_restarts(repo: Path, node: Node) -> None:
    add_variant(repo, 2, "same")
    await node.lifecycle.load("digits_mlp", "2")
    other = await make_node(repo, "replica-y")
    try:
        await other.lifecycle.load("digits_mlp", "2")
        await node.lifecycle.set_traffic("digits_mlp", {"weights": {"1": 75, "2": 25}})
        await node.lifecycle.set_labels("digits_mlp", {"canary": "2"})
        await other.controller.tick()
        [row] = other.lifecycle.models()
        assert row["weights"] == {"1": 75.0, "2": 25.0} and row["labels"] == {"canary": "2"}
        assert sorted(await drive(other, 100)).count("2") == 25
    finally:
        await other.close()
    await node.lifecycle.set_traffic("digits_mlp", {"weights": None})
    restarted = await make_node(repo, "replica-x")  # v2 is not in the policy: the recorded label cannot apply
    try:
        [row] = restarted.lifecycle.models()
        assert row["traffic"] is None and row["labels"] == {}
        await restarted.lifecycle.load("digits_mlp", "2")
        await restarted.controller.tick()
        assert restarted.lifecycle.models()[0]["labels"] == {"canary": "2"}
    finally:
        await restarted.close()


async def test_a_hand_set_split_is_refused_while_a_rollout_runs(repo: Path, node: Node) -> None:
    add_variant(repo, 2, "same")
    await node.controller.start("digits_mlp", PLAN)
    with pytest.raises(DeploymentConflict, match="its traffic follows the plan"):
        await node.lifecycle.set_traffic("digits_mlp", {"weights": {"1": 50, "2": 50}})


async def test_repository_polling_loads_new_folders_and_unloads_removed_ones(repo: Path) -> None:
    metrics = Metrics()
    manager = ModelManager(ModelRepository(repo), default_registry())
    await manager.load_all()
    dataplane = DataPlane(manager, metrics)
    lifecycle = Lifecycle(manager, DeploymentHistory(repo), metrics)
    controller = RolloutController(lifecycle, dataplane.evidence, "poller", 0.5, repository_poll=True)
    node = Node(manager, dataplane, lifecycle, controller, metrics)
    try:
        await controller.tick()  # what is there at start is the version policy's business
        add_variant(repo, 2, "same")
        await controller.tick()  # first sighting: it may still be being copied
        assert 2 not in manager.get("digits_mlp").versions
        await controller.tick()
        assert manager.resolve("digits_mlp", None).version == 2
        shutil.rmtree(repo / "digits_mlp" / "1")
        await controller.tick()
        assert manager.get("digits_mlp").versions[1].state is VersionState.UNLOADED
        # latency off: the p99 of a few requests on a busy machine is one stall (judged by the slow-version test)
        (repo / "digits_mlp" / "rollout.yaml").write_text(
            "steps: [50, 100]\nmin_requests: 10\nslo: {max_p99_ratio: null}\n"
        )
        add_variant(repo, 3, "same", source_version=2)
        await controller.tick()
        await controller.tick()
        view = controller.status("digits_mlp")
        assert (view["status"], view["stable"], view["candidate"]) == ("canary", 2, 3)
        assert view["weights"] == {"2": 50.0, "3": 50.0}
        await drive(node, 100)
        assert controller.status("digits_mlp")["status"] == "promoted"
        assert [r["action"] for r in DeploymentHistory(repo).read()][:2] == ["load", "unload"]
    finally:
        await node.close()
