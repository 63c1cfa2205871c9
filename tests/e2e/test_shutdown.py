"""SIGTERM while requests are in flight: all complete with the right answer, exit code 0."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.server_process import ServerProcess
from tests.onnx_models import write_slow_model

pytestmark = pytest.mark.e2e
IN_FLIGHT = 6


def inflight(server: ServerProcess) -> float:
    text = httpx.get(f"http://127.0.0.1:{server.metrics}/metrics").text
    for family in text_string_to_metric_families(text):
        if family.name == "modelgate_inflight_requests":
            return sum(s.value for s in family.samples if s.labels.get("protocol") == "rest")
    return 0.0


def test_sigterm_drains_in_flight_requests(tmp_path: Path) -> None:
    # 24 x 1500^3 MatMul steps: seconds a request, so all six are in flight (two running, four queued) long
    # before the first two finish, even when this test process gets little of a busy machine.
    (tmp_path / "slow" / "config.yaml").parent.mkdir(parents=True)
    config = "backend: onnxruntime\ntimeout_seconds: 600\nparameters: {concurrency: 2}\n"  # 600: a hang guard
    (tmp_path / "slow" / "config.yaml").write_text(config)
    write_slow_model(tmp_path / "slow" / "1" / "model.onnx", repeats=24)
    # The grace is a hang guard here: three rounds of two such requests must drain on a busy machine.
    server = ServerProcess(tmp_path, env={"MODELGATE_SHUTDOWN_GRACE_SECONDS": "300"}).start()
    clients = [httpx.Client(timeout=300) for _ in range(IN_FLIGHT)]  # built before any request is sent
    try:
        with concurrent.futures.ThreadPoolExecutor(IN_FLIGHT) as pool:
            futures = [
                pool.submit(client.post, f"{server.url}/v2/models/slow/infer",
                            json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [float(i)]}]})
                for i, client in enumerate(clients)
            ]  # fmt: skip
            deadline = time.monotonic() + 30
            while inflight(server) < IN_FLIGHT:
                assert time.monotonic() < deadline, "requests never all got in flight"
                time.sleep(0.02)
            code = server.terminate(timeout=300)  # a hang guard
            responses = [f.result() for f in futures]
        assert code == 0, server.log()
        assert [r.status_code for r in responses] == [200] * IN_FLIGHT
        assert [r.json()["outputs"][0]["data"] for r in responses] == [[float(i)] for i in range(IN_FLIGHT)]
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/v2/health/live")
    finally:
        for client in clients:
            client.close()
        server.close()
