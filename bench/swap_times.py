"""Swap time per backend: from a management ``load`` call to the version serving (load + warm-up).

Copies the model repository, keeps only each model's last version in its policy, starts
``modelgate serve`` on free ports, then loads every other version through the management API
and reports the gateway's own timings (load, warm-up, total) per backend::

    python -m bench.swap_times --model-repository model_repo [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

_MANAGEMENT = re.compile(r"management=[^ ]+:(\d+) ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, default=Path("model_repo"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        shutil.copytree(args.model_repository, repo, ignore=shutil.ignore_patterns(".modelgate"))
        targets = _first_versions_only(repo)
        proc, port = _serve(repo)
        try:
            rows = [_measure(port, model, version, backend, args.repeat) for model, version, backend in targets]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)
    print("| model | version | backend | load s | warm-up s | load → serving s |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| {} | {} | {} | {:.3f} | {:.3f} | {:.3f} |".format(*row))
    return 0


def _first_versions_only(repo: Path) -> list[tuple[str, int, str]]:
    targets = []
    for model_dir in sorted(p for p in repo.iterdir() if p.is_dir() and not p.name.startswith(".")):
        config_path = model_dir / "config.yaml"
        config = yaml.safe_load(config_path.read_text()) or {}
        versions = sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
        config["version_policy"] = {"specific": versions[-1:]}
        config.pop("labels", None)
        config.pop("default_version", None)
        config_path.write_text(yaml.safe_dump(config))
        for version in versions[:-1]:
            version_config = model_dir / str(version) / "config.yaml"
            backend = (
                (yaml.safe_load(version_config.read_text()) or {}).get("backend") if version_config.exists() else None
            )
            targets.append((model_dir.name, version, str(backend or config.get("backend"))))
    return targets


def _serve(repo: Path) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "MODELGATE_MANAGEMENT_PORT": "0"}
    command = [sys.executable, "-m", "gateway.cli", "serve", "--model-repository", str(repo), "--http-port", "0",
               "--grpc-port", "0", "--metrics-port", "0", "--log-level", "info"]  # fmt: skip
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    port = 0
    for line in proc.stderr:
        if m := _MANAGEMENT.search(line):
            port = int(m.group(1))
        if "modelgate ready" in line:
            break
    if not port:
        raise SystemExit("the gateway did not start")
    return proc, port


def _measure(port: int, model: str, version: int, backend: str, repeat: int) -> tuple[object, ...]:
    url = f"http://127.0.0.1:{port}/api/models/{model}"
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        r = httpx.post(f"{url}/load", json={"source": str(version)}, timeout=600)
        wall = time.perf_counter() - started
        if r.status_code != 200:
            raise SystemExit(f"{model} v{version}: {r.text}")
        doc = r.json()
        samples.append((doc["load_seconds"], doc["warmup_seconds"], wall))
        httpx.post(f"{url}/unload", json={"version": str(version)}, timeout=600).raise_for_status()
    best = min(samples, key=lambda s: s[2])
    return (model, version, backend, *best)


if __name__ == "__main__":
    raise SystemExit(main())
