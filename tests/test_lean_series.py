"""The lock-free request-path series: exposed exactly as prometheus_client's own classes would expose the
same updates, one process or several (``--workers``, real processes writing prometheus_client's files)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.parser import text_string_to_metric_families

from gateway.lean_series import LeanHistogram
from gateway.metrics import LATENCY_BUCKETS, UNKNOWN, Metrics
from tests import lean_driver

ROOT = Path(__file__).resolve().parent.parent
_CREATED = re.compile(r"(_created(?:\{[^}]*\})?) \S+")


def _masked(text: bytes) -> str:
    """The exposition with each ``_created`` value (a creation time) replaced; the lines themselves stay."""
    return _CREATED.sub(r"\1 <time>", text.decode())


@pytest.mark.parametrize("render", [generate_latest, openmetrics.generate_latest], ids=["text", "openmetrics"])
def test_lean_families_expose_what_prometheus_client_would(render: Callable[[CollectorRegistry], bytes]) -> None:
    expected, got = CollectorRegistry(), CollectorRegistry()
    reference, lean = lean_driver.reference(expected), lean_driver.lean(got)
    for part in (1, 2):
        lean_driver.drive(reference, part)
        lean_driver.drive(lean, part)
    text = _masked(render(got))
    assert text == _masked(render(expected))
    assert "_created" in text and 't_duration_seconds_bucket{le="0.001",model="a"}' in text


def test_a_histogram_bucket_counts_observations_up_to_and_including_its_bound() -> None:
    registry = CollectorRegistry()
    histogram = LeanHistogram("h", "H.", ["x"], registry, buckets=(0.001, 0.01, 1.0))
    child = histogram.labels("1")
    for seconds in (0.0, 0.001, 0.00100001, 0.01, 0.5, 1.0, 1.0000001, 7.0):
        child.observe(seconds)
    bucket = {
        le: registry.get_sample_value("h_bucket", {"x": "1", "le": le}) for le in ("0.001", "0.01", "1.0", "+Inf")
    }
    assert bucket == {"0.001": 2.0, "0.01": 4.0, "1.0": 6.0, "+Inf": 8.0}
    assert registry.get_sample_value("h_count", {"x": "1"}) == 8.0
    assert registry.get_sample_value("h_sum", {"x": "1"}) == pytest.approx(9.51200011)


def test_a_family_refuses_the_wrong_number_of_label_values() -> None:
    histogram = LeanHistogram("h", "H.", ["x", "y"], CollectorRegistry(), buckets=LATENCY_BUCKETS)
    with pytest.raises(ValueError, match="h: expected 2 label values, got 1"):
        histogram.labels("1")


def test_the_request_path_series_keep_model_labels_bounded() -> None:
    metrics = Metrics()
    metrics.set_known_models(["m"], {"m": ["1"]})
    metrics.observe_request("m", "1", "rest", "200", "success", 0.002)
    metrics.observe_request("m", "7", "rest", "404", "client_error", 0.001)  # a version the repository lacks
    metrics.observe_request("made-up", "1", "grpc", "NOT_FOUND", "client_error", 0.001)
    metrics.inflight_for("rest").inc()
    metrics.batch("m", 1, 3, [0.0005, 0.002])
    value = metrics.registry.get_sample_value
    assert value("modelgate_requests_total", {"model": "m", "version": "1", "protocol": "rest", "status": "200"}) == 1
    assert value("modelgate_requests_total", {"model": "m", "version": "", "protocol": "rest", "status": "404"}) == 1
    unknown = {"model": UNKNOWN, "version": "", "protocol": "grpc", "outcome": "client_error"}
    assert value("modelgate_request_duration_seconds_count", unknown) == 1
    assert value("modelgate_inflight_requests", {"protocol": "rest"}) == 1
    assert value("modelgate_batch_size_bucket", {"model": "m", "version": "1", "le": "2.0"}) == 0
    assert value("modelgate_batch_size_bucket", {"model": "m", "version": "1", "le": "4.0"}) == 1
    assert value("modelgate_queue_time_seconds_count", {"model": "m", "version": "1"}) == 2


def _run(mode: str, directory: Path) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "tests.lean_driver", mode], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def _summed(directory: Path) -> str:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, str(directory))  # type: ignore[no-untyped-call]
    return generate_latest(registry).decode()


def _families(text: str) -> list[tuple[str, str, str, list[tuple[str, list[tuple[str, str]], float]]]]:
    """A scrape as data, in a fixed order (the multiprocess collector orders families as it finds the files)."""
    return sorted(
        (f.name, f.documentation, f.type, sorted((s.name, sorted(s.labels.items()), s.value) for s in f.samples))
        for f in text_string_to_metric_families(text)
    )


def test_workers_flushing_lean_series_sum_to_what_prometheus_client_workers_would(tmp_path: Path) -> None:
    expected, got = tmp_path / "reference", tmp_path / "lean"
    for directory, mode in ((expected, "reference"), (got, "lean")):
        directory.mkdir()
        for _ in range(2):  # two worker processes, one after the other, summed by the scrape
            _run(mode, directory)
    text = _summed(got)
    assert _families(text) == _families(_summed(expected))
    assert 't_requests_total{model="a",status="200"} 8.0' in text
    assert 't_inflight{protocol="rest"} 6.0' in text  # livesum over the two processes' last values


def _requests(text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "modelgate_requests_total" and sample.labels["model"] == "digits"
    )


def test_a_worker_flushes_before_answering_a_scrape_and_when_told(tmp_path: Path) -> None:
    scraped = _run("metrics", tmp_path)  # three requests, then a scrape through the worker's own exposition
    assert _requests(scraped) == 3
    assert 'modelgate_inflight_requests{protocol="rest"} 1.0' in scraped
    text = _summed(tmp_path)  # two more, a backend call and a batch, then a flush
    assert _requests(text) == 5
    assert (
        'modelgate_backend_inference_duration_seconds_count{backend="onnxruntime",model="digits",version="1"} 1.0'
        in text
    )
    assert 'modelgate_queue_time_seconds_bucket{le="0.00025",model="digits",version="1"} 1.0' in text
