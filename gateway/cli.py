"""``modelgate`` command line: serve, models, and the converter and load-test subcommands.

Nothing is parsed or built at import time; ``main()`` does it all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from types import ModuleType

from gateway import __version__
from gateway.core.config import ModelConfig
from gateway.core.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelgate", description="Model deployment and inference-serving gateway.")
    parser.add_argument("--version", action="version", version=f"modelgate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_serve(sub)
    _add_models(sub)
    for module in _plugin_modules():
        module.register(sub)  # each plugin module defines register(subparsers)
    return parser


def _plugin_modules() -> list[ModuleType]:
    """Subcommands that live in other packages (their modules import nothing heavy)."""
    import importlib

    modules = []
    for name in ("converters.cli", "loadtests.cli", "gateway.backends.torchserve.cli", "gateway.deploy_cli"):
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name not in (name, name.split(".")[0]):
                raise
    return modules


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="serve a model repository over V2 REST/gRPC with Prometheus metrics")
    p.add_argument("--model-repository", type=Path, help="model repository directory (default: model_repo)")
    p.add_argument("--config", type=Path, help="YAML settings file (flags > MODELGATE_* env > this file)")
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--http-port", type=int, help="V2 REST port (default 8000; 0 = any free port)")
    p.add_argument("--grpc-port", type=int, help="V2 gRPC port (default 8001)")
    p.add_argument("--metrics-port", type=int, help="Prometheus port (default 8002)")
    p.add_argument(
        "--workers",
        help="serving processes sharing the ports, each with its own backends (default 1; 'auto' = one per core)",
    )
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=["text", "json"], help="log lines as text (default) or JSON lines")
    p.add_argument(
        "--access-log",
        action="store_true",
        default=None,
        help="one log record per REST/gRPC request (request id, model, version, status, latency)",
    )
    p.add_argument("--tls-cert", type=Path, help="PEM certificate: serve REST and gRPC over TLS (with --tls-key)")
    p.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    p.add_argument("--tls-client-ca", type=Path, help="PEM CA bundle: require client certificates (mutual TLS)")
    p.set_defaults(func=_serve)


def _add_models(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("models", help="list the repository and validate every config (exit 1 on errors)")
    p.add_argument("--model-repository", type=Path, help="model repository directory (default: model_repo)")
    p.add_argument("--config", type=Path, help="YAML settings file")
    p.add_argument("--load", action="store_true", help="also load every artifact with its backend")
    p.add_argument("--json", action="store_true", help="print the index as JSON")
    p.add_argument("--schema", action="store_true", help="print the JSON Schema of config.yaml and exit")
    p.set_defaults(func=_models)


def _serve(args: argparse.Namespace) -> int:
    from gateway.logs import configure_logging
    from gateway.server import Gateway, run_until_signal
    from gateway.settings import load_settings

    settings = load_settings(
        args.config,
        model_repository=args.model_repository,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        log_level=args.log_level,
        log_format=args.log_format,
        access_log=args.access_log,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        workers=args.workers,
    )
    configure_logging(settings.log_level, settings.log_format)
    if not settings.model_repository.is_dir():
        raise ConfigError(f"model repository {settings.model_repository} does not exist or is not a directory")
    count = settings.worker_count()
    if count > 1:
        from gateway.multiprocess.supervisor import serve_workers

        return serve_workers(settings, count)
    run_until_signal(Gateway(settings, own_process=True))
    return 0


def _models(args: argparse.Namespace) -> int:
    from gateway.core.models import ModelManager
    from gateway.core.repository import ModelRepository
    from gateway.settings import load_settings

    if args.schema:
        print(json.dumps(ModelConfig.model_json_schema(), indent=2))
        return 0
    settings = load_settings(args.config, model_repository=args.model_repository)
    from gateway.backends import default_registry

    manager = ModelManager(ModelRepository(settings.model_repository), default_registry())
    rows = asyncio.run(_index(manager, load=args.load))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            version = row.get("version", "-")
            reason = f"  {row['reason']}" if row.get("reason") else ""
            print(f"{row['name']:<24} {version:>7}  {row['state']:<12}{reason}")
    return 1 if any(row["state"] == "UNAVAILABLE" for row in rows) else 0


async def _index(manager: object, load: bool) -> list[dict[str, object]]:
    from gateway.core.models import ModelManager, VersionState

    assert isinstance(manager, ModelManager)
    if load:
        await manager.load_all()
        rows = manager.index()
        await manager.unload_all()
        return rows
    await manager.plan_all()
    return [{**row, "state": "VALID"} if row["state"] == VersionState.LOADING.value else row for row in manager.index()]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"modelgate: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"modelgate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    raise SystemExit(main())
