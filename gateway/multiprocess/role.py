"""What a serving process started by the supervisor knows about its place among the workers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class WorkerRole:
    #: 0 .. count-1; worker 0 also serves the management API.
    index: int
    count: int
    #: The supervisor's run directory (settings, readiness board, metrics files).
    run_dir: Path
    #: Started in place of a worker that ended, while the others serve: it joins the shared ports only
    #: once its models are loaded, so the kernel hands it no connection it cannot serve yet.
    replacement: bool = False

    @property
    def serves_management(self) -> bool:
        return self.index == 0

    @property
    def metrics_dir(self) -> Path:
        return metrics_dir(self.run_dir)

    @property
    def board_dir(self) -> Path:
        return self.run_dir / "ready"


def metrics_dir(run_dir: Path) -> Path:
    """Where prometheus_client's multiprocess mode keeps every worker's values (``PROMETHEUS_MULTIPROC_DIR``)."""
    return run_dir / "metrics"


#: The refusal given to per-process deployment operations when several workers serve.
LOCAL_OPS_REFUSED = (
    "not available with workers > 1: each serving process has its own models, so a load or unload "
    "would reach one of them; start a rollout (it loads the version in every worker) or publish "
    "the version folder with repository_poll on"
)
