"""Server-side statistics from real gateway metrics, client statistics, and the load generator's CPU."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from prometheus_client import generate_latest

from gateway.metrics import Metrics
from loadtests import prometheus
from loadtests.loadgen import BOTTLENECK_PERCENT, CpuMonitor, LoadgenStats
from loadtests.report import finite
from loadtests.stats import CsvRow, Samples, client_stats, percentiles


def snapshot(metrics: Metrics) -> prometheus.Snapshot:
    return prometheus.parse(generate_latest(metrics.registry).decode())


def test_server_stats_are_the_difference_between_scrapes() -> None:
    metrics = Metrics()
    metrics.set_known_models(["digits_mlp"])
    metrics.observe_request("digits_mlp", "1", "rest", "200", "success", 0.004)
    metrics.observe_request("digits_mlp", "1", "grpc", "OK", "success", 0.004)
    before = snapshot(metrics)
    durations = (0.0003, 0.0004, 0.0007, 0.0009, 0.002, 0.003, 0.004, 0.02)
    for seconds in durations:
        metrics.observe_request("digits_mlp", "1", "rest", "200", "success", seconds)
    metrics.observe_request("digits_mlp", "1", "rest", "400", "client_error", 0.0002)
    metrics.observe_request("digits_mlp", "1", "grpc", "OK", "success", 0.5)
    stats = prometheus.server_stats(before, snapshot(metrics), "digits_mlp", "rest")
    assert stats.requests == 9
    assert stats.by_status == {"200": 8, "400": 1}
    p50, p99 = stats.latency_ms["p50"], stats.latency_ms["p99"]
    assert p50 is not None and p99 is not None
    assert 0.5 <= p50 <= 1.0  # the median (5th of 9) lies in the (0.5 ms, 1 ms] bucket
    assert 10.0 <= p99 <= 25.0  # the slowest (20 ms) lies in the (10 ms, 25 ms] bucket
    assert stats.mean_ms == pytest.approx(1000 * (sum(durations) + 0.0002) / 9)
    assert stats.backend_mean_ms is None  # nothing recorded the backend histogram


def test_histogram_quantile_matches_promql() -> None:
    buckets = {0.1: 0.0, 0.2: 50.0, 0.4: 100.0, float("inf"): 100.0}
    assert prometheus.histogram_quantile(0.5, buckets) == pytest.approx(0.2)
    assert prometheus.histogram_quantile(0.75, buckets) == pytest.approx(0.3)
    assert prometheus.histogram_quantile(0.25, buckets) == pytest.approx(0.15)
    assert prometheus.histogram_quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None


def test_unreachable_metrics_are_none() -> None:
    assert prometheus.scrape("http://127.0.0.1:1/metrics", timeout=2) is None


def test_client_percentiles_are_exact_not_rounded() -> None:
    row = CsvRow("POST", "m [rest]", 4, 1, 100.0, 2.0, {"p50": 1.0, "p90": 3.0, "p95": 3.0, "p99": 3.0, "max": 3.0})
    response_ms = np.array([0.4, 0.6, 1.2, 2.6])
    samples = Samples(response_ms, np.array([True, True, False, True]), np.array([0.0, 0.0, 0.5, 0.0]), np.zeros(4))
    stats = client_stats(row, samples, open_loop=True)
    assert (stats.requests, stats.failures, stats.error_rate) == (4, 1, 0.25)
    assert stats.latency_ms["p50"] == pytest.approx(0.9)
    assert stats.latency_ms["max"] == pytest.approx(2.6)
    assert stats.locust_latency_ms["p50"] == 1.0
    assert stats.intended_latency_ms["max"] == pytest.approx(2.6)
    assert stats.intended_latency_ms["p50"] == pytest.approx(1.15)  # includes the late slot's lag


def test_client_stats_fall_back_to_locust_without_samples() -> None:
    row = CsvRow("POST", "m [rest]", 10, 0, 50.0, 2.0, {"p50": 2.0, "p90": 4.0, "p95": 5.0, "p99": 9.0, "max": 12.0})
    stats = client_stats(row, None, open_loop=False)
    assert stats.latency_ms == row.percentiles_ms and stats.intended_latency_ms == {}
    assert percentiles(np.zeros(0)) == {"p50": None, "p90": None, "p95": None, "p99": None, "max": None}


def test_summary_json_has_no_nan() -> None:
    cleaned = finite({"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": 2}})
    assert json.loads(json.dumps(cleaned, allow_nan=False)) == {"a": None, "b": [1.0, None], "c": {"d": 2}}


def test_cpu_monitor_measures_a_busy_process() -> None:
    process = subprocess.Popen([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"])
    monitor = CpuMonitor(process.pid)
    while process.poll() is None:
        monitor.sample()
        try:
            process.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            continue
    monitor.sample()
    result = monitor.result()
    assert process.returncode == 0
    assert result.cpu_seconds > 0
    assert result.timeline


def test_bottleneck_flag_follows_the_threshold() -> None:
    assert LoadgenStats(10.0, 10.0, BOTTLENECK_PERCENT, 100.0).bottleneck
    assert not LoadgenStats(5.0, 10.0, BOTTLENECK_PERCENT - 1, 95.0).bottleneck
