"""PNG plots of a run, drawn with matplotlib's Agg backend (no display needed).

- ``latency_over_time.png``: exact p50/p90/p95/p99 of each second's responses, with the user count;
- ``throughput_over_time.png``: responses/s and failures/s with the user count, and Locust's CPU below;
- ``latency_histogram.png``: every exact client response time, with its percentiles;
- ``client_vs_server.png``: client, gateway and backend percentiles side by side (when metrics were scraped);
- ``timeline.png`` (rollout scenario): traffic weight per version, error rate and p99 per second, decisions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from loadtests.loadgen import BOTTLENECK_PERCENT
from loadtests.shapes import Shape, parse_shape
from loadtests.stats import Samples, load_samples

if TYPE_CHECKING:
    from loadtests.report import RunReport
    from loadtests.rollout_report import ScenarioReport
    from loadtests.runner import RunArtifacts
    from loadtests.sweep import Level
    from loadtests.versions import VersionRow

_PERCENTILES = (50, 90, 95, 99)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def planned_users(shape: Shape, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """The user count the shape asks for over the run (Locust applies it within about a second)."""
    times = np.arange(0.0, duration, 0.1)
    return times, np.array([shape.users_at(t) for t in times], dtype=float)


@dataclass(frozen=True)
class Timeline:
    """Exact per-second figures from the recorder's samples (each request binned by completion time)."""

    t: np.ndarray
    rps: np.ndarray
    failures: np.ndarray
    percentiles: dict[str, np.ndarray]


def _empty_timeline() -> Timeline:
    return Timeline(np.zeros(0), np.zeros(0), np.zeros(0), {f"p{p}": np.zeros(0) for p in _PERCENTILES})


def per_second(samples: Samples, origin: float, duration: float | None = None) -> Timeline:
    """Whole seconds only, counted from ``origin`` (the first request's start).

    A second the run did not cover entirely is left out: the last, partial second holds only the
    requests that finished during the graceful stop, which are the slow ones, so it would show as
    a latency spike and a throughput dip that never happened. Those requests stay in every total.
    """
    if samples.end_s.size == 0:
        return _empty_timeline()
    offsets = samples.end_s - origin
    whole = int(np.floor(min(duration if duration is not None else np.inf, float(offsets.max()))))
    keep = (offsets >= 0) & (offsets < whole)
    if not keep.any():
        return _empty_timeline()
    samples = Samples(samples.response_ms[keep], samples.success[keep], samples.lag_ms[keep], samples.end_s[keep])
    offsets = offsets[keep]
    first = 0.0
    bins = np.floor(offsets).astype(np.int64)
    count = whole
    rps = np.bincount(bins, minlength=count).astype(float)
    failures = np.bincount(bins, weights=~samples.success, minlength=count)
    order = np.argsort(bins, kind="stable")
    groups = np.split(samples.response_ms[order], np.cumsum(np.bincount(bins, minlength=count))[:-1])
    percentiles = {f"p{p}": np.array([np.percentile(g, p) if g.size else np.nan for g in groups]) for p in _PERCENTILES}
    return Timeline(first + np.arange(count) + 0.5, rps, failures, percentiles)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def _users_axis(ax: Any, users: tuple[np.ndarray, np.ndarray]) -> Any:
    """The planned user count on a second axis, in whole users from 0."""
    from matplotlib.ticker import MaxNLocator

    other = ax.twinx()
    if users[0].size:
        other.step(users[0], users[1], where="post", color="grey", alpha=0.5, label="users (shape)")
    other.set_ylabel("simulated users")
    other.yaxis.set_major_locator(MaxNLocator(integer=True))
    other.set_ylim(bottom=0, top=max(1.0, float(users[1].max()) * 1.15) if users[1].size else 1.0)
    return other


