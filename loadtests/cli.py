"""``modelgate loadtest`` and ``modelgate loadtest-compare``: run Locust headless and gate on the result.

Exit codes: 0 the run passed; 1 an SLO was breached or responses failed their checks (the
release gate); 2 bad arguments or an unusable target (unknown model, unreachable host, malformed
SLO file), reported in one line without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from loadtests.config import Protocol

EXIT_PASS, EXIT_GATE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

SHAPE_HELP = (
    "load shape KIND[:key=value,...]: constant:users=N | step:start=N,step=N,every=S,max=N | "
    "spike:base=N,peak=N,at=S,hold=S | rate:rps=R,users=N | poisson:rps=R,users=N "
    "(rate/poisson are open loop: arrivals at a fixed or Poisson rate, served by a pool of users)"
)


def _add_common(parser: argparse.ArgumentParser, shape_help: str = SHAPE_HELP, duration_help: str = "") -> None:
    parser.add_argument("--model", required=True, help="model name in the repository")
    parser.add_argument("--model-version", dest="version", default=None, help="model version (default: the server's)")
    parser.add_argument("--shape", default="constant:users=4", help=shape_help)
    parser.add_argument(
        "--duration", type=float, default=30.0, help=duration_help or "seconds of load per run (default 30)"
    )
    parser.add_argument("--batch-size", type=int, default=1, help="samples per request for batched models (default 1)")
    parser.add_argument(
        "--inputs", type=Path, default=None,
        help="inputs to send: .npy (one-input model) or .npz keyed by input name; first axis = samples",
    )  # fmt: skip
    parser.add_argument(
        "--expected", type=Path, default=None,
        help="expected outputs of --inputs: .npy or .npz keyed by output name (answers checked within tolerance)",
    )  # fmt: skip
    parser.add_argument("--atol", type=float, default=None, help="absolute tolerance (default: the version's, or 1e-5)")
    parser.add_argument("--rtol", type=float, default=None, help="relative tolerance (default: the version's, or 1e-4)")
    parser.add_argument(
        "--model-repository", type=Path, default=None,
        help="the served repository, to read each version's conversion report and stored samples/expected outputs",
    )  # fmt: skip
    parser.add_argument(
        "--dynamic-size", type=int, default=4, help="size of dynamic dimensions other than the batch (default 4)"
    )
    parser.add_argument(
        "--processes", type=int, default=1,
        help="local Locust worker processes (distributed mode; default 1 = a single process)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed for the request sequence and Poisson arrivals")
    parser.add_argument("--slo", type=Path, default=None, help="YAML file of SLOs per model (exit 1 on a breach)")
    parser.add_argument(
        "--metrics-url", default=None, help="gateway Prometheus endpoint (default: http://<host>:8002/metrics)"
    )


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``loadtest*`` commands to a CLI (imports nothing heavy)."""
    run = subparsers.add_parser("loadtest", help="run a Locust load test and write a report folder")
    run.add_argument(
        "--host", required=True, help="http://HOST:PORT (rest, binary, tfs) or grpc://HOST:PORT (grpc, tfs_grpc)"
    )
    run.add_argument("--protocol", choices=[p.value for p in Protocol], default=Protocol.REST.value)
    run.add_argument("--out", type=Path, required=True, help="report folder (created)")
    _add_common(run)
    run.set_defaults(func=run_loadtest)

    bench = subparsers.add_parser("loadtest-compare", help="run the same load against several targets, print ratios")
    bench.add_argument(
        "--target",
        action="append",
        required=True,
        metavar="LABEL=PROTOCOL@URL",
        help="a target, e.g. rest=rest@http://127.0.0.1:8000 or grpc=grpc@grpc://127.0.0.1:8001 (repeat)",
    )
    bench.add_argument("--out", type=Path, required=True, help="folder for one report per target + comparison.json")
    _add_common(bench)
    bench.set_defaults(func=run_compare)

    run.add_argument(
        "--remote-workers", type=int, default=0,
        help="distributed across machines: be the Locust master and wait for this many `loadtest-worker`s",
    )  # fmt: skip
    run.add_argument("--master-port", type=int, default=5557, help="port remote workers connect to (default 5557)")

    worker = subparsers.add_parser(
        "loadtest-worker", help="a Locust worker for a `loadtest --remote-workers N` master on another machine"
    )
    worker.add_argument("--master", required=True, help="the master's HOST:PORT")
    worker.add_argument("--workers", type=int, required=True, help="how many workers the master expects (N)")
    worker.add_argument("--worker-index", type=int, default=0, help="this worker's number, 0..N-1 (seeds its requests)")
    worker.add_argument(
        "--host", required=True, help="http://HOST:PORT (rest, binary, tfs) or grpc://HOST:PORT (grpc, tfs_grpc)"
    )
    worker.add_argument("--protocol", choices=[p.value for p in Protocol], default=Protocol.REST.value)
    worker.add_argument("--out", type=Path, default=Path("loadtest-worker"), help="scratch folder (created)")
    _add_common(worker)
    worker.set_defaults(func=run_worker_command)

    sweep = subparsers.add_parser("loadtest-sweep", help="latency versus load: one run per level, table + plots")
    sweep.add_argument(
        "--host", required=True, help="http://HOST:PORT (rest, binary, tfs) or grpc://HOST:PORT (grpc, tfs_grpc)"
    )
    sweep.add_argument("--protocol", choices=[p.value for p in Protocol], default=Protocol.REST.value)
    sweep.add_argument("--out", type=Path, required=True, help="folder for one report per level + sweep.md/json/png")
    sweep.add_argument("--users", default=None, help="closed-loop levels, e.g. 1,8,32,64")
    sweep.add_argument("--rates", default=None, help="open-loop levels in req/s, e.g. 100,200,400")
    sweep.add_argument("--rate-start", type=float, default=None, help="open loop: first rate; steps up to saturation")
    sweep.add_argument("--rate-factor", type=float, default=2.0, help="open loop: multiply the rate by this each step")
    sweep.add_argument("--rate-max", type=float, default=50_000.0, help="open loop: never offer more than this")
    sweep.add_argument("--rate-users", type=int, default=None, help="open loop: users per level (default: from rate)")
    sweep.add_argument("--poisson", action="store_true", help="open loop: Poisson arrivals instead of even spacing")
    sweep.add_argument("--refine", type=int, default=1, help="open loop: bisect steps after the first miss (default 1)")
    sweep.add_argument("--p99-ms", type=float, default=None, help="the p99 bound (ms) that defines saturation")
    _add_common(sweep)
    sweep.set_defaults(func=run_sweep_command, duration=10.0)

    versions = subparsers.add_parser(
        "loadtest-compare-versions",
        help="every published version of one model under the same load, beside its conversion report",
    )
    versions.add_argument("--host", required=True, help="the gateway: http://HOST:PORT or grpc://HOST:PORT")
    versions.add_argument("--protocol", choices=[p.value for p in Protocol], default=Protocol.BINARY.value)
    versions.add_argument("--out", type=Path, required=True, help="folder for one report per run + comparison.md")
    versions.add_argument("--large-batch", type=int, default=32, help="the larger batch size (default 32)")
    versions.add_argument("--versions", default=None, help="only these versions, e.g. 1,3 (default: every one served)")
    _add_common(versions)
    versions.set_defaults(func=run_versions_command, duration=10.0)
    _register_rollouts(subparsers)


