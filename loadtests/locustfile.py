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


class ConfiguredShape(LoadTestShape):
    """Locust's shape hook, driven by the run configuration's ``shape`` and ``duration``."""

    def tick(self) -> tuple[int, float] | None:
        runner = self.runner
        options = runner.environment.parsed_options if runner is not None else None
        config_path = getattr(options, "loadtest_config", "") if options is not None else ""
        if not config_path:
            return None
        config = workload_for(config_path).config
        return parse_shape(config.shape).tick(time.perf_counter() - self.start_time, config.duration)