def plot_latency_over_time(timeline: Timeline, users: tuple[np.ndarray, np.ndarray], title: str, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for key, values in timeline.percentiles.items():
        ax.plot(timeline.t, values, marker=".", label=key)
    ax.set(
        xlabel="time since the first request (s; whole seconds only)",
        ylabel="response time (ms), percentile of each second",
        title=f"Latency over time: {title}",
    )
    ax.legend(loc="upper left")
    _users_axis(ax, users).legend(loc="upper right")
    return _save(fig, path)


def plot_throughput_over_time(
    timeline: Timeline,
    users: tuple[np.ndarray, np.ndarray],
    cpu: list[tuple[float, float]],
    title: str,
    path: Path,
    threshold: float = BOTTLENECK_PERCENT,
) -> Path:
    plt = _pyplot()
    fig, (ax, cpu_ax) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, height_ratios=(2, 1))
    ax.plot(timeline.t, timeline.rps, marker=".", label="responses/s")
    ax.plot(timeline.t, timeline.failures, marker=".", color="red", label="failures/s")
    ax.set(ylabel="responses per second (req/s)", title=f"Throughput over time: {title}")
    ax.legend(loc="upper left")
    _users_axis(ax, users).legend(loc="upper right")
    points = [(t, p) for t, p in cpu if timeline.t.size and -1.0 <= t <= timeline.t.max() + 1.0]
    if points:
        times, percents = zip(*points, strict=True)
        cpu_ax.plot(times, percents, color="purple", label="Locust CPU")
    cpu_ax.axhline(threshold, color="purple", linestyle=":", label="bottleneck threshold")
    cpu_ax.set(xlabel="time since the first request (s; whole seconds only)", ylabel="Locust CPU (% of one core)")
    cpu_ax.set_ylim(0, max(110.0, threshold * 1.1, max((p for _, p in points), default=0.0) * 1.1))
    cpu_ax.legend(loc="lower right")
    return _save(fig, path)