def _register_rollouts(subparsers: argparse._SubParsersAction[Any]) -> None:
    rollouts = subparsers.add_parser(
        "loadtest-rollouts",
        help="steady load on a model while rollouts from a plan file run through the deployment API",
    )
    rollouts.add_argument("--host", required=True, help="the gateway: http://HOST:PORT or grpc://HOST:PORT")
    rollouts.add_argument("--protocol", choices=[p.value for p in Protocol], default=Protocol.BINARY.value)
    rollouts.add_argument("--out", type=Path, required=True, help="report folder (created): rollouts.md/json, timeline")
    rollouts.add_argument("--plan", type=Path, required=True, help="YAML: the rollouts, in order, and what each does")
    rollouts.add_argument(
        "--deploy-url", default=None,
        help="the management API (default $MODELGATE_MANAGEMENT_URL, else port 8003 on the --host machine)",
    )  # fmt: skip
    rollouts.add_argument(
        "--token-file", type=Path, default=None,
        help="file holding the management token (default $MODELGATE_MANAGEMENT_TOKEN; none on loopback)",
    )  # fmt: skip
    rollouts.add_argument(
        "--warmup-requests", type=int, default=100, help="requests the gateway counts before the first rollout"
    )
    rollouts.add_argument(
        "--settle-requests", type=int, default=50, help="requests the gateway counts after a decision before the next"
    )
    rollouts.add_argument(
        "--rollout-timeout", type=float, default=300.0,
        help="seconds a rollout (or a wait for requests) may take before the scenario aborts it (default 300)",
    )  # fmt: skip
    _add_common(
        rollouts,
        shape_help=f"{SHAPE_HELP}; default poisson:rps=100,users=16 (steady open-loop load)",
        duration_help="most seconds of load: the scenario ends when its last rollout has settled (default 1800)",
    )
    rollouts.set_defaults(func=run_rollouts_command, shape="poisson:rps=100,users=16", duration=1800.0)


