"""The Prometheus series the gateway exports, read back from its registry as a scrape would."""

from __future__ import annotations

from gateway.metrics import Metrics


def _weights(metrics: Metrics) -> dict[tuple[str, str], float]:
    return {
        (s.labels["model"], s.labels["version"]): s.value
        for family in metrics.registry.collect()
        if family.name == "modelgate_traffic_weight"
        for s in family.samples
    }


def test_traffic_weight_series_follow_the_current_split() -> None:
    metrics = Metrics()
    metrics.traffic_weights("m", {"1": 80.0, "2": 20.0})
    metrics.traffic_weights("other", {"1": 100.0})
    assert _weights(metrics) == {("m", "1"): 80.0, ("m", "2"): 20.0, ("other", "1"): 100.0}

    metrics.traffic_weights("m", {"2": 100.0})  # version 1 left the repository
    assert _weights(metrics) == {("m", "2"): 100.0, ("other", "1"): 100.0}


def test_a_model_no_longer_served_loses_its_weights() -> None:
    metrics = Metrics()
    metrics.traffic_weights("m", {"1": 100.0})
    metrics.traffic_weights("other", {"3": 100.0})
    metrics.models_changed(["other"], {"other": ["3"]})
    assert _weights(metrics) == {("other", "3"): 100.0}
    metrics.traffic_weights("m", {"1": 100.0})  # loaded again later
    assert _weights(metrics) == {("m", "1"): 100.0, ("other", "3"): 100.0}
