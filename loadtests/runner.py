"""Run one load test: check the target, run Locust headless in a child process, collect what it wrote.

Locust runs as its own process (``python -m locust``) so its gevent monkey-patching never touches
the caller, its CPU can be measured apart from everything else, and a crash in it cannot take the
command down. Around it the runner scrapes the gateway's metrics before and after, so the report can
put the server's count and latency beside the client's.
"""

from __future__ import annotations

import contextlib
import csv
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from loadtests import prometheus
from loadtests.config import Protocol, RunConfig
from loadtests.errors import LoadTestError
from loadtests.inputs import Source, SourceRequest, choose_source
from loadtests.loadgen import CpuMonitor, LoadgenStats
from loadtests.probe import ModelInfo, probe
from loadtests.recorder import merge_results
from loadtests.shapes import parse_shape
from loadtests.stats import find_row, read_stats_csv
from loadtests.tensors import DEFAULT_DYNAMIC_SIZE, is_batched, save_pool
from loadtests.wire import utf8_problem
from loadtests.workload import WORKER_ENV

#: Seconds Locust lets a user finish its request when the run ends, so every request sent is counted.
STOP_TIMEOUT_SECONDS = 10
#: Extra seconds beyond the run's duration before the runner gives up on Locust.
GRACE_SECONDS = 60.0
SAMPLE_INTERVAL_SECONDS = 0.5
DEFAULT_METRICS_PORT = 8002
#: How long a master waits for remote workers to connect before its deadline starts to count.
WORKER_WAIT_SECONDS = 300.0
#: Locust's own default port for workers to reach the master.
DEFAULT_MASTER_PORT = 5557


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
    inputs_file: Path | None = None
    expected_file: Path | None = None
    atol: float | None = None
    rtol: float | None = None
    model_repository: Path | None = None
    dynamic_size: int = DEFAULT_DYNAMIC_SIZE
    processes: int = 1
    remote_workers: int = 0
    master_port: int = DEFAULT_MASTER_PORT
    #: Send to the model name without a version even with a repository, so traffic follows the gateway's routing.
    follow_routing: bool = False


#: Every file a run writes into its folder; an earlier run's copies are removed first so none is stale.
REPORT_FILES = (
    "run_config.json", "pool.npz", "latencies.npz", "locust.log", "locust_report.html",
    "locust_stats.csv", "locust_stats_history.csv", "locust_failures.csv", "locust_exceptions.csv",
    "summary.json", "report.md", "latency_over_time.png", "throughput_over_time.png",
    "latency_histogram.png", "client_vs_server.png", "stop",
)  # fmt: skip


@dataclass(frozen=True)
class Layout:
    """Where each file of a run's report folder goes."""

    out: Path

    def clear(self) -> None:
        for name in REPORT_FILES:
            (self.out / name).unlink(missing_ok=True)
        for part in self.out.glob("latencies.w*.npz"):
            part.unlink()

    @property
    def config(self) -> Path:
        return self.out / "run_config.json"

    @property
    def pool(self) -> Path:
        return self.out / "pool.npz"

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

    @property
    def stop(self) -> Path:
        """Created to end the run before its duration (Locust's shape then stops as it would at the end)."""
        return self.out / "stop"


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


def _check_options(options: RunOptions) -> None:
    parse_shape(options.shape)
    if options.duration <= 0:
        raise LoadTestError(f"--duration must be positive, got {options.duration:g}")
    if options.batch_size < 1:
        raise LoadTestError(f"--batch-size must be at least 1, got {options.batch_size}")
    if options.dynamic_size < 1:
        raise LoadTestError(f"--dynamic-size must be at least 1, got {options.dynamic_size}")
    if options.processes < 1:
        raise LoadTestError(f"--processes must be at least 1, got {options.processes}")
    for flag, path in (("--inputs", options.inputs_file), ("--expected", options.expected_file)):
        if path is not None and not path.is_file():
            raise LoadTestError(f"{flag} {path}: no such file")
    if options.model_repository is not None and not (options.model_repository / options.model).is_dir():
        raise LoadTestError(f"--model-repository {options.model_repository}: no folder {options.model!r} in it")