def input_options(args: argparse.Namespace) -> dict[str, Any]:
    """The RunOptions fields every load-test command shares."""
    return {
        "batch_size": args.batch_size,
        "seed": args.seed,
        "metrics_url": args.metrics_url,
        "inputs_file": args.inputs,
        "expected_file": args.expected,
        "atol": args.atol,
        "rtol": args.rtol,
        "model_repository": args.model_repository,
        "dynamic_size": args.dynamic_size,
        "processes": args.processes,
    }


def _error(command: str, message: str) -> int:
    print(f"modelgate {command}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def run_loadtest(args: argparse.Namespace) -> int:
    from loadtests.errors import LoadTestError
    from loadtests.report import build_report, console_summary, write_report
    from loadtests.runner import RunOptions, execute
    from loadtests.slo import load_slo_file

    try:
        slo = load_slo_file(args.slo) if args.slo is not None else None
        options = RunOptions(
            host=args.host,
            model=args.model,
            protocol=Protocol(args.protocol),
            shape=args.shape,
            duration=args.duration,
            out=args.out,
            version=args.version,
            remote_workers=args.remote_workers,
            master_port=args.master_port,
            **input_options(args),
        )
        artifacts = execute(options)
        report = build_report(artifacts, slo)
        write_report(report, artifacts)
    except LoadTestError as exc:
        return _error("loadtest", str(exc))
    except KeyboardInterrupt:
        print("modelgate loadtest: interrupted (Locust stopped)", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(console_summary(report))
    print(f"report: {args.out}")
    return EXIT_PASS if report.passed else EXIT_GATE


def run_compare(args: argparse.Namespace) -> int:
    from loadtests.bench import compare, format_table, parse_targets
    from loadtests.errors import LoadTestError
    from loadtests.runner import RunOptions
    from loadtests.slo import load_slo_file

    try:
        slo = load_slo_file(args.slo) if args.slo is not None else None
        targets = parse_targets(args.target)
        base = RunOptions(
            host=targets[0].host,
            model=args.model,
            protocol=targets[0].protocol,
            shape=args.shape,
            duration=args.duration,
            out=args.out,
            version=args.version,
            **input_options(args),
        )
        rows, reports = compare(targets, base, slo)
    except LoadTestError as exc:
        return _error("loadtest-compare", str(exc))
    except KeyboardInterrupt:
        print("modelgate loadtest-compare: interrupted (Locust stopped)", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(format_table(rows))
    for target, report in zip(targets, reports, strict=True):
        for line in [*(f"note: {note}" for note in report.notes), *(str(breach) for breach in report.breaches)]:
            print(f"{target.label}: {line}")
    print(f"report: {args.out}")
    return EXIT_PASS if all(report.passed for report in reports) else EXIT_GATE


def run_worker_command(args: argparse.Namespace) -> int:
    from loadtests.errors import LoadTestError
    from loadtests.runner import RunOptions, run_worker

    try:
        if args.workers < 1 or not 0 <= args.worker_index < args.workers:
            raise LoadTestError(f"--worker-index {args.worker_index} must be in 0..{args.workers - 1}")
        options = RunOptions(
            host=args.host, model=args.model, protocol=Protocol(args.protocol), shape=args.shape,
            duration=args.duration, out=args.out, version=args.version,
            **(input_options(args) | {"processes": args.workers}),
        )  # fmt: skip
        return run_worker(options, args.master, args.worker_index)
    except LoadTestError as exc:
        return _error("loadtest-worker", str(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def run_sweep_command(args: argparse.Namespace) -> int:
    from loadtests.errors import LoadTestError
    from loadtests.runner import RunOptions
    from loadtests.slo import load_slo_file
    from loadtests.sweep import SweepPlan, console_table, parse_list, run_sweep

    try:
        slo = load_slo_file(args.slo) if args.slo is not None else None
        plan = SweepPlan(
            users=parse_list(args.users, "--users", int) if args.users else (),
            rates=parse_list(args.rates, "--rates", float) if args.rates else (),
            rate_start=args.rate_start,
            rate_factor=args.rate_factor,
            rate_max=args.rate_max,
            p99_ms=args.p99_ms,
            poisson=args.poisson,
            rate_users=args.rate_users,
            refine=args.refine,
        )
        base = RunOptions(
            host=args.host, model=args.model, protocol=Protocol(args.protocol), shape=args.shape,
            duration=args.duration, out=args.out, version=args.version, **input_options(args),
        )  # fmt: skip
        result = run_sweep(base, plan, slo)
    except LoadTestError as exc:
        return _error("loadtest-sweep", str(exc))
    except KeyboardInterrupt:
        print("modelgate loadtest-sweep: interrupted (Locust stopped)", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(console_table(result, plan))
    print(f"report: {args.out / 'sweep.md'}")
    return EXIT_PASS


def run_versions_command(args: argparse.Namespace) -> int:
    from loadtests.errors import LoadTestError
    from loadtests.runner import RunOptions
    from loadtests.versions import compare_versions, console_table

    try:
        base = RunOptions(
            host=args.host, model=args.model, protocol=Protocol(args.protocol), shape=args.shape,
            duration=args.duration, out=args.out, version=None, **input_options(args),
        )  # fmt: skip
        only = [v.strip() for v in args.versions.split(",") if v.strip()] if args.versions else None
        rows = compare_versions(base, args.large_batch, only)
    except LoadTestError as exc:
        return _error("loadtest-compare-versions", str(exc))
    except KeyboardInterrupt:
        print("modelgate loadtest-compare-versions: interrupted (Locust stopped)", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(console_table(rows))
    print(f"report: {args.out / 'comparison.md'}")
    return EXIT_PASS if all(row.passed for row in rows) else EXIT_GATE


def run_rollouts_command(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from loadtests.deploy_api import DeployApi, default_deploy_url, read_token
    from loadtests.errors import LoadTestError
    from loadtests.report import build_report, write_report
    from loadtests.rollout_plan import load_plan
    from loadtests.rollout_report import build, console_table, write
    from loadtests.rollouts import DriverSettings, run_scenario
    from loadtests.runner import RunOptions
    from loadtests.slo import load_slo_file

    command = "loadtest-rollouts"
    try:
        if args.version is not None:
            raise LoadTestError("--model-version: not for rollouts (requests name only the model, to follow routing)")
        for flag, value in (("--warmup-requests", args.warmup_requests), ("--settle-requests", args.settle_requests)):
            if value < 1:
                raise LoadTestError(f"{flag} must be at least 1, got {value}")
        if args.rollout_timeout <= 0:
            raise LoadTestError(f"--rollout-timeout must be positive, got {args.rollout_timeout:g}")
        slo = load_slo_file(args.slo) if args.slo is not None else None
        plan = load_plan(args.plan)
        options = RunOptions(
            host=args.host, model=args.model, protocol=Protocol(args.protocol), shape=args.shape,
            duration=args.duration, out=args.out, follow_routing=True, **input_options(args),
        )  # fmt: skip
        settings = DriverSettings(args.warmup_requests, args.settle_requests, args.rollout_timeout)
        with DeployApi(args.deploy_url or default_deploy_url(args.host), read_token(args.token_file)) as api:
            scenario = run_scenario(options, plan, api, settings)
        report = build(scenario, slo.rollouts if slo is not None else None)
        run_report = build_report(scenario.run, None)
        note = "this is the whole scenario's load; its gate is the rollouts' (rollouts.md), not zero failures"
        write_report(replace(run_report, breaches=[], notes=[*run_report.notes, note]), scenario.run)
        write(report, scenario)
    except LoadTestError as exc:
        return _error(command, str(exc))
    except KeyboardInterrupt:
        print(f"modelgate {command}: interrupted (Locust stopped)", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(console_table(report))
    print(f"report: {args.out / 'rollouts.md'}")
    return EXIT_PASS if report.passed else EXIT_GATE


def main(argv: list[str] | None = None) -> int:
    """``python -m loadtests loadtest ...``: the same commands without the gateway's CLI."""
    parser = argparse.ArgumentParser(
        prog="python -m loadtests", description="Run Locust load tests against modelgate and gate on SLOs."
    )
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result
