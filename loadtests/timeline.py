"""The rollout scenario's timeline: traffic weight per version, error rate and p99 per second, decisions marked.

The weights are the gateway's: the split before the first rollout (``GET /api/models``) and then
the ``weights`` of every rollout record in its history, each from the record's time. Error rate and
p99 are the client's, per whole second of completions (the partial last second left out, as in the
single-run plots). Times are seconds since the first request was sent.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from loadtests.plots import _pyplot, _save, per_second
from loadtests.stats import Samples

if TYPE_CHECKING:
    from loadtests.rollout_report import ScenarioReport
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


def _weight_series(changes: list[dict[str, Any]], end: float) -> dict[str, tuple[list[float], list[float]]]:
    versions = sorted({v for c in changes for v in c["weights"]}, key=lambda v: (len(v), v))
    times = [float(c["t"]) for c in changes] + [end]
    return {v: (times, [float(c["weights"].get(v, 0.0)) for c in changes] + [float(changes[-1]["weights"].get(v, 0.0))])
            for v in versions}  # fmt: skip


def plot_timeline(report: ScenarioReport, path: Path) -> Path:
    data = report.timeline
    plt = _pyplot()
    fig, (weights_ax, errors_ax, p99_ax) = plt.subplots(3, 1, figsize=(10, 8), sharex=True, height_ratios=(1, 1, 1))
    t = np.asarray(data["second_mid_s"], dtype=float)
    end = max([float(t.max()) + 0.5 if t.size else 1.0, *(float(d["t"]) for d in data["decisions"])])
    for version, (times, weights) in _weight_series(data["weights"], end).items():
        weights_ax.step(times, weights, where="post", label=f"version {version}")
    weights_ax.set(ylabel="traffic weight (%)", ylim=(-5, 105),
                   title=f"Rollouts under load: {report.run['request_name']}")  # fmt: skip
    weights_ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    errors_ax.plot(t, np.asarray(data["error_rate_percent"], dtype=float), marker=".", color="red")
    errors_ax.set(ylabel="failed responses (% per second)")
    errors_ax.set_ylim(bottom=0)
    p99_ax.plot(t, np.asarray(data["p99_ms"], dtype=float), marker=".", color="purple")
    p99_ax.set(ylabel="p99 response time (ms)", xlabel="time since the first request (s; whole seconds only)")
    p99_ax.set_ylim(bottom=0)
    for decision in data["decisions"]:
        colour = DECISION_COLOURS[decision["action"]]
        style = ":" if decision["action"] == "rollout_start" else "--"
        for ax in (weights_ax, errors_ax, p99_ax):
            ax.axvline(decision["t"], color=colour, linestyle=style, linewidth=1)
        if decision["action"] != "rollout_start":
            weights_ax.annotate(decision["label"], (decision["t"], 102), rotation=90, fontsize="x-small",
                                va="top", ha="right", color=colour)  # fmt: skip
    return _save(fig, path)
