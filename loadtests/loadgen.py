"""How hard the load generator itself worked: Locust's CPU, sampled while it runs.

Locust runs user code in one Python process (gevent, one OS thread), so it cannot use more than
one core; measured here it tops out near 1.7k requests/s with ``HttpUser`` and 7.7k with
``FastHttpUser``, at 100% of a core either way. When it sits near that ceiling the latencies it
reports include its own queueing and the throughput is its limit, not the server's; the report
flags such runs instead of presenting them as server figures.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

#: Mean CPU (percent of one core) from which the load generator counts as the bottleneck.
BOTTLENECK_PERCENT = 90.0


@dataclass(frozen=True)
class LoadgenStats:
    """CPU of the Locust process over the run (percent of one core; 100 = a full core)."""

    cpu_seconds: float
    wall_seconds: float
    mean_percent: float
    max_percent: float
    timeline: list[tuple[float, float]] = field(default_factory=list)
    cores: int = 1
    timeline_origin: float = 0.0
    """Unix time the timeline's seconds count from (the start of the load phase)."""
    machine_busy_percent: float = 0.0
    """How busy all cores together were over the load phase (100 = every core fully used)."""
    processes: int = 1
    """Locust processes generating load (the workers; a master only coordinates)."""

    @property
    def bottleneck(self) -> bool:
        """Each generating process used, on average, at least the threshold of its one core."""
        return self.mean_percent >= BOTTLENECK_PERCENT * self.processes

    @property
    def machine_saturated(self) -> bool:
        """Every core was busy: server and load generator competed for CPU (with each other or others)."""
        return self.machine_busy_percent >= BOTTLENECK_PERCENT

    def as_dict(self) -> dict[str, object]:
        return asdict(self) | {
            "bottleneck": self.bottleneck,
            "machine_saturated": self.machine_saturated,
            "bottleneck_threshold_percent": BOTTLENECK_PERCENT,
        }


class CpuMonitor:
    """Samples a process's (and its children's) CPU time; call :meth:`sample` periodically."""

    def __init__(self, pids: int | list[int], master: bool = False) -> None:
        """``pids``: the Locust process(es), children included; with ``master`` the first only coordinates."""
        pid_list = [pids] if isinstance(pids, int) else pids
        self._processes = [psutil.Process(pid) for pid in pid_list]
        self._generators = max(1, len(pid_list) - (1 if master else 0))
        self._start = time.time()
        self._last_time = self._start
        self._last_cpu = 0.0
        self._cpu = 0.0
        self._timeline: list[tuple[float, float]] = []
        self._machine: list[tuple[float, float]] = []
        self._last_machine = psutil.cpu_times()

    def _cpu_seconds(self) -> float:
        try:
            total = 0.0
            for root in self._processes:
                for process in (root, *root.children(recursive=True)):
                    times = process.cpu_times()
                    total += times.user + times.system
            self._cpu = max(self._cpu, total)
        except psutil.Error:
            pass  # the process exited between samples; keep the last reading
        return self._cpu

    def sample(self) -> None:
        """Record the CPU used since the previous sample, stamped with the wall-clock time (Unix)."""
        now = time.time()
        cpu = self._cpu_seconds()
        machine = psutil.cpu_times()
        if now > self._last_time:
            percent = 100.0 * (cpu - self._last_cpu) / (now - self._last_time)
            self._timeline.append((now, percent))
            self._machine.append((now, _busy_percent(self._last_machine, machine)))
        self._last_time, self._last_cpu, self._last_machine = now, cpu, machine

    def result(self, window: tuple[float, float] | None = None) -> LoadgenStats:
        """Totals over the whole process life; mean and max only over ``window`` (Unix seconds).

        The window should be the load phase (Locust's first to last history row): start-up imports
        and the HTML report at exit also burn a full core and would otherwise look like a bottleneck.
        """
        start, end = window if window is not None else (self._start, self._last_time)
        steady = _within(self._timeline, start, end)
        machine = _within(self._machine, start, end)
        return LoadgenStats(
            cpu_seconds=round(self._cpu, 3),
            wall_seconds=round(max(self._last_time - self._start, 0.0), 3),
            mean_percent=round(sum(steady) / len(steady), 1),
            max_percent=round(max(steady), 1),
            timeline=[(round(t - start, 2), round(p, 1)) for t, p in self._timeline],
            cores=psutil.cpu_count() or 1,
            timeline_origin=start,
            machine_busy_percent=round(sum(machine) / len(machine), 1),
            processes=self._generators,
        )


def _within(series: list[tuple[float, float]], start: float, end: float) -> list[float]:
    """Values sampled inside the window (all of them if none is, so a very short run still reports)."""
    return [p for t, p in series if start < t <= end + 0.5] or [p for _, p in series] or [0.0]


def _busy_percent(before: Any, after: Any) -> float:
    """Share of all cores' time spent not idle between two ``psutil.cpu_times()`` readings."""
    total = sum(after) - sum(before)
    idle = (after.idle + getattr(after, "iowait", 0.0)) - (before.idle + getattr(before, "iowait", 0.0))
    return 100.0 * (total - idle) / total if total > 0 else 0.0
