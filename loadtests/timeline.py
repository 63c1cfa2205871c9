"""The data of the rollout scenario's timeline: traffic weight per version, error rate and p99 per second, decisions.

The weights are the gateway's: the split before the first rollout (``GET /api/models``) and then
the ``weights`` of every rollout record in its history, each from the record's time. Error rate and
p99 are the client's, per whole second of completions (the partial last second left out, as in the
single-run plots). Times are seconds since the first request was sent.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from loadtests.plots import per_second
from loadtests.stats import Samples

if TYPE_CHECKING:
    from loadtests.rollouts import ScenarioArtifacts

#: Marker colour per decision recorded in the history.
DECISION_COLOURS = {
    "rollout_start": "grey",
    "rollout_promote": "green",
    "rollout_rollback": "red",
    "rollout_abort": "orange",
    "rollout_load": "black",
}
LABELS = {
    "rollout_start": "start",
    "rollout_promote": "promoted",
    "rollout_rollback": "rolled back",
    "rollout_abort": "aborted",
    "rollout_load": "failed to load",
}


def _decisions(history: list[dict[str, Any]], origin: float) -> list[dict[str, Any]]:
    from loadtests.rollout_report import epoch

    out = []
    for record in history:
        action = str(record.get("action", ""))
        if action not in DECISION_COLOURS or (action == "rollout_load" and record.get("outcome") != "failed"):
            continue
        label = f"v{record.get('version')} {LABELS[action]}"
        if record.get("rollback_reason"):
            label += f" ({record['rollback_reason']})"
        out.append({"t": epoch(str(record["time"])) - origin, "action": action, "version": record.get("version"),
                    "label": label})  # fmt: skip
    return out


def _weights(scenario: ScenarioArtifacts, origin: float) -> list[dict[str, Any]]:
    from loadtests.rollout_report import epoch

    changes = [{"t": 0.0, "weights": {v: w for v, w in scenario.initial_weights.items() if w > 0}}]
    for record in scenario.history:
        if str(record.get("action", "")).startswith("rollout_") and isinstance(record.get("weights"), dict):
            weights = {str(v): float(w) for v, w in record["weights"].items()}
            changes.append({"t": epoch(str(record["time"])) - origin, "weights": weights})
    return changes


def timeline_data(scenario: ScenarioArtifacts, samples: Samples) -> dict[str, Any]:
    """The plot's data, kept in ``rollouts.json``."""
    origin = float((samples.end_s - samples.response_ms / 1000.0).min(initial=time.time()))
    # whole seconds up to the end of the scenario: after it, only requests finishing during the graceful stop
    stopped = scenario.load_stopped_at
    seconds = per_second(samples, origin, None if stopped is None else stopped - origin)
    with np.errstate(invalid="ignore", divide="ignore"):
        error_percent = np.where(seconds.rps > 0, 100.0 * seconds.failures / seconds.rps, np.nan)
    return {
        "origin_unix_s": origin,
        "second_mid_s": seconds.t.tolist(),
        "responses_per_s": seconds.rps.tolist(),
        "error_rate_percent": error_percent.tolist(),
        "p99_ms": seconds.percentiles["p99"].tolist(),
        "weights": _weights(scenario, origin),
        "decisions": _decisions(scenario.history, origin),
    }