def plot_histogram(response_ms: np.ndarray, title: str, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    if response_ms.size:
        upper = float(np.percentile(response_ms, 99.9))
        ax.hist(np.minimum(response_ms, upper), bins=100)
        for p, style in ((50, "-"), (95, "--"), (99, ":")):
            value = float(np.percentile(response_ms, p))
            ax.axvline(value, color="black", linestyle=style, label=f"p{p} {value:.2f} ms")
        ax.legend()
    ax.set(
        xlabel="response time (ms; values above p99.9 in the last bin)",
        ylabel="requests (count)",
        title=f"Latency histogram: {title}",
    )
    return _save(fig, path)


def plot_client_vs_server(report: RunReport, path: Path) -> Path | None:
    if report.server is None:
        return None
    plt = _pyplot()
    keys = ("p50", "p90", "p95", "p99")
    series = {
        "client": [report.client.latency_ms.get(k) for k in keys],
        "gateway": [report.server.latency_ms.get(k) for k in keys],
        "backend": [report.server.backend_latency_ms.get(k) for k in keys],
    }
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        heights = [float("nan") if v is None else v for v in values]
        ax.bar(np.arange(len(keys)) + i * width, heights, width, label=label)
    ax.set_xticks(np.arange(len(keys)) + width, keys)
    ax.set(ylabel="latency (ms)", title=f"Client vs server latency: {report.run['request_name']}")
    ax.legend()
    return _save(fig, path)


def write_plots(artifacts: RunArtifacts, report: RunReport) -> list[Path]:
    layout, name = artifacts.layout, artifacts.config.request_name
    out = layout.out
    samples = load_samples(layout.latencies, name)
    if samples is None:
        samples = Samples(np.zeros(0), np.zeros(0, dtype=bool), np.zeros(0), np.zeros(0))
    origin = float((samples.end_s - samples.response_ms / 1000.0).min(initial=time.time()))
    timeline = per_second(samples, origin, artifacts.config.duration)
    users = planned_users(parse_shape(artifacts.config.shape), artifacts.config.duration)
    shift = report.loadgen.timeline_origin - origin
    cpu = [(t + shift, percent) for t, percent in report.loadgen.timeline]
    paths = [
        plot_latency_over_time(timeline, users, name, out / "latency_over_time.png"),
        plot_throughput_over_time(
            timeline, users, cpu, name, out / "throughput_over_time.png", BOTTLENECK_PERCENT * report.loadgen.processes
        ),
        plot_histogram(samples.response_ms, name, out / "latency_histogram.png"),
    ]
    versus = plot_client_vs_server(report, out / "client_vs_server.png")
    return [*paths, *([versus] if versus is not None else [])]


def plot_sweep(rows: list[Level], marked: Level | None, kind: str, p99_bound: float | None, path: Path) -> Path:
    """p50/p95/p99 (ms) and throughput (req/s) against the load level, the saturation point marked."""
    plt = _pyplot()
    fig, (lat_ax, tput_ax) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    levels = np.array([r.level for r in rows], dtype=float)
    for key, label in (("p50_ms", "p50"), ("p95_ms", "p95"), ("p99_ms", "p99")):
        values = np.array([np.nan if getattr(r, key) is None else getattr(r, key) for r in rows], dtype=float)
        lat_ax.plot(levels, values, marker="o", label=f"{label} (service time)")
    if kind == "rate":
        intended = np.array([np.nan if r.intended_p99_ms is None else r.intended_p99_ms for r in rows], dtype=float)
        lat_ax.plot(levels, intended, marker="x", linestyle="--", label="p99 from scheduled send time")
    if p99_bound is not None:
        lat_ax.axhline(p99_bound, color="red", linestyle=":", label=f"p99 bound {p99_bound:g} ms")
    from matplotlib.ticker import FuncFormatter

    lat_ax.set(
        ylabel="latency (ms, log scale)",
        yscale="log",
        title=f"Latency versus load ({'concurrency' if kind == 'users' else 'request rate'})",
    )
    lat_ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    tput_ax.plot(levels, [r.rps for r in rows], marker="o", color="green", label="achieved throughput")
    if kind == "rate":
        tput_ax.plot(levels, levels, linestyle=":", color="grey", label="offered rate")
    tput_ax.set(
        ylabel="throughput (req/s)",
        xlabel="concurrent users (closed loop)" if kind == "users" else "offered rate (req/s, open loop)",
    )
    tput_ax.set_ylim(bottom=0)
    if kind == "users":
        from matplotlib.ticker import MaxNLocator

        tput_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if marked is not None:
        label = f"knee: {marked.level:g} users" if kind == "users" else f"saturation: {marked.level:g} req/s"
        for ax in (lat_ax, tput_ax):
            ax.axvline(marked.level, color="black", linestyle="--", label=label)
    lat_ax.legend(loc="upper left", fontsize="small")
    tput_ax.legend(loc="upper left", fontsize="small")
    return _save(fig, path)


def plot_versions(rows: list[VersionRow], model: str, path: Path) -> Path:
    """Per version: p50/p95/p99 at batch 1 (ms), and samples/s at batch 1 and at the larger batch."""
    plt = _pyplot()
    fig, (lat_ax, tput_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = [f"v{r.version}\n{r.target or ''}" for r in rows]
    x = np.arange(len(rows))
    width = 0.27
    for i, (key, label) in enumerate((("p50_ms", "p50"), ("p95_ms", "p95"), ("p99_ms", "p99"))):
        values = [np.nan if getattr(r, key) is None else getattr(r, key) for r in rows]
        lat_ax.bar(x + (i - 1) * width, values, width, label=label)
    lat_ax.set_xticks(x, names, fontsize="small")
    lat_ax.set(ylabel="latency at batch 1 (ms)", title=f"{model}: client latency per version")
    lat_ax.legend()
    large = next((r.large_batch for r in rows if r.large_batch), None)
    small_tput = [np.nan if r.samples_per_s_b1 is None else r.samples_per_s_b1 for r in rows]
    large_tput = [np.nan if r.samples_per_s_large is None else r.samples_per_s_large for r in rows]
    tput_ax.bar(x - 0.2, small_tput, 0.4, label="batch 1")
    tput_ax.bar(x + 0.2, large_tput, 0.4, label=f"batch {large}" if large else "larger batch")
    tput_ax.set_xticks(x, names, fontsize="small")
    tput_ax.set(ylabel="throughput (samples/s)", title=f"{model}: samples per second per version")
    tput_ax.legend()
    return _save(fig, path)


def _weight_series(changes: list[dict[str, Any]], end: float) -> dict[str, tuple[list[float], list[float]]]:
    versions = sorted({v for c in changes for v in c["weights"]}, key=lambda v: (len(v), v))
    times = [float(c["t"]) for c in changes] + [end]
    return {v: (times, [float(c["weights"].get(v, 0.0)) for c in changes] + [float(changes[-1]["weights"].get(v, 0.0))])
            for v in versions}  # fmt: skip


def plot_timeline(report: ScenarioReport, path: Path) -> Path:
    from loadtests.timeline import DECISION_COLOURS

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
