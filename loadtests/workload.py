"""Everything the simulated users of one Locust process share: config, input pool, checker, schedule.

Built once per process on first use (not at import), from the file Locust's ``--loadtest-config``
names, so every user of an open-loop run claims slots from the same schedule. With several Locust
worker processes (``--processes N``, or workers on other machines), each process takes 1/N of an
open-loop rate and its own seed; ``MODELGATE_LOADTEST_WORKER`` (set by the runner) numbers them.
"""

from __future__ import annotations

import functools
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

from loadtests.answers import Checker
from loadtests.config import RunConfig
from loadtests.shapes import ArrivalSchedule, RateShape, parse_shape
from loadtests.tensors import Pool, Sampler, load_pool

WORKER_ENV = "MODELGATE_LOADTEST_WORKER"


def worker_index() -> int | None:
    """This process's worker number when the runner started it as one of several, else None."""
    value = os.environ.get(WORKER_ENV, "")
    return int(value) if value.isdigit() else None


def results_file(config: RunConfig) -> Path:
    """Where this process writes its raw latencies: ``latencies.npz``, or ``latencies.wN.npz`` for worker N."""
    index = worker_index()
    path = Path(config.results_path)
    return path if index is None else path.with_name(f"{path.stem}.w{index}{path.suffix}")


@dataclass
class Workload:
    """Shared state of one Locust process's users."""

    config: RunConfig
    pool: Pool
    checker: Checker
    schedule: ArrivalSchedule | None
    _user_seeds: itertools.count[int] = field(default_factory=itertools.count)

    def sampler(self) -> Sampler:
        """A sampler with its own seed for each new user, so users do not send the same sequence."""
        seed = (self.config.seed * 100_003 + (worker_index() or 0) * 7_919) * 31 + next(self._user_seeds)
        return Sampler(self.pool, self.config.batched, self.config.batch_size, seed)


def build_workload(config: RunConfig) -> Workload:
    shape = parse_shape(config.shape)
    schedule = None
    if isinstance(shape, RateShape):
        seed = config.seed * 1_009 + (worker_index() or 0)
        schedule = ArrivalSchedule(shape.rps / config.processes, shape.poisson(), seed)
    checker = Checker(config.outputs, config.batched, config.check, config.atol, config.rtol)
    return Workload(config, load_pool(config.pool_path), checker, schedule)


@functools.cache
def workload_for(config_path: str) -> Workload:
    """The process-wide workload for a config file (Locust runs one test per process)."""
    return build_workload(RunConfig.load(Path(config_path)))
