"""Deployment success under load on the demo MLP: build the candidate versions, serve them, run the scenario.

Copies ``digits_mlp`` from the model repository into a scratch repository as version 1, adds the
candidates ``loadtests/rollouts.example.yaml`` rolls out (real ONNX models built from it by
``tests/lifecycle_models.py``: good copies, one that fails on real digits, a slow one, one that
answers differently, and one whose artifact is not ONNX), starts ``modelgate serve`` on free ports,
runs ``modelgate loadtest-rollouts`` against it and stops the gateway::

    python -m bench.rollouts_demo --model-repository model_repo --out reports/rollouts   # make loadtest-rollouts

Extra arguments after ``--`` go to ``modelgate loadtest-rollouts`` (e.g. ``-- --shape poisson:rps=50,users=8``).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.e2e.server_process import ServerProcess
from tests.lifecycle_models import add_variant

MODEL = "digits_mlp"
#: Candidate versions and what they are; the plan file says what each is expected to do.
CANDIDATES = {2: "same", 3: "errors", 4: "slow", 5: "wrong", 7: "same"}
NOT_ONNX = 6
SLOW_SIZE = 700  # 4 chained 700x700 MatMuls: about 2.7 GFLOP a request, hundreds of times the MLP


def build_repository(source: Path, target: Path) -> None:
    """``target/digits_mlp``: the demo MLP as version 1 (the only one served at start) and the candidates."""
    model_dir = target / MODEL
    shutil.copytree(source / MODEL / "1", model_dir / "1")
    config = (source / MODEL / "config.yaml").read_text(encoding="utf-8")
    (model_dir / "config.yaml").write_text(config.replace("{latest: 1}", "{specific: [1]}"), encoding="utf-8")
    for version, kind in CANDIDATES.items():
        add_variant(target, version, kind, size=SLOW_SIZE)
    (model_dir / str(NOT_ONNX)).mkdir()
    (model_dir / str(NOT_ONNX) / "model.onnx").write_bytes(b"not an ONNX model")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, default=Path("model_repo"))
    parser.add_argument("--out", type=Path, default=Path("reports/rollouts"))
    parser.add_argument("--plan", type=Path, default=Path(__file__).parent.parent / "loadtests/rollouts.example.yaml")
    parser.add_argument("--slo", type=Path, default=Path(__file__).parent.parent / "loadtests/slo.example.yaml")
    parser.add_argument("extra", nargs="*", help="more `modelgate loadtest-rollouts` arguments (after --)")
    args = parser.parse_args(argv)
    if not (args.model_repository / MODEL / "1").is_dir():
        print(f"rollouts_demo: error: no {MODEL}/1 in {args.model_repository} (run `make models`)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        build_repository(args.model_repository, repo)
        with ServerProcess(repo) as server:
            command = [
                str(Path(sys.executable).with_name("modelgate")), "loadtest-rollouts",
                "--host", server.url, "--model", MODEL, "--protocol", "binary",
                "--deploy-url", server.management_url, "--metrics-url", f"http://127.0.0.1:{server.metrics}/metrics",
                "--plan", str(args.plan), "--slo", str(args.slo), "--out", str(args.out),
                "--shape", "poisson:rps=100,users=16", "--warmup-requests", "200", "--settle-requests", "200",
                *args.extra,
            ]  # fmt: skip
            print("$", shlex.join(command), flush=True)
            return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
