"""Run one load test: check the target, run Locust headless in a child process, collect what it wrote.

Locust runs as its own process (``python -m locust``) so its gevent monkey-patching never touches
the caller, its CPU can be measured apart from everything else, and a crash in it cannot take the
command down. Around it the runner scrapes the gateway's metrics before and after, so the report can
put the server's count and latency beside the client's.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from loadtests import prometheus
from loadtests.config import Protocol, RunConfig
from loadtests.errors import LoadTestError
from loadtests.loadgen import CpuMonitor, LoadgenStats
from loadtests.payloads import reference_samples, save_samples
from loadtests.probe import probe
from loadtests.shapes import parse_shape
from loadtests.stats import find_row, read_stats_csv

#: Seconds Locust lets a user finish its request when the run ends, so every request sent is counted.
STOP_TIMEOUT_SECONDS = 10
#: Extra seconds beyond the run's duration before the runner gives up on Locust.
GRACE_SECONDS = 60.0
SAMPLE_INTERVAL_SECONDS = 0.5
DEFAULT_METRICS_PORT = 8002


@dataclass(frozen=True)
class RunOptions:
    """One run as the command line describes it."""

    host: str
    model: str
    protocol: Protocol
    shape: str
    duration: float
    out: Path
    version: str | None = None
    batch_size: int = 1
    seed: int = 0
    metrics_url: str | None = None


#: Every file a run writes into its folder; an earlier run's copies are removed first so none is stale.
REPORT_FILES = (
    "run_config.json", "samples.npz", "latencies.npz", "locust.log", "locust_report.html",
    "locust_stats.csv", "locust_stats_history.csv", "locust_failures.csv", "locust_exceptions.csv",
    "summary.json", "report.md", "latency_over_time.png", "throughput_over_time.png",
    "latency_histogram.png", "client_vs_server.png",
)  # fmt: skip


@dataclass(frozen=True)
class Layout:
    """Where each file of a run's report folder goes."""

    out: Path

    def clear(self) -> None:
        for name in REPORT_FILES:
            (self.out / name).unlink(missing_ok=True)

    @property
    def config(self) -> Path:
        return self.out / "run_config.json"

    @property
    def samples(self) -> Path:
        return self.out / "samples.npz"

    @property
    def latencies(self) -> Path:
        return self.out / "latencies.npz"

    @property
    def csv_prefix(self) -> Path:
        return self.out / "locust"

    @property
    def stats_csv(self) -> Path:
        return self.out / "locust_stats.csv"

    @property
    def history_csv(self) -> Path:
        return self.out / "locust_stats_history.csv"

    @property
    def failures_csv(self) -> Path:
        return self.out / "locust_failures.csv"

    @property
    def html(self) -> Path:
        return self.out / "locust_report.html"

    @property
    def log(self) -> Path:
        return self.out / "locust.log"


@dataclass(frozen=True)
class RunArtifacts:
    """What a finished run left behind, for the report."""

    options: RunOptions
    config: RunConfig
    layout: Layout
    loadgen: LoadgenStats
    metrics_url: str | None
    server_before: prometheus.Snapshot | None
    server_after: prometheus.Snapshot | None


def default_metrics_url(host: str) -> str:
    """The gateway's default metrics endpoint on the same machine as ``host``."""
    hostname = urlsplit(host if "://" in host else f"grpc://{host}").hostname or "127.0.0.1"
    return f"http://{hostname}:{DEFAULT_METRICS_PORT}/metrics"


def prepare(options: RunOptions) -> RunConfig:
    """Validate the arguments and the target, write the samples and the Locust config; no load yet."""
    parse_shape(options.shape)
    if options.duration <= 0:
        raise LoadTestError(f"--duration must be positive, got {options.duration:g}")
    if options.batch_size < 1:
        raise LoadTestError(f"--batch-size must be at least 1, got {options.batch_size}")
    info = probe(options.protocol, options.host, options.model, options.version)
    layout = Layout(options.out)
    try:
        options.out.mkdir(parents=True, exist_ok=True)
        layout.clear()
    except OSError as exc:
        raise LoadTestError(f"--out {options.out}: cannot create: {exc.strerror or exc}") from None
    save_samples(reference_samples(seed=options.seed), layout.samples)
    config = RunConfig(
        model=options.model,
        version=options.version,
        protocol=options.protocol,
        shape=options.shape,
        duration=options.duration,
        batch_size=options.batch_size,
        seed=options.seed,
        samples_path=layout.samples.resolve(),
        input_name=info.input_name or "pixels",
        output_name=info.output_name or "probs",
        results_path=layout.latencies.resolve(),
    )
    config.save(layout.config)
    return config


