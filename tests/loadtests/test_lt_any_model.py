"""Any model, every protocol: a model with every V2 datatype (BYTES included) under short real Locust runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.e2e.server_process import ServerProcess
from tests.loadtests.conftest import EVERY_TYPE, RunModelgate
from tests.loadtests.test_lt_e2e import gateway_count, grpc_url, metrics_url
from tests.onnx_models import ONNX_TYPES

pytestmark = pytest.mark.e2e

PROTOCOL_LABELS = {"rest": "rest", "binary": "rest", "grpc": "grpc", "tfs": "tfs_rest", "tfs_grpc": "tfs_grpc"}


def every_type_inputs(samples: int = 6) -> dict[str, np.ndarray]:
    """One array per input of the identity model, [samples, 3]; BYTES as text (valid UTF-8, not only ASCII)."""
    rng = np.random.default_rng(5)
    arrays: dict[str, np.ndarray] = {}
    for datatype in ONNX_TYPES:
        if datatype == "BYTES":
            arrays[f"in_{datatype}"] = np.array([[f"é-{i}-{j}" for j in range(3)] for i in range(samples)])
        elif datatype == "BOOL":
            arrays[f"in_{datatype}"] = rng.random((samples, 3)) < 0.5
        else:
            dtype = {"FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}.get(datatype, datatype.lower())
            arrays[f"in_{datatype}"] = (rng.random((samples, 3)) * 100).astype(dtype)
    return arrays


def save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    named: dict[str, Any] = dict(arrays)
    np.savez(path, **named)


def write_files(folder: Path, wrong: bool = False) -> tuple[Path, Path]:
    """``--inputs`` and ``--expected`` for the identity model (each output is its input)."""
    inputs = every_type_inputs()
    expected = {name.replace("in_", "out_"): array.copy() for name, array in inputs.items()}
    if wrong:
        expected["out_FP32"][:, 1] += 1.0
    save(folder / "inputs.npz", inputs)
    save(folder / "expected.npz", expected)
    return folder / "inputs.npz", folder / "expected.npz"


def summary(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize("protocol", list(PROTOCOL_LABELS))
def test_every_protocol_carries_every_datatype_and_checks_the_answers(
    gateway: ServerProcess, run_modelgate: RunModelgate, tmp_path: Path, protocol: str
) -> None:
    inputs, expected = write_files(tmp_path)
    out = tmp_path / "report"
    host = grpc_url(gateway) if protocol in ("grpc", "tfs_grpc") else gateway.url
    before = gateway_count(gateway, EVERY_TYPE, PROTOCOL_LABELS[protocol])
    result = run_modelgate(
        "loadtest", "--host", host, "--model", EVERY_TYPE, "--protocol", protocol, "--batch-size", "2",
        "--inputs", str(inputs), "--expected", str(expected), "--atol", "0", "--rtol", "0",
        "--shape", "constant:users=2", "--duration", "2", "--out", str(out), "--metrics-url", metrics_url(gateway),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    data = summary(out)
    [entry] = data["results"]
    assert data["run"]["answers_checked"] == "expected"
    assert entry["requests"] > 0 and entry["failures"] == 0
    assert entry["requests"] == gateway_count(gateway, EVERY_TYPE, PROTOCOL_LABELS[protocol]) - before


def test_an_answer_off_the_expected_output_fails_the_gate(
    gateway: ServerProcess, run_modelgate: RunModelgate, tmp_path: Path
) -> None:
    inputs, expected = write_files(tmp_path, wrong=True)
    out = tmp_path / "report"
    result = run_modelgate(
        "loadtest", "--host", gateway.url, "--model", EVERY_TYPE, "--protocol", "binary",
        "--inputs", str(inputs), "--expected", str(expected),
        "--shape", "constant:users=2", "--duration", "2", "--out", str(out), "--metrics-url", metrics_url(gateway),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    data = summary(out)
    [entry] = data["results"]
    assert 0 < entry["failures"] == entry["requests"]  # every sample's expected out_FP32 is off by 1
    assert data["server"]["by_status"] == {"200": entry["requests"]}
    assert any("output 'out_FP32' differs from the stored answer by 1" in f["error"] for f in data["failures"])


def test_generated_payloads_cover_a_model_without_files(
    gateway: ServerProcess, run_modelgate: RunModelgate, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    result = run_modelgate(
        "loadtest", "--host", grpc_url(gateway), "--model", EVERY_TYPE, "--protocol", "tfs_grpc",
        "--dynamic-size", "5", "--batch-size", "3",
        "--shape", "constant:users=1", "--duration", "2", "--out", str(out), "--metrics-url", metrics_url(gateway),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    data = summary(out)
    assert data["run"]["answers_checked"] == "generic" and data["run"]["inputs_from"] == "generated from the metadata"
    assert data["results"][0]["failures"] == 0 and data["results"][0]["requests"] > 0
    with np.load(out / "pool.npz") as pool:
        assert pool["input:in_FP16"].shape[1:] == (5,)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("non-UTF-8 bytes over JSON", "protocol rest cannot test model 'every_type': input 'in_BYTES' holds BYTES"),
        ("missing input", "--inputs"),
        ("wrong shape", "'in_FP32' has shape [4, 2, 2]; the model needs [samples, -1]"),
    ],
)
def test_a_pair_that_cannot_work_is_refused_up_front(
    gateway: ServerProcess, run_modelgate: RunModelgate, tmp_path: Path, case: str, expected: str
) -> None:
    inputs = every_type_inputs(4)
    if case == "non-UTF-8 bytes over JSON":
        inputs["in_BYTES"] = np.array([[b"\xff\xfe", b"ok", b"x"]] * 4)
    elif case == "missing input":
        del inputs["in_INT8"]
        expected = "--inputs " + str(tmp_path / "inputs.npz") + ": no array for input(s) in_INT8"
    else:
        inputs["in_FP32"] = np.zeros((4, 2, 2), np.float32)
    save(tmp_path / "inputs.npz", inputs)
    out = tmp_path / "report"
    result = run_modelgate(
        "loadtest", "--host", gateway.url, "--model", EVERY_TYPE, "--protocol", "rest",
        "--inputs", str(tmp_path / "inputs.npz"), "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not out.exists()
