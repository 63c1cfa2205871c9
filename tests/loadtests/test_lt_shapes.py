"""Load shapes and the open-loop arrival schedule (pure Python, no Locust)."""

from __future__ import annotations

import itertools

import pytest

from loadtests.errors import LoadTestError
from loadtests.shapes import (
    LATE_AFTER_SECONDS,
    ArrivalSchedule,
    ConstantShape,
    PoissonShape,
    RateShape,
    SpikeShape,
    StepShape,
    parse_shape,
)


class FakeClock:
    """A clock the test advances by hand, so schedule arithmetic is exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_parse_each_kind_with_defaults_and_values() -> None:
    assert parse_shape("constant") == ConstantShape()
    assert parse_shape("constant:users=8") == ConstantShape(users=8)
    assert parse_shape("step:start=2,step=3,every=5,max=11") == StepShape(start=2, step=3, every=5, max=11)
    assert parse_shape("spike: base=1, peak=9, at=2, hold=3") == SpikeShape(base=1, peak=9, at=2, hold=3)
    rate = parse_shape("rate:rps=120,users=10")
    assert isinstance(rate, RateShape) and rate.open_loop and not rate.poisson()
    poisson = parse_shape("poisson:rps=50")
    assert isinstance(poisson, PoissonShape) and poisson.poisson() and poisson.rps == 50


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("ramp:users=3", "unknown kind 'ramp'"),
        ("constant:user=3", "field 'user'"),
        ("constant:users=many", "field 'users'"),
        ("constant:users=0", "field 'users'"),
        ("step:every", "expected key=value"),
        ("poisson:rps=-5", "field 'rps'"),
    ],
)
def test_bad_shape_names_the_problem(spec: str, message: str) -> None:
    with pytest.raises(LoadTestError, match=message):
        parse_shape(spec)


def test_step_adds_users_until_max() -> None:
    shape = StepShape(start=2, step=3, every=5, max=9)
    assert [shape.users_at(t) for t in (0, 4.9, 5, 10, 15, 60)] == [2, 2, 5, 8, 9, 9]
    assert shape.peak_users() == 9


def test_spike_holds_peak_then_returns_to_base() -> None:
    shape = SpikeShape(base=2, peak=16, at=5, hold=3)
    assert [shape.users_at(t) for t in (0, 4.99, 5, 7.99, 8, 20)] == [2, 2, 16, 16, 2, 2]


def test_tick_stops_at_duration_and_spawns_fast_enough() -> None:
    shape = ConstantShape(users=6)
    assert shape.tick(0.0, 10.0) == (6, 6.0)
    assert shape.tick(9.9, 10.0) == (6, 6.0)
    assert shape.tick(10.0, 10.0) is None


def test_constant_rate_slots_are_evenly_spaced() -> None:
    clock = FakeClock()
    schedule = ArrivalSchedule(rps=100, poisson=False, clock=clock)
    slots = [schedule.claim() - clock.now for _ in range(5)]
    assert slots == pytest.approx([0.0, 0.01, 0.02, 0.03, 0.04])
    assert schedule.stats()["claimed"] == 5


def test_slots_sent_late_are_counted_as_lag() -> None:
    clock = FakeClock()
    schedule = ArrivalSchedule(rps=10, poisson=False, clock=clock)
    assert schedule.started(schedule.claim()) == 0.0
    slot = schedule.claim()  # due 0.1 s after the first
    clock.now += 0.5  # every user was busy until now
    lag = schedule.started(slot)
    assert lag == pytest.approx(0.4) and lag > LATE_AFTER_SECONDS
    stats = schedule.stats()
    assert stats["late"] == 1 and stats["claimed"] == 2
    assert stats["max_lag_ms"] == pytest.approx(400.0)
    assert stats["late_fraction"] == pytest.approx(0.5)


def test_poisson_gaps_average_one_over_rate() -> None:
    clock = FakeClock()
    schedule = ArrivalSchedule(rps=200, poisson=True, seed=3, clock=clock)
    slots = [schedule.claim() for _ in range(20_001)]
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert sum(gaps) / len(gaps) == pytest.approx(1 / 200, rel=0.03)
    assert len(set(gaps)) > 19_000  # exponential gaps, not a fixed interval