def locust_command(config: RunConfig, options: RunOptions, layout: Layout) -> list[str]:
    locustfile = Path(__file__).with_name("locustfile.py")
    return [
        sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
        "--host", options.host,
        "--loadtest-config", str(layout.config.resolve()),
        "--csv", str(layout.csv_prefix.resolve()), "--csv-full-history",
        "--html", str(layout.html.resolve()),
        "--stop-timeout", str(STOP_TIMEOUT_SECONDS),
        "--only-summary",
        "--exit-code-on-error", "0",
        config.protocol.user_class,
    ]  # fmt: skip


def _child_env() -> dict[str, str]:
    """Make the project importable in the Locust process even when it is not installed."""
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def run_locust(config: RunConfig, options: RunOptions, layout: Layout) -> CpuMonitor:
    """Run Locust to completion (bounded), sampling its CPU; raises if it produced no statistics."""
    with layout.log.open("wb") as log:
        process = subprocess.Popen(
            locust_command(config, options, layout),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=layout.out,
            env=_child_env(),
        )
        monitor = CpuMonitor(process.pid)
        deadline = time.monotonic() + options.duration + STOP_TIMEOUT_SECONDS + GRACE_SECONDS
        try:
            while process.poll() is None and time.monotonic() < deadline:
                monitor.sample()
                try:
                    process.wait(timeout=SAMPLE_INTERVAL_SECONDS)
                except subprocess.TimeoutExpired:
                    continue
            monitor.sample()
        finally:
            _stop(process)
    if not layout.stats_csv.exists():
        tail = layout.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
        raise LoadTestError(f"locust exited with {process.returncode} and wrote no statistics: {' | '.join(tail)}")
    return monitor


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Ask a Locust that overran its deadline to quit (it then writes its reports), then insist."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def load_window(history_csv: Path) -> tuple[float, float] | None:
    """Unix times of Locust's first and last history rows: the load phase."""
    if not history_csv.exists():
        return None
    with history_csv.open(newline="", encoding="utf-8") as handle:
        stamps = [float(row["Timestamp"]) for row in csv.DictReader(handle) if row.get("Timestamp")]
    return (min(stamps), max(stamps)) if stamps else None


def scrape_after(url: str, config: RunConfig, before: prometheus.Snapshot, expected: int) -> prometheus.Snapshot | None:
    """Scrape once the gateway has counted the run's requests (it may record just after responding)."""
    match = {"model": config.model, "protocol": config.protocol.metrics_label}
    baseline = before.total(prometheus.REQUESTS, **match)
    deadline = time.monotonic() + 3.0
    while True:
        snapshot = prometheus.scrape(url)
        if snapshot is None or time.monotonic() > deadline:
            return snapshot
        if snapshot.total(prometheus.REQUESTS, **match) - baseline >= expected:
            return snapshot
        time.sleep(0.05)


def execute(options: RunOptions) -> RunArtifacts:
    """Prepare, scrape, run Locust, scrape again; the report is built from the result."""
    config = prepare(options)
    layout = Layout(options.out)
    metrics_url = options.metrics_url or default_metrics_url(options.host)
    before = prometheus.scrape(metrics_url)
    monitor = run_locust(config, options, layout)
    row = find_row(read_stats_csv(layout.stats_csv), config.request_name)
    expected = row.requests if row is not None else 0
    after = scrape_after(metrics_url, config, before, expected) if before is not None else None
    return RunArtifacts(
        options=options,
        config=config,
        layout=layout,
        loadgen=monitor.result(load_window(layout.history_csv)),
        metrics_url=metrics_url,
        server_before=before,
        server_after=after,
    )
