"""Deployment success under load: N rollouts in order through the management API while Locust keeps load on.

One ordinary open-loop Locust run covers the whole scenario, on the model's name without a version,
so every request follows the gateway's routing (stable, canary split, promoted version). Beside it a
driver thread (not in Locust) waits for the load to be flowing, then for each rollout of the plan:
scrapes the gateway's metrics (the rollout's window starts), starts the rollout, polls its state until
it is promoted, rolled back or aborted (a version that does not load is refused at once), and waits
for a number of further requests on the model before the next one (so each window ends on settled
traffic). Steps advance on request counts (the plan's ``min_requests``), so nothing here depends on
seconds except generous bounds. When the last rollout has settled the driver ends the Locust run
(its stop file), and the report reads the gateway's own history for what happened.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from loadtests import prometheus
from loadtests.config import RunConfig
from loadtests.deploy_api import ACTIVE, Answer, DeployApi
from loadtests.errors import LoadTestError
from loadtests.loadgen import CpuMonitor
from loadtests.rollout_plan import ScenarioPlan
from loadtests.runner import Layout, RunArtifacts, RunOptions, default_metrics_url, load_window, prepare, run_locust
from loadtests.runner import scrape_after as scrape_counted
from loadtests.stats import find_row, load_samples, read_stats_csv

#: Seconds between two looks at the rollout state or the request count.
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class DriverSettings:
    """How the driver paces the scenario: request counts, with bounds in seconds only as a safety net."""

    warmup_requests: int = 100
    settle_requests: int = 50
    rollout_timeout: float = 300.0


@dataclass
class RolloutWindow:
    """One rollout as the driver saw it: its window's edges, the start call's answer, the last state."""

    index: int
    version: int
    started_at: float
    before: prometheus.Snapshot
    history_from: int
    answer: Answer
    finished_at: float | None = None
    final: dict[str, Any] | None = None
    note: str = ""


@dataclass
class RolloutDriver:
    """Drives the plan's rollouts one after another; run it in a thread beside Locust."""

    api: DeployApi
    model: str
    plan: ScenarioPlan
    metrics_url: str
    protocol_label: str
    settings: DriverSettings
    stop_load: threading.Event
    load_done: threading.Event
    windows: list[RolloutWindow] = field(default_factory=list)
    error: BaseException | None = None
    stopped_at: float | None = None
    _pause: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        try:
            if self._wait_for_requests(self.settings.warmup_requests, self.settings.rollout_timeout):
                for index in range(len(self.plan.rollouts)):
                    if not self._one(index):
                        break
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            self.stopped_at = time.time()
            self.stop_load.set()

    def _one(self, index: int) -> bool:
        """Roll out plan entry ``index``; False when the load ended first (the scenario stops)."""
        history_from = len(self.api.history(self.model))
        started_at = time.time()
        before = self._scrape()
        answer = self.api.start_rollout(self.model, self.plan.body(index))
        window = RolloutWindow(index, self.plan.rollouts[index].version, started_at, before, history_from, answer)
        self.windows.append(window)
        if answer.status == 200 and answer.body.get("status") in ACTIVE:
            window.final = self._wait_until_finished(window)
        elif answer.status == 200:
            window.final = answer.body
        window.finished_at = time.time()
        if self.load_done.is_set():
            return False
        return self._wait_for_requests(self.settings.settle_requests, self.settings.rollout_timeout)

    def _wait_until_finished(self, window: RolloutWindow) -> dict[str, Any] | None:
        deadline = time.monotonic() + self.settings.rollout_timeout
        while True:
            view = self.api.rollout(self.model)
            if view.get("status") not in ACTIVE:
                return view
            if self.load_done.is_set() or time.monotonic() > deadline:
                limit = f"--rollout-timeout {self.settings.rollout_timeout:g} s passed"
                why = "the load ended" if self.load_done.is_set() else limit
                window.note = f"{why} before the rollout finished: aborted by the load test"
                self.api.abort(self.model)
                return None if self.load_done.is_set() else self.api.rollout(self.model)
            self._pause.wait(POLL_SECONDS)

    def _count(self) -> float:
        snapshot = self._scrape()
        return snapshot.total(prometheus.REQUESTS, model=self.model, protocol=self.protocol_label)

    def _scrape(self) -> prometheus.Snapshot:
        snapshot = prometheus.scrape(self.metrics_url)
        if snapshot is None:
            raise LoadTestError(f"the gateway's metrics at {self.metrics_url} stopped answering")
        return snapshot

    def _wait_for_requests(self, count: int, timeout: float) -> bool:
        """Wait until the gateway has counted ``count`` more requests on the model; False if the load ended."""
        target = self._count() + count
        deadline = time.monotonic() + timeout
        while self._count() < target:
            if self.load_done.is_set():
                return False
            if time.monotonic() > deadline:
                raise LoadTestError(f"the gateway counted under {count} requests in {timeout:g} s: is load flowing")
            self._pause.wait(POLL_SECONDS)
        return True


