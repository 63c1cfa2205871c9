"""Model manager: loading, health checks feeding readiness (with a file-controlled test backend)."""

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from gateway.core.backend import Backend, BackendRegistry
from gateway.core.models import ModelManager, VersionState
from gateway.core.repository import ModelRepository
from gateway.core.signature import declared_signature
from gateway.core.types import Signature
from gateway.metrics import Metrics
from tests.core.fakes import RecordingEvents

pytestmark = pytest.mark.anyio


class FileHealthBackend(Backend):
    """Healthy while ``<version>/healthy`` exists: lets a test flip health without timing."""

    name = "filehealth"

    async def load_impl(self) -> Signature:
        return declared_signature(self.source.name, self.source.config)

    async def infer_impl(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        self.events.retry("file", "local")  # as a remote backend reports a retried call
        return {name: inputs["x"] for name in outputs}

    async def health_impl(self) -> bool:
        return (self.source.version_dir / "healthy").exists()


CONFIG = """backend: filehealth
inputs: [{name: x, datatype: FP32, shape: [-1]}]
outputs: [{name: y, datatype: FP32, shape: [-1]}]
"""


async def test_health_checks_flip_readiness_both_ways(tmp_path: Path) -> None:
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "config.yaml").write_text(CONFIG)
    flag = tmp_path / "m" / "1" / "healthy"
    flag.touch()
    registry = BackendRegistry()
    registry.register(FileHealthBackend)
    events = RecordingEvents()
    manager = ModelManager(ModelRepository(tmp_path), registry, events)
    await manager.load_all()
    served = manager.resolve("m", None)
    assert served.ready
    flag.unlink()
    await manager.check_health()
    assert served.state is VersionState.UNAVAILABLE and served.reason == "backend health check failed"
    flag.touch()
    await manager.check_health()
    assert served.ready
    assert [call[3] for call in events.named("version_state")] == ["READY", "UNAVAILABLE", "READY"]


async def test_unhealthy_versions_are_unloaded_at_shutdown(tmp_path: Path) -> None:
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "config.yaml").write_text(CONFIG)
    registry = BackendRegistry()
    registry.register(FileHealthBackend)
    manager = ModelManager(ModelRepository(tmp_path), registry)
    await manager.load_all()
    await manager.check_health()  # no "healthy" file: the loaded version turns unhealthy
    backend = manager.resolve("m", None).backend
    assert backend is not None and not await backend.health()
    await manager.unload_all()
    with pytest.raises(RuntimeError, match="is not loaded"):
        _ = backend.signature  # unload() ran: the backend released what it held


async def test_unknown_backend_is_unavailable_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "config.yaml").write_text(CONFIG)
    manager = ModelManager(ModelRepository(tmp_path), BackendRegistry())
    await manager.load_all()
    (row,) = manager.index()
    assert (
        row["state"] == "UNAVAILABLE"
        and "backend 'filehealth' is not available in this gateway (available: )" in row["reason"]
    )


async def test_backend_events_reach_the_metrics(tmp_path: Path) -> None:
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "config.yaml").write_text(CONFIG)
    registry = BackendRegistry()
    registry.register(FileHealthBackend)
    metrics = Metrics()
    manager = ModelManager(ModelRepository(tmp_path), registry, events=metrics)
    await manager.load_all()
    backend = manager.resolve("m", None).backend
    assert backend is not None
    await backend.infer({"x": np.zeros(2, np.float32)}, ["y"])
    assert (
        metrics.registry.get_sample_value("modelgate_backend_retries_total", {"backend": "file", "endpoint": "local"})
        == 1
    )
    metrics.breaker_state("torchserve", "http://ts", True)
    assert (
        metrics.registry.get_sample_value(
            "modelgate_backend_circuit_open", {"backend": "torchserve", "endpoint": "http://ts"}
        )
        == 1
    )
