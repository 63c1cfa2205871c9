"""Fixtures for the deploy/ tests: a real gateway under load, shared by the module's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.deploy.gateway_load import deploy_round, load_round, refusing_port, start_gateway, write_repo
from tests.e2e.server_process import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``modelgate serve`` on free ports that has answered one round of every kind of request and been
    through a failed deployment and an aborted rollout."""
    refused = refusing_port()
    server = start_gateway(write_repo(tmp_path_factory.mktemp("deploy_repo"), refused.getsockname()[1]))
    try:
        with httpx.Client(timeout=30) as client:
            load_round(client, server.url)
            deploy_round(client, server.management_url)
        yield server
    finally:
        server.close()
        refused.close()


@pytest.fixture(scope="module")
def metrics_page(gateway: ServerProcess) -> str:
    """The gateway's real /metrics text."""
    response = httpx.get(f"http://127.0.0.1:{gateway.metrics}/metrics", timeout=10)
    assert response.status_code == 200
    return response.text
