"""Progressive rollouts on real gateway processes under steady concurrent load.

Decisions depend on request counts (dwell 0, min_requests per step); the latency case uses a
version hundreds of times slower than the stable one. Polling is bounded and generous.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.load_driver import LoadDriver
from tests.e2e.server_process import ServerProcess
from tests.lifecycle_models import add_variant

pytestmark = pytest.mark.e2e

ENV = {"MODELGATE_DEPLOYMENT_POLL_SECONDS": "0.2"}
PLAN: dict[str, Any] = {
    "version": "2", "steps": [10, 50, 100], "min_requests": 40,
    # Latency is judged only by the slow-version test: a busy shared machine can stall any request for
    # a second, which must not look like a slow candidate.
    "slo": {"max_error_rate": 0.05, "max_p99_ratio": None},
}  # fmt: skip


@pytest.fixture
def repo(demo_repo: Path, tmp_path: Path) -> Path:
    target = tmp_path / "repo"
    shutil.copytree(demo_repo, target)
    config = target / "digits_mlp" / "config.yaml"
    config.write_text(config.read_text().replace("{latest: 1}", "{specific: [1]}"))  # v2 only by rollout
    return target


@pytest.fixture
def server(repo: Path) -> Iterator[ServerProcess]:
    with ServerProcess(repo, env=ENV) as proc:
        yield proc


def rollout(server: ServerProcess, action: str = "", body: dict[str, Any] | None = None) -> httpx.Response:
    url = f"{server.management_url}/api/models/digits_mlp/rollout" + (f"/{action}" if action else "")
    if action or body is not None:
        return httpx.post(url, json=body or {}, timeout=300)
    return httpx.get(url, timeout=60)


def wait_until_finished(server: ServerProcess, polls: int = 3000) -> dict[str, Any]:
    pause = threading.Event()
    for _ in range(polls):  # bounded: up to 5 min at 0.1 s
        view = rollout(server).json()
        if view["status"] not in ("shadow", "canary", "paused"):
            return view
        pause.wait(0.1)
    raise AssertionError(f"rollout did not finish: {view}")


def history(server: ServerProcess) -> list[dict[str, Any]]:
    return httpx.get(f"{server.management_url}/api/history").json()["records"]


def scrape(server: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{server.metrics}/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip


def test_a_good_version_rolls_out_under_load_without_a_failed_request(repo: Path, server: ServerProcess) -> None:
    add_variant(repo, 2, "same")
    with LoadDriver(server.url, clients=4) as load:
        load.wait_for(100)
        started = rollout(server, body=PLAN)
        assert started.status_code == 200, started.text
        assert started.json()["weights"] == {"1": 90.0, "2": 10.0}
        final = wait_until_finished(server)
        load.wait_for(200)
    assert final["status"] == "promoted", final
    assert load.failures() == []
    outcomes = load.snapshot()
    assert outcomes[-50:] and {o.version for o in outcomes[-50:]} == {"2"}
    steps = [(r["action"], r["step"]) for r in history(server) if r["action"] not in ("rollout_load",)]
    assert steps == [("rollout_start", 1), ("rollout_advance", 2), ("rollout_advance", 3), ("rollout_promote", 3)]
    metrics = scrape(server)
    assert metrics[("modelgate_deployments_total", (("model", "digits_mlp"), ("outcome", "succeeded")))] == 1
    assert metrics[("modelgate_traffic_weight", (("model", "digits_mlp"), ("version", "2")))] == 100
    assert metrics[("modelgate_rollout_step", (("model", "digits_mlp"),))] == 0


@pytest.mark.parametrize(
    ("kind", "slo", "reason"),
    [
        ("errors", {"max_error_rate": 0.05}, "error_rate"),
        # The slow version does 4 x 2000^3 MatMul steps, 64 GFLOP a request: about a second here, against
        # about a millisecond for the MLP. The stable version's baseline p99 comes from 300+ requests
        # before the rollout, so three of them would each have to stall for over 0.3 s to hide it; and
        # the candidate's p99 stays over the 0.5 s floor even on a machine several times faster.
        ("slow", {"max_p99_ratio": 3, "latency_floor_seconds": 0.5}, "latency"),
    ],
)
def test_a_bad_version_is_rolled_back_within_its_first_canary_share(
    repo: Path, server: ServerProcess, kind: str, slo: dict[str, float], reason: str
) -> None:
    add_variant(repo, 2, kind, size=2000)  # (the size only matters to the slow variant)
    plan = {**PLAN, "min_requests": 15, "slo": slo}
    with LoadDriver(server.url, clients=4) as load:
        load.wait_for(300)
        before = load.count()
        assert rollout(server, body=plan).status_code == 200
        final = wait_until_finished(server)
        after = load.count()
        epoch = load.next_epoch()
        load.wait_for_epoch(epoch, 100)
    assert final["status"] == "rolled_back" and final["reason"].startswith(reason), final
    decision = history(server)[-1]
    assert decision["action"] == "rollout_rollback" and decision["rollback_reason"] == reason
    assert decision["step"] == 1  # decided in the first canary step: never more than 10 % of the traffic
    outcomes = load.snapshot()
    failures = load.failures()
    canary_answers = sum(1 for o in outcomes if o.version == "2")
    assert canary_answers + len(failures) <= 0.1 * (after - before) + 4 * 4 + 30  # its share (+ in flight)
    if kind == "errors":
        assert 0 < len(failures) <= 3 + 4  # max_error_rate 0.05 of 30 tolerates one error; 4 clients in flight
    else:
        assert failures == []
    recent = [o for o in outcomes if o.epoch >= epoch]  # sent after the rollback: all on the stable version
    assert len(recent) >= 100 and {o.version for o in recent} == {"1"} and all(o.status == 200 for o in recent)


def test_different_answers_are_rolled_back_in_the_shadow_phase(repo: Path, server: ServerProcess) -> None:
    add_variant(repo, 2, "wrong")
    plan = {**PLAN, "shadow": {"share": 0.5, "min_requests": 40}, "slo": {"max_disagreement": 0.02}}
    with LoadDriver(server.url, clients=4) as load:
        load.wait_for(50)
        assert rollout(server, body=plan).json()["status"] == "shadow"
        final = wait_until_finished(server)
        load.wait_for(50)
    assert final["status"] == "rolled_back" and final["reason"].startswith("disagreement")
    assert load.failures() == [] and set(load.versions()) == {"1"}  # no caller ever got the wrong answers
    decision = history(server)[-1]
    assert decision["evidence"]["candidate"]["disagreement"] == 1.0
    assert decision["evidence"]["candidate"]["max_abs_diff"] > 0.1


def test_a_gateway_killed_mid_rollout_resumes_it(repo: Path) -> None:
    add_variant(repo, 2, "same")
    plan = {**PLAN, "steps": [10, 20, 30, 50, 100], "min_requests": 30, "dwell_seconds": 0}
    first = ServerProcess(repo, env=ENV).start()
    try:
        assert rollout(first, body={**plan}).status_code == 200
        with LoadDriver(first.url, clients=2) as load:
            pause = threading.Event()
            for _ in range(3000):
                if rollout(first).json()["step"] >= 1:
                    break
                pause.wait(0.1)
            load.stop()
        killed_at = rollout(first).json()
        assert killed_at["status"] == "canary" and killed_at["step"] >= 1
        first.kill()
    finally:
        first.close()
    with ServerProcess(repo, env=ENV) as second:
        resumed = rollout(second).json()
        assert resumed["status"] == "canary" and resumed["step"] >= killed_at["step"]
        assert resumed["weights"]["2"] >= killed_at["weights"]["2"]
        assert "2" in resumed["weights"]
        with LoadDriver(second.url, clients=4) as load:
            final = wait_until_finished(second)
            load.wait_for(50)
        assert final["status"] == "promoted" and load.failures() == []
        promote = history(second)[-1]
        assert promote["action"] == "rollout_promote" and promote["replica"] != killed_at["leader"]


def test_two_gateways_sharing_a_repository_converge(repo: Path) -> None:
    add_variant(repo, 2, "same")
    plan = {**PLAN, "min_requests": 30}
    with ServerProcess(repo, env=ENV) as a, ServerProcess(repo, env=ENV) as b:
        assert rollout(a, body=plan).status_code == 200
        pause = threading.Event()
        for _ in range(3000):  # b loads the candidate and applies the weights within a few poll intervals
            models = httpx.get(f"{b.management_url}/api/models").json()["models"]
            if models[0]["weights"] == {"1": 90.0, "2": 10.0}:
                break
            pause.wait(0.1)
        assert models[0]["weights"] == {"1": 90.0, "2": 10.0}
        assert {v["version"]: v["state"] for v in models[0]["versions"]} == {"1": "READY", "2": "READY"}
        with LoadDriver(a.url, clients=2) as load_a, LoadDriver(b.url, clients=2) as load_b:
            final = wait_until_finished(a)
            # Either gateway may have taken the last decision; each applies it on its own next poll.
            for gateway in (a, b):
                for _ in range(3000):
                    models = httpx.get(f"{gateway.management_url}/api/models").json()["models"]
                    if models[0]["weights"] == {"1": 0.0, "2": 100.0}:
                        break
                    pause.wait(0.1)
                assert models[0]["weights"] == {"1": 0.0, "2": 100.0}
            epochs = load_a.next_epoch(), load_b.next_epoch()
            load_a.wait_for_epoch(epochs[0], 20)
            load_b.wait_for_epoch(epochs[1], 20)
        assert final["status"] == "promoted"
        assert load_a.failures() == [] and load_b.failures() == []
        for load, epoch in zip((load_a, load_b), epochs, strict=True):
            assert {o.version for o in load.snapshot() if o.epoch >= epoch} == {"2"}  # sent after both applied it
        # One leader at a time: every step decided once. (Which replica leads may change: a lease is 3 poll
        # intervals of wall-clock time, which a busy machine can let lapse; the next leader goes on from the
        # shared state, so no decision is taken twice.)
        decisions = ("rollout_advance", "rollout_promote")
        decided = [(r["action"], str(r["step"])) for r in history(a) if r["action"] in decisions]
        promotions = [action for action, _ in decided if action == "rollout_promote"]
        assert len(decided) == len(set(decided)) and len(promotions) == 1, decided


def test_deploy_cli_rollout_and_figures(repo: Path, server: ServerProcess, tmp_path: Path) -> None:
    add_variant(repo, 2, "same")
    add_variant(repo, 3, "errors")
    # As in PLAN: no latency judgement, which a busy machine's stall during 30 requests can fail.
    plan = tmp_path / "plan.yaml"
    plan.write_text("slo: {max_p99_ratio: null}\n", encoding="utf-8")
    base = [sys.executable, "-m", "gateway.cli", "deploy", "--url", server.management_url]
    with LoadDriver(server.url, clients=4):
        start = [*base, "rollout", "start", "digits_mlp"]
        good = subprocess.run([*start, "2", "--steps", "50,100", "--min-requests", "30", "--plan", str(plan), "--wait"],
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        assert good.returncode == 0, good.stderr
        assert "promoted" in good.stdout
        bad = subprocess.run([*start, "3", "--steps", "10,100", "--min-requests", "30", "--plan", str(plan), "--wait"],
                             capture_output=True, text=True, timeout=600)  # fmt: skip
        assert bad.returncode == 1 and "rolled_back" in bad.stdout, (bad.stdout, bad.stderr)
    report = subprocess.run([*base, "history"], capture_output=True, text=True, timeout=120)
    assert report.returncode == 0
    assert "deployments: 2 (1 succeeded, success rate 50%)" in report.stdout
    assert "rollbacks: 1 {'error_rate': 1}" in report.stdout
    assert "time to roll out: median" in report.stdout
    figures = httpx.get(f"{server.management_url}/api/figures").json()
    assert figures["rollback_rate"] == 0.5 and figures["requests_failed_during_rollouts"] >= 1
    usage = subprocess.run([*base, "rollout", "start", "digits_mlp"], capture_output=True, text=True, timeout=120)
    assert usage.returncode == 2 and "needs the candidate VERSION" in usage.stderr
