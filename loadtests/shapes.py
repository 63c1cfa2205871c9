"""Load shapes: how many simulated users run at each moment, and (open loop) when requests arrive.

A shape is written on the command line as ``KIND[:key=value,...]``, for example ``constant:users=8``,
``step:start=2,step=2,every=5,max=10``, ``spike:base=2,peak=16,at=5,hold=5``, ``rate:rps=200,users=32``
or ``poisson:rps=200,users=32``.

Closed-loop shapes (constant, step, spike) keep N users each sending its next request as soon as the
previous one returns; the offered load then falls when the server slows down, which hides queueing.
Open-loop shapes (rate, poisson) fix the *arrival* times instead: one shared :class:`ArrivalSchedule`
hands out send times (evenly spaced, or with exponential gaps for a Poisson process) and a pool of
``users`` simulated users takes them in order, each sleeping until its slot. Arrivals therefore do not
wait for earlier responses as long as some user is idle; when all users are busy a slot is taken late,
and that lag is recorded so the report can say the pool was too small (the run then degrades towards
closed loop, and the report flags it instead of hiding it).

This module is pure Python: Locust's ``LoadTestShape`` adapter lives in :mod:`loadtests.locustfile`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loadtests.errors import LoadTestError


class Shape(BaseModel):
    """Common interface: the user count (and spawn rate) at ``elapsed`` seconds into the run."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: ClassVar[str] = ""
    open_loop: ClassVar[bool] = False

    def users_at(self, elapsed: float) -> int:
        raise NotImplementedError

    def spawn_rate(self) -> float:
        """Users started per second; high enough that each level is reached within a second."""
        return float(max(1, self.peak_users()))

    def peak_users(self) -> int:
        raise NotImplementedError

    def tick(self, elapsed: float, duration: float) -> tuple[int, float] | None:
        """What Locust's ``LoadTestShape.tick`` returns: ``(users, spawn_rate)``, or None to stop."""
        if elapsed >= duration:
            return None
        return self.users_at(elapsed), self.spawn_rate()


class ConstantShape(Shape):
    """A fixed number of users for the whole run."""

    kind: ClassVar[str] = "constant"
    users: int = Field(default=4, ge=1, le=10_000)

    def users_at(self, elapsed: float) -> int:
        return self.users

    def peak_users(self) -> int:
        return self.users


class StepShape(Shape):
    """Start with ``start`` users and add ``step`` every ``every`` seconds, up to ``max``."""

    kind: ClassVar[str] = "step"
    start: int = Field(default=1, ge=1)
    step: int = Field(default=1, ge=1)
    every: float = Field(default=5.0, gt=0)
    max: int = Field(default=16, ge=1, le=10_000)

    def users_at(self, elapsed: float) -> int:
        return min(self.max, self.start + self.step * int(elapsed // self.every))

    def peak_users(self) -> int:
        return self.max


class SpikeShape(Shape):
    """``base`` users, jumping to ``peak`` users at ``at`` seconds for ``hold`` seconds, then back."""

    kind: ClassVar[str] = "spike"
    base: int = Field(default=2, ge=1)
    peak: int = Field(default=16, ge=1, le=10_000)
    at: float = Field(default=5.0, ge=0)
    hold: float = Field(default=5.0, gt=0)

    def users_at(self, elapsed: float) -> int:
        return self.peak if self.at <= elapsed < self.at + self.hold else self.base

    def peak_users(self) -> int:
        return max(self.base, self.peak)


class RateShape(Shape):
    """Open loop: ``rps`` arrivals per second, evenly spaced, served by a pool of ``users``."""

    kind: ClassVar[str] = "rate"
    open_loop: ClassVar[bool] = True
    rps: float = Field(default=50.0, gt=0, le=100_000)
    users: int = Field(default=16, ge=1, le=10_000)

    def users_at(self, elapsed: float) -> int:
        return self.users

    def peak_users(self) -> int:
        return self.users

    def poisson(self) -> bool:
        return False


class PoissonShape(RateShape):
    """Open loop: a Poisson arrival process of mean ``rps`` per second (exponential gaps)."""

    kind: ClassVar[str] = "poisson"

    def poisson(self) -> bool:
        return True


SHAPES: dict[str, type[Shape]] = {s.kind: s for s in (ConstantShape, StepShape, SpikeShape, RateShape, PoissonShape)}


def parse_shape(spec: str) -> Shape:
    """Parse ``KIND[:key=value,...]``; a bad kind, key or value raises :class:`LoadTestError` naming it."""
    kind, _, params = spec.strip().partition(":")
    shape_type = SHAPES.get(kind)
    if shape_type is None:
        raise LoadTestError(f"--shape: unknown kind {kind!r}; expected one of {', '.join(SHAPES)}")
    values: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in params.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise LoadTestError(f"--shape {kind}: expected key=value, got {item!r}")
        values[key.strip()] = value.strip()
    try:
        return shape_type.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or kind
        raise LoadTestError(f"--shape {kind}: field {field!r}: {first['msg']}") from None


class ArrivalSchedule:
    """Shared open-loop send times; every user of one Locust process claims slots from one instance.

    Gevent runs all users on one OS thread and ``claim`` never yields, so no lock is needed.
    """

    def __init__(self, rps: float, poisson: bool, seed: int = 0, clock: Callable[[], float] = time.monotonic):
        self._gap = 1.0 / rps
        self._poisson = poisson
        self._rng = random.Random(seed)
        self._clock = clock
        self._next: float | None = None
        self.claimed = 0
        self.late = 0
        self.lag_total = 0.0
        self.lag_max = 0.0

    def now(self) -> float:
        return self._clock()

    def claim(self) -> float:
        """The send time (on this schedule's clock) of the next arrival; the caller waits until then."""
        if self._next is None:
            self._next = self._clock()
        slot = self._next
        self._next = slot + (self._rng.expovariate(1.0 / self._gap) if self._poisson else self._gap)
        self.claimed += 1
        return slot

    def started(self, slot: float) -> float:
        """Record that the request for ``slot`` is being sent now; returns how late that is (seconds).

        Lateness has two causes, both counted: no user was free when the slot came (the pool is too
        small), or the load generator's event loop woke the user late (Locust is short of CPU).
        """
        lag = max(0.0, self._clock() - slot)
        if lag > LATE_AFTER_SECONDS:
            self.late += 1
            self.lag_total += lag
            self.lag_max = max(self.lag_max, lag)
        return lag

    def stats(self) -> dict[str, float]:
        """Counts for the report: how many slots were taken late and by how much."""
        return {
            "claimed": self.claimed,
            "late": self.late,
            "late_fraction": self.late / self.claimed if self.claimed else 0.0,
            "mean_lag_ms": 1000 * self.lag_total / self.late if self.late else 0.0,
            "max_lag_ms": 1000 * self.lag_max,
        }


#: A slot taken more than this late means no user was free when it was due.
LATE_AFTER_SECONDS = 0.002