def resolve_version(options: RunOptions, info: ModelInfo) -> str | None:
    """The version a run targets: as given, else (with a repository to read) the one the server serves."""
    if options.version is not None or options.model_repository is None:
        return options.version
    if info.served_version:
        return info.served_version
    from gateway.core.config import CONFIG_FILE, load_model_config

    config = options.model_repository / options.model / CONFIG_FILE
    try:
        default = load_model_config(config).default_version if config.is_file() else None
    except Exception:  # a config the gateway would refuse: fall back to the newest version
        default = None
    if default is not None and str(default) in info.versions:
        return str(default)
    numbers = [int(v) for v in info.versions if v.isdigit()]
    return str(max(numbers)) if numbers else None


def refuse_impossible(options: RunOptions, info: ModelInfo, source: Source) -> None:
    """A model/protocol pair that cannot work is refused before any load, with the reason."""
    batched = is_batched(info.inputs)
    if options.batch_size > 1 and not batched:
        fixed = ", ".join(s.describe() for s in info.inputs if not s.batched)
        raise LoadTestError(
            f"--batch-size {options.batch_size}: model {options.model!r} has no batch dimension ({fixed}); use 1"
        )
    if options.protocol is Protocol.REST:
        problem = utf8_problem(source.pool.inputs, info.inputs)
        if problem is not None:
            raise LoadTestError(f"protocol rest cannot test model {options.model!r}: {problem}; use binary or grpc")


def prepare(options: RunOptions) -> RunConfig:
    """Validate the arguments and the target, write the input pool and the Locust config; no load yet."""
    _check_options(options)
    info = probe(options.protocol, options.host, options.model, options.version)
    version = resolve_version(options, info)
    source = choose_source(
        SourceRequest(
            inputs_file=options.inputs_file,
            expected_file=options.expected_file,
            atol=options.atol,
            rtol=options.rtol,
            model_dir=options.model_repository / options.model if options.model_repository else None,
            version=version,
            dynamic_size=options.dynamic_size,
            seed=options.seed,
        ),
        info.inputs,
        info.outputs,
    )
    refuse_impossible(options, info, source)
    layout = Layout(options.out)
    try:
        options.out.mkdir(parents=True, exist_ok=True)
        layout.clear()
    except OSError as exc:
        raise LoadTestError(f"--out {options.out}: cannot create: {exc.strerror or exc}") from None
    save_pool(source.pool, layout.pool)
    config = RunConfig(
        model=options.model,
        version=None if options.follow_routing else version,
        protocol=options.protocol,
        shape=options.shape,
        duration=options.duration,
        batch_size=options.batch_size,
        seed=options.seed,
        pool_path=layout.pool.resolve(),
        inputs=info.inputs,
        outputs=info.outputs,
        batched=is_batched(info.inputs),
        check=source.mode,
        atol=source.atol,
        rtol=source.rtol,
        answers_from=source.origin,
        processes=options.remote_workers or options.processes,
        results_path=layout.latencies.resolve(),
        stop_file=layout.stop.resolve(),
    )
    config.save(layout.config)
    return config


def locust_command(
    config: RunConfig, options: RunOptions, layout: Layout, master_port: int | None = None, bind: str = "127.0.0.1"
) -> list[str]:
    """The headless Locust run; with ``master_port`` the process is a master expecting ``processes`` workers."""
    locustfile = Path(__file__).with_name("locustfile.py")
    command = [
        sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
        "--host", options.host,
        "--loadtest-config", str(layout.config.resolve()),
        "--csv", str(layout.csv_prefix.resolve()), "--csv-full-history",
        "--html", str(layout.html.resolve()),
        "--stop-timeout", str(STOP_TIMEOUT_SECONDS),
        "--only-summary",
        "--exit-code-on-error", "0",
    ]  # fmt: skip
    if master_port is not None:
        command += ["--master", "--master-bind-host", bind, "--master-bind-port", str(master_port),
                    "--expect-workers", str(config.processes)]  # fmt: skip
    return [*command, config.protocol.user_class]


