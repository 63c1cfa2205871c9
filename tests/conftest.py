"""Shared fixtures: a model repository with real ONNX models, built once per session."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from anyio.pytest_plugin import get_runner

from gateway.core.dataplane import DataPlane
from tests.harness import Served, loaded
from tests.onnx_models import write_digits_repo, write_model


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def _one_event_loop_per_worker() -> Iterator[None]:
    """Hold anyio's test runner for the whole session: every async test and fixture of a worker runs
    on one event loop, which is never closed under a library still holding it. grpc.aio binds its
    completion-queue poller to the loop it first ran on; with a loop per test, a late callback from
    that poller could hit a closed loop ("Event loop is closed") depending on teardown order."""
    with get_runner("asyncio", {}):
        yield


@pytest.fixture(scope="session")
def demo_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository holding only the demo digits MLP."""
    repo = tmp_path_factory.mktemp("demo_repo")
    write_digits_repo(repo)
    return repo


@pytest.fixture(scope="session")
def _mixed_repo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("mixed_template")
    write_digits_repo(repo)
    write_model(repo, "types", "backend: onnxruntime\n")
    write_model(repo, "broken", "backend: onnxruntime\nmax_batch_size: -3\n")
    return repo


@pytest.fixture
def mixed_repo(_mixed_repo_template: Path, tmp_path: Path) -> Path:
    """digits_mlp + an identity model of every datatype + a model with an invalid config."""
    repo = tmp_path / "repo"
    shutil.copytree(_mixed_repo_template, repo)
    return repo


@pytest.fixture
async def served(mixed_repo: Path) -> AsyncIterator[Served]:
    async with loaded(mixed_repo) as s:
        yield s


@pytest.fixture
async def dataplane(served: Served) -> DataPlane:
    return served.dataplane
