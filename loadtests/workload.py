"""Everything the simulated users of one Locust process share: config, samples and the arrival schedule.

Built once per process on first use (not at import), from the file Locust's ``--loadtest-config``
names, so every user of an open-loop run claims slots from the same schedule.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field
from pathlib import Path

from loadtests.config import RunConfig
from loadtests.payloads import BatchSampler, DigitsSamples, load_samples
from loadtests.shapes import ArrivalSchedule, RateShape, parse_shape


@dataclass
class Workload:
    """Shared state of one Locust process's users."""

    config: RunConfig
    samples: DigitsSamples
    schedule: ArrivalSchedule | None
    _user_seeds: itertools.count[int] = field(default_factory=itertools.count)

    def sampler(self) -> BatchSampler:
        """A sampler with its own seed for each new user, so users do not send the same sequence."""
        return BatchSampler(self.samples, self.config.batch_size, self.config.seed * 100_003 + next(self._user_seeds))


def build_workload(config: RunConfig) -> Workload:
    shape = parse_shape(config.shape)
    schedule = ArrivalSchedule(shape.rps, shape.poisson(), config.seed) if isinstance(shape, RateShape) else None
    return Workload(config, load_samples(config.samples_path), schedule)


@functools.cache
def workload_for(config_path: str) -> Workload:
    """The process-wide workload for a config file (Locust runs one test per process)."""
    return build_workload(RunConfig.load(Path(config_path)))
