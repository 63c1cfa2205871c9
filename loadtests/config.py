"""What the runner tells the Locust process: one JSON file, named by Locust's ``--loadtest-config``.

The runner validates everything (target, model, shape) before Locust starts; the Locust side only
reads this file, so a locustfile run by hand needs nothing else.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from loadtests.answers import CheckMode
from loadtests.tensors import TensorSpec


class Protocol(StrEnum):
    """The wire protocols a run can use; each has one Locust user class."""

    REST = "rest"
    BINARY = "binary"
    GRPC = "grpc"
    TFS = "tfs"
    TFS_GRPC = "tfs_grpc"

    @property
    def grpc(self) -> bool:
        """Spoken over the gRPC port (``grpc://HOST:PORT``)."""
        return self in (Protocol.GRPC, Protocol.TFS_GRPC)

    @property
    def user_class(self) -> str:
        return _USER_CLASSES[self]

    @property
    def metrics_label(self) -> str:
        """The ``protocol`` label the gateway's ``modelgate_requests_total`` uses for this protocol."""
        return _METRICS_LABELS[self]


_USER_CLASSES = {
    Protocol.REST: "V2RestUser",
    Protocol.BINARY: "V2BinaryUser",
    Protocol.GRPC: "V2GrpcUser",
    Protocol.TFS: "TfsRestUser",
    Protocol.TFS_GRPC: "TfsGrpcUser",
}
_METRICS_LABELS = {
    Protocol.REST: "rest",
    Protocol.BINARY: "rest",
    Protocol.GRPC: "grpc",
    Protocol.TFS: "tfs_rest",
    Protocol.TFS_GRPC: "tfs_grpc",
}


class RunConfig(BaseModel):
    """One load-test run as the Locust process sees it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    version: str | None = None
    protocol: Protocol
    shape: str = Field(description="shape spec, KIND[:key=value,...] (see loadtests.shapes)")
    duration: float = Field(gt=0)
    batch_size: int = Field(default=1, ge=1)
    seed: int = 0
    pool_path: Path = Field(description="the .npz of inputs (and expected answers) requests draw from")
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batched: bool = Field(description="every input's first dimension is the batch (requests take rows of the pool)")
    check: CheckMode = CheckMode.GENERIC
    atol: float = 1e-5
    rtol: float = 1e-4
    answers_from: str = Field(default="", description="where the inputs (and answers) came from, for the report")
    processes: int = Field(default=1, ge=1, description="Locust worker processes sharing the load")
    results_path: Path = Field(description="where each Locust process writes raw latencies (one file per process)")
    stop_file: Path | None = Field(
        default=None, description="the run ends early (gracefully, like at its duration) once this file exists"
    )

    @property
    def request_name(self) -> str:
        """The name requests are recorded under in Locust's statistics: model and protocol."""
        return f"{self.model} [{self.protocol.value}]"

    def save(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        return cls.model_validate_json(path.read_bytes())
