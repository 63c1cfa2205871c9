"""Exact client-side latencies, kept beside Locust's own statistics.

Locust rounds the response times behind its percentiles to whole milliseconds (and coarser above
100 ms), which hides everything interesting about a gateway answering in about a millisecond. This
listener keeps every response time as Locust measured it (float ms), whether it succeeded, and the
open-loop schedule lag and the completion time, and writes them as one ``.npz`` when Locust quits.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np


class LatencyRecorder:
    """A ``request`` event listener; appending to lists costs well under a microsecond per request."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._name_index: dict[str, int] = {}
        self.name_ids: list[int] = []
        self.response_ms: list[float] = []
        self.success: list[bool] = []
        self.lag_ms: list[float] = []
        self.end_s: list[float] = []

    def on_request(
        self,
        name: str,
        response_time: float,
        exception: BaseException | None = None,
        context: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        index = self._name_index.get(name)
        if index is None:
            index = self._name_index[name] = len(self.names)
            self.names.append(name)
        self.name_ids.append(index)
        self.response_ms.append(float(response_time))
        self.success.append(exception is None)
        self.lag_ms.append(float((context or {}).get("lag_ms", 0.0)))
        self.end_s.append(time.time())

    def save(self, path: Path, schedule: dict[str, float] | None) -> None:
        """Write the samples (and the open-loop schedule's counters, if any)."""
        np.savez(
            path,
            names=np.asarray(self.names, dtype=str),
            name_ids=np.asarray(self.name_ids, dtype=np.int32),
            response_ms=np.asarray(self.response_ms, dtype=np.float64),
            success=np.asarray(self.success, dtype=bool),
            lag_ms=np.asarray(self.lag_ms, dtype=np.float64),
            end_s=np.asarray(self.end_s, dtype=np.float64),
            schedule_keys=np.asarray(list((schedule or {}).keys()), dtype=str),
            schedule_values=np.asarray(list((schedule or {}).values()), dtype=np.float64),
        )


def write_final_stats(environment: Any, csv_prefix: str) -> None:
    """Rewrite ``<prefix>_stats.csv`` and ``_failures.csv`` once every user has stopped.

    Locust's CSV writer refreshes these files once a second, so its last refresh can miss the
    final second and the requests users finished during the graceful stop; the HTML report and
    the printed summary do include them. Writing them again here (to a new file moved into place,
    so the periodic writer's open handle cannot overwrite it) makes the CSV agree with the rest.
    """
    import csv
    import os

    from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

    stats_csv = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for suffix, write in (("_stats.csv", stats_csv.requests_csv), ("_failures.csv", stats_csv.failures_csv)):
        target = f"{csv_prefix}{suffix}"
        with open(f"{target}.final", "w", newline="", encoding="utf-8") as handle:
            write(csv.writer(handle))
        os.replace(f"{target}.final", target)


def merge_results(parts: list[Path], out: Path) -> None:
    """Combine the files of several Locust worker processes into one, as if one process had run.

    Request names are re-numbered into one table; the open-loop counters add up (the late fraction
    and the lags are recomputed over all workers).
    """
    names: list[str] = []
    columns: dict[str, list[np.ndarray]] = {k: [] for k in ("name_ids", "response_ms", "success", "lag_ms", "end_s")}
    schedule: dict[str, float] = {}
    lag_total = 0.0
    for part in sorted(parts):
        with np.load(part) as data:
            local = [str(n) for n in data["names"]]
            for name in local:
                if name not in names:
                    names.append(name)
            mapping = np.asarray([names.index(n) for n in local] or [0], dtype=np.int32)
            columns["name_ids"].append(mapping[data["name_ids"]] if data["name_ids"].size else data["name_ids"])
            for key in ("response_ms", "success", "lag_ms", "end_s"):
                columns[key].append(data[key])
            counters = dict(zip((str(k) for k in data["schedule_keys"]), data["schedule_values"].tolist(), strict=True))
        if counters:
            schedule["claimed"] = schedule.get("claimed", 0.0) + counters["claimed"]
            schedule["late"] = schedule.get("late", 0.0) + counters["late"]
            schedule["max_lag_ms"] = max(schedule.get("max_lag_ms", 0.0), counters["max_lag_ms"])
            lag_total += counters["mean_lag_ms"] * counters["late"]
    if schedule:
        schedule["late_fraction"] = schedule["late"] / schedule["claimed"] if schedule["claimed"] else 0.0
        schedule["mean_lag_ms"] = lag_total / schedule["late"] if schedule["late"] else 0.0
    dtypes = {"name_ids": np.int32, "success": bool, "response_ms": np.float64, "lag_ms": np.float64, "end_s": float}
    merged = {
        key: np.concatenate(arrays).astype(dtypes[key]) if arrays else np.zeros(0, dtypes[key])
        for key, arrays in columns.items()
    }
    arrays: dict[str, Any] = {
        "names": np.asarray(names, dtype=str),
        **merged,
        "schedule_keys": np.asarray(list(schedule), dtype=str),
        "schedule_values": np.asarray(list(schedule.values()), dtype=np.float64),
    }
    np.savez(out, **arrays)