def worker_command(
    config: RunConfig, options: RunOptions, layout: Layout, master_port: int, master_host: str = "127.0.0.1"
) -> list[str]:
    """One Locust worker process attached to the master (local, or on another machine)."""
    locustfile = Path(__file__).with_name("locustfile.py")
    return [
        sys.executable, "-m", "locust", "-f", str(locustfile), "--worker",
        "--master-host", master_host, "--master-port", str(master_port),
        "--stop-timeout", str(STOP_TIMEOUT_SECONDS),
        "--host", options.host,
        "--loadtest-config", str(layout.config.resolve()),
        config.protocol.user_class,
    ]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _child_env(worker: int | None = None) -> dict[str, str]:
    """Make the project importable in the Locust process even when it is not installed."""
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    env.pop(WORKER_ENV, None)
    if worker is not None:
        env[WORKER_ENV] = str(worker)
    return env


def run_locust(config: RunConfig, options: RunOptions, layout: Layout) -> CpuMonitor:
    """Run Locust to completion (bounded), sampling its CPU; raises if it produced no statistics.

    With ``processes`` > 1 the process is a master (it only coordinates and aggregates) and the
    runner starts that many local workers, each a separate Python process on its own core.
    """
    remote = options.remote_workers > 0
    distributed = config.processes > 1 or remote
    port = (options.master_port if remote else _free_port()) if distributed else None
    bind = "0.0.0.0" if remote else "127.0.0.1"
    with layout.log.open("wb") as log:
        process = subprocess.Popen(
            locust_command(config, options, layout, port, bind), stdout=log, stderr=subprocess.STDOUT,
            cwd=layout.out, env=_child_env(),
        )  # fmt: skip
        workers: list[subprocess.Popen[bytes]] = []
        try:
            for index in range(config.processes if port is not None and not remote else 0):
                assert port is not None
                command = worker_command(config, options, layout, port)
                env = _child_env(index)
                workers.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=layout.out, env=env))
            monitor = CpuMonitor([process.pid, *(w.pid for w in workers)], master=distributed)
            waiting = WORKER_WAIT_SECONDS if remote else 0.0
            deadline = time.monotonic() + options.duration + STOP_TIMEOUT_SECONDS + GRACE_SECONDS + waiting
            while process.poll() is None and time.monotonic() < deadline:
                monitor.sample()
                try:
                    process.wait(timeout=SAMPLE_INTERVAL_SECONDS)
                except subprocess.TimeoutExpired:
                    continue
            monitor.sample()
        finally:
            _stop(process)
            for worker in workers:
                _stop(worker, grace=10.0)
    if distributed and not remote:
        merge_results(sorted(layout.out.glob(f"{layout.latencies.stem}.w*{layout.latencies.suffix}")), layout.latencies)
    if not layout.stats_csv.exists():
        tail = layout.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
        raise LoadTestError(f"locust exited with {process.returncode} and wrote no statistics: {' | '.join(tail)}")
    return monitor


def _stop(process: subprocess.Popen[bytes], grace: float = 0.0) -> None:
    """Let a process finish within ``grace`` seconds, then ask it to quit (Locust writes its reports), then insist."""
    if grace:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
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


def run_worker(options: RunOptions, master: str, index: int) -> int:
    """``modelgate loadtest-worker``: prepare the same run locally, then serve a (remote) master as worker ``index``.

    The worker probes the target and builds the input pool itself (seeded, so every worker and the
    master agree); its raw latencies stay in its own ``--out`` folder, so the master's report takes
    its percentiles from Locust's aggregated (whole-millisecond) statistics.
    """
    host, _, port = master.rpartition(":")
    if not host or not port.isdigit():
        raise LoadTestError(f"--master {master!r}: expected HOST:PORT, e.g. loadtest-master:5557")
    config = prepare(options)
    layout = Layout(options.out)
    command = worker_command(config, options, layout, int(port), host)
    with layout.log.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=layout.out, env=_child_env(index))
        try:
            return process.wait()
        finally:
            _stop(process)
