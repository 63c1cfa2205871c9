"""The demo CNNs ``make models`` builds, load-tested as a release engineer would (issue 11's first complaint).

``modelgate loadtest --model digits_keras`` must work, and so must runs pinned to a TFLite, a
TensorFlow SavedModel (worker process) and a TorchScript-on-TorchServe version.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.server_process import ServerProcess
from tests.loadtests.conftest import RunModelgate

pytestmark = [pytest.mark.e2e, pytest.mark.frameworks]
REPO = Path(__file__).resolve().parents[2] / "model_repo"
TORCHSCRIPT_ONLY = "version_policy: {specific: [1]}\nlabels: {torchscript: 1}\n"


@pytest.fixture(scope="module")
def demo_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    """digits_keras (every version) and digits_torch's TorchScript version, served for real."""
    missing = [m for m in ("digits_keras", "digits_torch") if not (REPO / m / "config.yaml").is_file()]
    assert not missing, f"demo models {missing} are not built: run `make models` (make test does)"
    repository = tmp_path_factory.mktemp("demo_cnns")
    shutil.copytree(REPO / "digits_keras", repository / "digits_keras")
    shutil.copytree(REPO / "digits_torch" / "1", repository / "digits_torch" / "1")
    (repository / "digits_torch" / "config.yaml").write_text(TORCHSCRIPT_ONLY, encoding="utf-8")
    with ServerProcess(repository) as server:
        yield server, repository
        server.terminate()


def labels(model: str) -> dict[str, int]:
    import yaml

    loaded: dict[str, int] = yaml.safe_load((REPO / model / "config.yaml").read_text(encoding="utf-8"))["labels"]
    return loaded


def run(run_modelgate: RunModelgate, server: ServerProcess, out: Path, protocol: str, *extra: str) -> dict[str, Any]:
    host = f"grpc://127.0.0.1:{server.grpc}" if protocol in ("grpc", "tfs_grpc") else server.url
    result = run_modelgate(
        "loadtest", "--host", host, "--protocol", protocol, "--shape", "constant:users=2", "--duration", "2",
        "--batch-size", "4", "--out", str(out), "--metrics-url", f"http://127.0.0.1:{server.metrics}/metrics", *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    data: dict[str, Any] = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    [entry] = data["results"]
    assert entry["requests"] > 0 and entry["failures"] == 0
    assert data["server"]["requests"] == entry["requests"]
    return data


def test_digits_keras_by_name_as_a_new_user_types_it(
    demo_gateway: tuple[ServerProcess, Path], run_modelgate: RunModelgate, tmp_path: Path
) -> None:
    server, _ = demo_gateway
    data = run(run_modelgate, server, tmp_path / "r", "rest", "--model", "digits_keras")
    assert data["run"]["answers_checked"] == "generic"


@pytest.mark.parametrize(("label", "protocol"), [("tflite_int8", "binary"), ("savedmodel", "tfs_grpc")])
def test_keras_versions_on_tflite_and_tensorflow(
    demo_gateway: tuple[ServerProcess, Path], run_modelgate: RunModelgate, tmp_path: Path, label: str, protocol: str
) -> None:
    server, repository = demo_gateway
    version = str(labels("digits_keras")[label])
    data = run(
        run_modelgate, server, tmp_path / "r", protocol, "--model", "digits_keras", "--model-version", version,
        "--model-repository", str(repository),
    )  # fmt: skip
    assert data["run"]["version"] == version
    precision = {"tflite_int8": "int8", "savedmodel": "fp32"}[label]
    report = json.loads((repository / "digits_keras" / version / "conversion-report.json").read_text("utf-8"))
    tolerance = report["tolerances"][precision]
    assert data["run"]["tolerance"] == {"atol": tolerance["atol"], "rtol": tolerance["rtol"]}


def test_torchscript_on_torchserve(
    demo_gateway: tuple[ServerProcess, Path], run_modelgate: RunModelgate, tmp_path: Path
) -> None:
    server, _ = demo_gateway
    data = run(run_modelgate, server, tmp_path / "r", "grpc", "--model", "digits_torch", "--model-version", "1")
    assert data["run"]["version"] == "1"
