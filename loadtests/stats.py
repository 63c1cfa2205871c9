"""Client-side statistics of a run, from Locust's CSV and the exact latencies the recorder kept.

Counts and throughput come from Locust's own ``*_stats.csv`` (so the JSON summary and the CSV agree
by construction); percentiles come from the recorder's unrounded response times, because Locust's
are whole milliseconds. Locust's rounded percentiles are kept beside them for comparison.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

PERCENTILES = (50, 90, 95, 99)
_CSV_PERCENTILES = {"p50": "50%", "p90": "90%", "p95": "95%", "p99": "99%", "max": "100%"}


@dataclass(frozen=True)
class CsvRow:
    """One row of Locust's ``*_stats.csv`` (times in ms, as Locust rounds them)."""

    request_type: str
    name: str
    requests: int
    failures: int
    rps: float
    mean_ms: float
    percentiles_ms: dict[str, float]


@dataclass(frozen=True)
class Samples:
    """The recorder's exact samples for one request name."""

    response_ms: np.ndarray
    success: np.ndarray
    lag_ms: np.ndarray
    end_s: np.ndarray


@dataclass(frozen=True)
class ClientStats:
    """What the load generator saw for one model and protocol."""

    requests: int
    failures: int
    error_rate: float
    rps: float
    latency_ms: dict[str, float | None]
    mean_ms: float | None
    locust_latency_ms: dict[str, float]
    intended_latency_ms: dict[str, float | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return float("nan")


def read_stats_csv(path: Path) -> list[CsvRow]:
    """All rows of a Locust stats CSV, the ``Aggregated`` row included."""
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            CsvRow(
                request_type=row["Type"],
                name=row["Name"],
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"]),
                rps=_number(row["Requests/s"]),
                mean_ms=_number(row["Average Response Time"]),
                percentiles_ms={key: _number(row[column]) for key, column in _CSV_PERCENTILES.items()},
            )
            for row in csv.DictReader(handle)
        ]


def find_row(rows: list[CsvRow], name: str) -> CsvRow | None:
    return next((row for row in rows if row.name == name), None)


def load_samples(path: Path, name: str) -> Samples | None:
    """The recorder's samples for ``name``, or None when the file is missing (Locust crashed)."""
    if not path.exists():
        return None
    with np.load(path) as data:
        names = list(data["names"])
        if name not in names:
            return Samples(np.zeros(0), np.zeros(0, dtype=bool), np.zeros(0), np.zeros(0))
        keep = data["name_ids"] == names.index(name)
        return Samples(data["response_ms"][keep], data["success"][keep], data["lag_ms"][keep], data["end_s"][keep])


def load_schedule(path: Path) -> dict[str, float] | None:
    """The open-loop schedule's counters the recorder saved, or None for closed-loop runs."""
    if not path.exists():
        return None
    with np.load(path) as data:
        keys = [str(k) for k in data["schedule_keys"]]
        return dict(zip(keys, (float(v) for v in data["schedule_values"]), strict=True)) or None


def percentiles(values: np.ndarray) -> dict[str, float | None]:
    """p50/p90/p95/p99/max of ``values`` (None for an empty run)."""
    points: list[float | None] = [None] * len(PERCENTILES)
    if values.size:
        points = [float(v) for v in np.percentile(values, PERCENTILES)]
    out: dict[str, float | None] = {f"p{p}": v for p, v in zip(PERCENTILES, points, strict=True)}
    out["max"] = float(values.max()) if values.size else None
    return out


def client_stats(row: CsvRow, samples: Samples | None, open_loop: bool) -> ClientStats:
    """Combine Locust's counts with exact percentiles (Locust's rounded ones if samples are missing)."""
    if samples is not None and samples.response_ms.size:
        latency = percentiles(samples.response_ms)
        mean: float | None = float(samples.response_ms.mean())
    else:
        latency = {key: value for key, value in row.percentiles_ms.items()}
        mean = row.mean_ms if row.requests else None
    intended = percentiles(samples.response_ms + samples.lag_ms) if open_loop and samples is not None else {}
    return ClientStats(
        requests=row.requests,
        failures=row.failures,
        error_rate=row.failures / row.requests if row.requests else 0.0,
        rps=row.rps if row.requests else 0.0,
        latency_ms=latency,
        mean_ms=mean,
        locust_latency_ms=row.percentiles_ms,
        intended_latency_ms=intended,
    )
