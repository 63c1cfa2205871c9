"""Server-side view of a run: the gateway's Prometheus metrics scraped before and after it.

The difference of two scrapes gives exactly the requests the run sent (the runner scrapes after
its own set-up requests and after Locust has exited), and the difference of the latency histograms
gives server-side percentiles to put beside the client's. Percentiles come from histogram buckets,
interpolated linearly inside a bucket the way PromQL's ``histogram_quantile`` does, so they are only
as fine as the gateway's buckets.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

REQUESTS = "modelgate_requests_total"
REQUEST_DURATION = "modelgate_request_duration_seconds"
BACKEND_DURATION = "modelgate_backend_inference_duration_seconds"
QUANTILES = (0.5, 0.9, 0.95, 0.99)


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Snapshot:
    """All samples of one scrape."""

    samples: tuple[Sample, ...]

    def total(self, name: str, **match: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``match``."""
        return sum(s.value for s in self.select(name, match))

    def select(self, name: str, match: Mapping[str, str]) -> Iterable[Sample]:
        return (s for s in self.samples if s.name == name and all(s.labels.get(k) == v for k, v in match.items()))

    def buckets(self, histogram: str, **match: str) -> dict[float, float]:
        """Cumulative bucket counts by upper bound, summed over the labels not in ``match``."""
        out: dict[float, float] = defaultdict(float)
        for sample in self.select(f"{histogram}_bucket", match):
            out[float(sample.labels["le"])] += sample.value
        return dict(out)


def parse(text: str) -> Snapshot:
    samples = tuple(
        Sample(s.name, dict(s.labels), float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    )
    return Snapshot(samples)


def scrape(url: str, timeout: float = 5.0) -> Snapshot | None:
    """One scrape, or None when the endpoint cannot be reached or parsed (the report then says so)."""
    try:
        response = httpx.get(url, timeout=timeout)
        response.raise_for_status()
        return parse(response.text)
    except (httpx.HTTPError, ValueError):
        return None


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """PromQL's ``histogram_quantile`` over cumulative ``{upper_bound: count}``; None without data."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return bounds[-1]


def bucket_delta(after: Mapping[float, float], before: Mapping[float, float]) -> dict[float, float]:
    return {bound: count - before.get(bound, 0.0) for bound, count in after.items()}


@dataclass(frozen=True)
class ServerStats:
    """What the gateway itself recorded for one model and protocol during the run."""

    requests: int
    by_status: dict[str, int]
    latency_ms: dict[str, float | None]
    mean_ms: float | None
    backend_latency_ms: dict[str, float | None]
    backend_mean_ms: float | None

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "by_status": self.by_status,
            "latency_ms": self.latency_ms,
            "mean_ms": self.mean_ms,
            "backend_latency_ms": self.backend_latency_ms,
            "backend_mean_ms": self.backend_mean_ms,
        }


def _status_counts(before: Snapshot, after: Snapshot, model: str, protocol: str) -> dict[str, int]:
    counts: dict[str, float] = defaultdict(float)
    match = {"model": model, "protocol": protocol}
    for sample in after.select(REQUESTS, match):
        counts[sample.labels.get("status", "")] += sample.value
    for sample in before.select(REQUESTS, match):
        counts[sample.labels.get("status", "")] -= sample.value
    return {status: round(n) for status, n in sorted(counts.items()) if round(n) != 0}


def _latency(before: Snapshot, after: Snapshot, histogram: str, match: dict[str, str]) -> dict[str, float | None]:
    delta = bucket_delta(after.buckets(histogram, **match), before.buckets(histogram, **match))
    out: dict[str, float | None] = {}
    for q in QUANTILES:
        value = histogram_quantile(q, delta)
        out[f"p{round(q * 100)}"] = None if value is None else 1000.0 * value
    return out


def _mean_ms(before: Snapshot, after: Snapshot, histogram: str, match: dict[str, str]) -> float | None:
    count = after.total(f"{histogram}_count", **match) - before.total(f"{histogram}_count", **match)
    total = after.total(f"{histogram}_sum", **match) - before.total(f"{histogram}_sum", **match)
    return 1000.0 * total / count if count > 0 else None


def server_stats(before: Snapshot, after: Snapshot, model: str, protocol: str) -> ServerStats:
    """The run's requests, statuses and latencies as the gateway counted them."""
    by_status = _status_counts(before, after, model, protocol)
    match = {"model": model, "protocol": protocol}
    backend = {"model": model}
    return ServerStats(
        requests=sum(by_status.values()),
        by_status=by_status,
        latency_ms=_latency(before, after, REQUEST_DURATION, match),
        mean_ms=_mean_ms(before, after, REQUEST_DURATION, match),
        backend_latency_ms=_latency(before, after, BACKEND_DURATION, backend),
        backend_mean_ms=_mean_ms(before, after, BACKEND_DURATION, backend),
    )
