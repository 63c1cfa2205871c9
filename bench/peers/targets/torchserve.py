"""TorchServe 0.12 (the project's own install) on the TorchScript version of the same MLP.

The handler (services/torchserve_handler.py) takes the same V2 JSON body. Tuned as TorchServe's
performance guide says: as many workers as cores (2) with one torch thread each, the access log
and model/system metrics logs off, token authorization and the model API off, everything on
127.0.0.1. Java is started directly (not through the ``torchserve`` launcher and its PID file).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import tempfile
from pathlib import Path

from bench.peers.targets.base import MODEL_NAME, SERVICES, Context, NotRun, Target, free_port

LOG4J = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders><Console name="STDOUT" target="SYSTEM_OUT"><PatternLayout pattern="%d %p %c: %m%n"/></Console></Appenders>
  <Loggers>
    <Logger name="ACCESS_LOG" level="off" additivity="false"/>
    <Logger name="MODEL_METRICS" level="off" additivity="false"/>
    <Logger name="TS_METRICS" level="off" additivity="false"/>
    <Logger name="MODEL_LOG" level="error" additivity="false"><AppenderRef ref="STDOUT"/></Logger>
    <Root level="warn"><AppenderRef ref="STDOUT"/></Root>
  </Loggers>
</Configuration>
"""
WORKERS = 2


def _ts_home() -> Path:
    spec = importlib.util.find_spec("ts")
    if spec is None or not spec.submodule_search_locations:
        raise NotRun("torchserve is not installed in the project's venv")
    return Path(next(iter(spec.submodule_search_locations))).resolve().parent


def _archive(ctx: Context, store: Path) -> None:
    store.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [ctx.python, "-m", "model_archiver.model_packaging", "--model-name", MODEL_NAME, "--version", "1",
         "--serialized-file", str(ctx.torchscript_model), "--handler", str(SERVICES / "torchserve_handler.py"),
         "--export-path", str(store), "--force"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise NotRun(f"torch-model-archiver failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")


def prepare(ctx: Context) -> Target:
    if not ctx.torchscript_model.exists():
        raise NotRun("no TorchScript model (its build failed)")
    home = _ts_home()
    # Worker sockets live in java.io.tmpdir: a short path keeps them under the 107-byte Unix socket limit.
    run = Path(tempfile.mkdtemp(prefix="mg-ts-"))
    store = run / "model_store"
    _archive(ctx, store)
    (run / "log4j2.xml").write_text(LOG4J)
    (run / "tmp").mkdir()
    http, management, metrics, grpc_i, grpc_m = (free_port() for _ in range(5))
    config = run / "config.properties"
    config.write_text("\n".join([
        f"inference_address=http://127.0.0.1:{http}", f"management_address=http://127.0.0.1:{management}",
        f"metrics_address=http://127.0.0.1:{metrics}", "grpc_inference_address=127.0.0.1",
        "grpc_management_address=127.0.0.1", f"grpc_inference_port={grpc_i}", f"grpc_management_port={grpc_m}",
        f"model_store={store}",
        f"allowed_urls=file://\\\\Q{store}\\\\E/[^/]+\\\\.mar",
        f"load_models={MODEL_NAME}.mar", f"default_workers_per_model={WORKERS}",
        "disable_token_authorization=true", "enable_model_api=false", "disable_system_metrics=true",
        "install_py_dep_per_model=false", "async_logging=true",
    ]) + "\n")  # fmt: skip
    java = os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else "java"
    return Target(
        name="torchserve",
        command=[
            java,
            f"-Dmodel_server_home={home}",
            f"-Djava.io.tmpdir={run / 'tmp'}",
            f"-Dlog4j.configurationFile={run / 'log4j2.xml'}",
            "-Xmx512m",
            "-XX:+UseSerialGC",
            "-cp",
            f".:{home / 'ts' / 'frontend' / '*'}",
            "org.pytorch.serve.ModelServer",
            "--python",
            ctx.python,
            "-f",
            str(config),
            "-ncs",
        ],
        env={
            **os.environ,
            "TMPDIR": str(run / "tmp"),
            "LOG_LOCATION": str(run / "logs"),
            "METRICS_LOCATION": str(run / "logs"),
        },
        cwd=run,
        ready_url=f"http://127.0.0.1:{http}/ping",
        http_url=f"http://127.0.0.1:{http}/predictions/{MODEL_NAME}",
        scratch=run,
        setup=f"TorchServe 0.12.0 on TorchScript, {WORKERS} workers x 1 torch thread, access/metrics logs off",
    )
