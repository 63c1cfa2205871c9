"""The file Locust loads (``locust -f loadtests/locustfile.py --loadtest-config FILE V2RestUser``).

It only wires things Locust needs at load time: the user classes, the shape, an extra command-line
option and event listeners. Configuration comes from the JSON file ``--loadtest-config`` names
(written by ``modelgate loadtest``), read lazily when the test starts.
"""

from __future__ import annotations

import time
from typing import Any

from locust import LoadTestShape, events
from locust.env import Environment
from locust.runners import WORKER_REPORT_INTERVAL, MasterRunner

from loadtests.recorder import LatencyRecorder, write_final_stats
from loadtests.shapes import parse_shape
from loadtests.users import TfsGrpcUser, TfsRestUser, V2BinaryUser, V2GrpcUser, V2RestUser
from loadtests.workload import results_file, workload_for

__all__ = ["ConfiguredShape", "TfsGrpcUser", "TfsRestUser", "V2BinaryUser", "V2GrpcUser", "V2RestUser"]


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]
def _add_arguments(parser: Any, **_: Any) -> None:
    parser.add_argument(
        "--loadtest-config",
        type=str,
        default="",
        env_var="MODELGATE_LOADTEST_CONFIG",
        help="JSON run configuration written by `modelgate loadtest`",
    )


@events.init.add_listener  # type: ignore[untyped-decorator]
def _on_init(environment: Environment, **_: Any) -> None:
    """Make grpcio cooperate with gevent, and keep exact latencies for the report."""
    from grpc.experimental import gevent as grpc_gevent

    grpc_gevent.init_gevent()
    options = environment.parsed_options
    config_path = getattr(options, "loadtest_config", "") if options is not None else ""
    if not config_path:
        return
    recorder = LatencyRecorder()
    environment.events.request.add_listener(recorder.on_request)  # type: ignore[no-untyped-call]

    def _save(**_: Any) -> None:
        workload = workload_for(config_path)
        schedule = workload.schedule.stats() if workload.schedule is not None else None
        recorder.save(results_file(workload.config), schedule)
        csv_prefix = getattr(options, "csv_prefix", None)
        if csv_prefix:
            write_final_stats(environment, csv_prefix)

    environment.events.quitting.add_listener(_save)  # type: ignore[no-untyped-call]


#: Most seconds a master waits after the run for its workers' users to stop and their last statistics to arrive.
DRAIN_LIMIT_SECONDS = 30.0


class ConfiguredShape(LoadTestShape):
    """Locust's shape hook, driven by the run configuration's ``shape`` and ``duration``.

    A master (distributed mode) does not stop at once when the run ends: Locust's quit waits only
    half a second for the workers' last statistics, which a busy worker misses, so requests the
    server answered would be missing from the counts. Instead it first asks for 0 users (each
    worker lets its users finish their request, within ``--stop-timeout``), then waits for one more
    statistics report from every worker before it stops.
    """

    _drain_started: float | None = None
    _zero_since: float | None = None

    def tick(self) -> tuple[int, float] | None:
        runner = self.runner
        options = runner.environment.parsed_options if runner is not None else None
        config_path = getattr(options, "loadtest_config", "") if options is not None else ""
        if not config_path:
            return None
        config = workload_for(config_path).config
        shape = parse_shape(config.shape)
        stopped = config.stop_file is not None and config.stop_file.exists()
        ticked = None if stopped else shape.tick(time.perf_counter() - self.start_time, config.duration)
        if ticked is not None or not isinstance(runner, MasterRunner):
            return ticked
        return self._drain(runner, shape.spawn_rate())

    def _drain(self, runner: MasterRunner, spawn_rate: float) -> tuple[int, float] | None:
        now = time.perf_counter()
        self._drain_started = self._drain_started or now
        if runner.user_count > 0:
            self._zero_since = None
        else:
            self._zero_since = self._zero_since or now
        settled = self._zero_since is not None and now - self._zero_since > WORKER_REPORT_INTERVAL + 1.0
        if settled or now - self._drain_started > DRAIN_LIMIT_SECONDS:
            return None
        return 0, spawn_rate
