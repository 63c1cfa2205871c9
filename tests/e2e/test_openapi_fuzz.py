"""Schemathesis against a real ``modelgate serve``'s ``/openapi.json`` with every check.

Two runs, each bounded (a fixed number of examples per operation) and deterministic
(schemathesis' deterministic generation, no example database):

- any names the spec allows: the server must never answer 5xx, must answer only documented
  statuses and shapes, and must reject everything the spec forbids (so the spec is no looser
  than the server) while accepting what it allows (400 only where the spec cannot say more);
- the paths pinned to the served model and version, so generated bodies reach the decoders
  and the model. A schema-valid infer body may still not fit the model's inputs (names,
  datatypes, shapes are per model), so there 400 counts as accepting it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server_process import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXAMPLES = 10
ACCEPTED = '["200", "404", "429", "503", "504"]'
ACCEPTED_INFER = '["200", "400", "404", "429", "503", "504"]'


@pytest.fixture(scope="module")
def server(demo_repo: Path) -> Iterator[ServerProcess]:
    with ServerProcess(demo_repo) as proc:
        yield proc


def _config(tmp_path: Path, pinned: bool) -> Path:
    lines = [
        "[checks.positive_data_acceptance]", f"expected-statuses = {ACCEPTED}", "",
        "[[operations]]", 'include-path-regex = "/infer$"',
        f"checks.positive_data_acceptance.expected-statuses = {ACCEPTED_INFER}", "",
    ]  # fmt: skip
    if pinned:
        lines = ["[parameters]", '"path.model" = "digits_mlp"', '"path.version" = "1"', "", *lines]
    path = tmp_path / "schemathesis.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _schemathesis(server: ServerProcess, config: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", f"{server.url}/openapi.json",
        "--checks", "all", "--phases", "coverage,fuzzing", "--max-examples", str(EXAMPLES),
        "--generation-deterministic", "--workers", "1", "--no-color", "--request-timeout", "60",
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, cwd=config.parent, timeout=600)


@pytest.mark.parametrize("pinned", [False, True], ids=["any-names", "served-model"])
def test_openapi_fuzz_every_check(server: ServerProcess, tmp_path: Path, pinned: bool) -> None:
    run = _schemathesis(server, _config(tmp_path, pinned))
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    assert "passed" in run.stdout and "failed" not in run.stdout.split("SUMMARY")[-1]
