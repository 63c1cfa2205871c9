"""Locust's distributed mode: a master and local worker processes, counted exactly like a single process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.server_process import ServerProcess
from tests.loadtests.conftest import RunModelgate
from tests.loadtests.test_lt_e2e import gateway_count, metrics_url

pytestmark = pytest.mark.e2e


def test_worker_processes_share_the_load_and_every_request_is_counted(
    gateway: ServerProcess, run_modelgate: RunModelgate, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    before = gateway_count(gateway, "digits_mlp", "rest")
    result = run_modelgate(
        "loadtest", "--host", gateway.url, "--model", "digits_mlp", "--protocol", "rest", "--processes", "2",
        "--shape", "constant:users=4", "--duration", "4", "--out", str(out), "--metrics-url", metrics_url(gateway),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    [entry] = data["results"]
    assert data["loadgen"]["processes"] == 2 and data["run"]["locust_processes"] == 2
    per_worker = []
    for index in (0, 1):
        with np.load(out / f"latencies.w{index}.npz") as part:
            per_worker.append(int(part["response_ms"].size))
    with np.load(out / "latencies.npz") as merged:
        assert merged["response_ms"].size == sum(per_worker)
    assert all(count > 0 for count in per_worker)  # both workers sent requests
    assert entry["requests"] == sum(per_worker) == gateway_count(gateway, "digits_mlp", "rest") - before
    assert entry["failures"] == 0


def test_the_kubernetes_example_runs_commands_this_cli_accepts() -> None:
    """deploy/loadtest-job.yaml: master and worker arguments parse, and agree on the run and the worker count."""
    import argparse
    import shlex

    import yaml

    from loadtests.cli import register

    path = Path(__file__).resolve().parents[2] / "deploy" / "loadtest-job.yaml"
    docs = {d["metadata"]["name"]: d for d in yaml.safe_load_all(path.read_text(encoding="utf-8"))}
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    [master] = docs["modelgate-loadtest-master"]["spec"]["template"]["spec"]["containers"]
    master_args = parser.parse_args([master["command"][1], *master["args"]])
    workers_job = docs["modelgate-loadtest-workers"]["spec"]
    [worker] = workers_job["template"]["spec"]["containers"]
    words = shlex.split(worker["args"][0].replace('"$JOB_COMPLETION_INDEX"', "0"))
    assert words[:3] == ["exec", "modelgate", "loadtest-worker"]
    worker_args = parser.parse_args(words[2:])
    assert master_args.remote_workers == worker_args.workers == workers_job["parallelism"] == workers_job["completions"]
    for field in ("host", "model", "protocol", "shape", "duration", "batch_size", "seed"):
        assert getattr(master_args, field) == getattr(worker_args, field), field
    assert worker_args.master == f"{docs['modelgate-loadtest-master']['metadata']['name']}:{master_args.master_port}"