@dataclass(frozen=True)
class ScenarioArtifacts:
    """What a finished scenario left behind, for the report."""

    run: RunArtifacts
    plan: ScenarioPlan
    windows: list[RolloutWindow]
    history: list[dict[str, Any]]
    history_from: int
    initial_weights: dict[str, float]
    deploy_url: str
    load_stopped_at: float | None


def run_scenario(
    options: RunOptions, plan: ScenarioPlan, api: DeployApi, settings: DriverSettings
) -> ScenarioArtifacts:
    """Check the target, run Locust with the driver beside it, and collect the history the gateway wrote."""
    metrics_url = options.metrics_url or default_metrics_url(options.host)
    initial = api.model(options.model)  # the model exists and the token works, before any load
    if prometheus.scrape(metrics_url) is None:
        raise LoadTestError(f"--metrics-url {metrics_url}: cannot scrape the gateway's metrics (the report needs them)")
    config = prepare(options)
    layout = Layout(options.out)
    history_from = len(api.history(options.model))
    before = prometheus.scrape(metrics_url)
    if before is None:
        raise LoadTestError(f"--metrics-url {metrics_url}: cannot scrape the gateway's metrics")
    stop_load, load_done = threading.Event(), threading.Event()
    driver = RolloutDriver(api, options.model, plan, metrics_url, config.protocol.metrics_label, settings,
                           stop_load, load_done)  # fmt: skip
    thread = threading.Thread(target=driver.run, name="rollout-driver", daemon=True)
    watcher = threading.Thread(target=_stop_when, args=(stop_load, load_done, layout), daemon=True)
    thread.start()
    watcher.start()
    try:
        monitor: CpuMonitor = run_locust(config, options, layout)
    finally:
        load_done.set()
        thread.join()
        watcher.join()
        layout.stop.unlink(missing_ok=True)
    if driver.error is not None:
        raise driver.error
    row = find_row(read_stats_csv(layout.stats_csv), config.request_name)
    after = scrape_counted(metrics_url, config, before, row.requests if row is not None else 0)
    # the whole-run report covers the load as it ran, not the --duration cap the scenario ended before
    config = config.model_copy(update={"duration": _load_seconds(layout, config, driver.stopped_at)})
    run = RunArtifacts(options, config, layout, monitor.result(load_window(layout.history_csv)), metrics_url,
                       before, after)  # fmt: skip
    weights = {str(k): float(v) for k, v in (initial.get("weights") or {}).items()}
    history = api.history(options.model)[history_from:]
    return ScenarioArtifacts(run, plan, driver.windows, history, history_from, weights, api.url,
                             driver.stopped_at)  # fmt: skip


def _load_seconds(layout: Layout, config: RunConfig, stopped_at: float | None) -> float:
    """Seconds from the first request sent to the end of the scenario (at most the configured duration)."""
    samples = load_samples(layout.latencies, config.request_name)
    if stopped_at is None or samples is None or samples.end_s.size == 0:
        return config.duration
    first = float((samples.end_s - samples.response_ms / 1000.0).min())
    return min(config.duration, max(stopped_at - first, 1.0))


def _stop_when(stop_load: threading.Event, load_done: threading.Event, layout: Layout) -> None:
    """Create the run's stop file once the driver is done (Locust then ends its run gracefully)."""
    while not load_done.is_set():
        if stop_load.wait(POLL_SECONDS):
            layout.stop.touch()
            return
