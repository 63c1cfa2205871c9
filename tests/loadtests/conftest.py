"""Fixtures for the load-test suites: a temp repository and a real ``modelgate serve`` on free ports."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from demo.mlp import CONFIG_YAML
from tests.e2e.server_process import ServerProcess
from tests.onnx_models import write_digits_repo, write_model

WRONG_MODEL = "digits_wrong"
EVERY_TYPE = "every_type"
VERSIONED = "digits_versions"

RunModelgate = Callable[..., subprocess.CompletedProcess[str]]


def write_wrong_model(repository: Path) -> None:
    """A real ONNX model with digits_mlp's signature that answers "0" to every image."""
    bias = np.zeros(10, np.float32)
    bias[0] = 8.0
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["pixels", "w"], ["logits_raw"]),
            helper.make_node("Add", ["logits_raw", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        ],
        WRONG_MODEL,
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(np.zeros((64, 10), np.float32), "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    version_dir = repository / WRONG_MODEL / "1"
    version_dir.mkdir(parents=True)
    onnx.save(model, version_dir / "model.onnx")
    (repository / WRONG_MODEL / "config.yaml").write_text(CONFIG_YAML, encoding="utf-8")


def conversion_report(version: int, accuracy: float, size: int, compression: float) -> dict[str, object]:
    """A conversion report as the converters write it beside a version (only the fields the comparison reads)."""
    return {
        "name": VERSIONED,
        "source_accuracy": 0.97,
        "tolerances": {"fp32": {"atol": 1e-5, "rtol": 1e-4, "min_top1": 0.99}},
        "artifacts": [
            {"target": f"target{version}", "format": "onnx", "precision": "fp32", "backend": "onnxruntime",
             "published_version": version, "accuracy": accuracy, "size_bytes": size, "compression_vs_fp32": compression}
        ],
    }  # fmt: skip


VERSION_REPORTS = {1: conversion_report(1, 0.97, 204_800, 1.0), 2: conversion_report(2, 0.95, 51_200, 0.25)}


def write_versioned_model(repository: Path) -> None:
    """The demo MLP published twice, each version with its own conversion report (version 2 has no F1)."""
    import json
    import shutil

    source = write_digits_repo(repository, VERSIONED)
    shutil.copytree(source / "1", source / "2")
    for version, report in VERSION_REPORTS.items():
        (source / str(version) / "conversion-report.json").write_text(json.dumps(report), encoding="utf-8")
    config = CONFIG_YAML.replace("version_policy: {latest: 1}", "version_policy: {all: true}")
    (source / "config.yaml").write_text(config, encoding="utf-8")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``modelgate serve`` over a repository with digits_mlp and digits_wrong."""
    repository = tmp_path_factory.mktemp("loadtest_repo")
    write_digits_repo(repository)
    write_wrong_model(repository)
    write_model(repository, EVERY_TYPE, "backend: onnxruntime\n")
    write_versioned_model(repository)
    with ServerProcess(repository) as server:
        yield server
        server.terminate()


@pytest.fixture
def run_modelgate() -> RunModelgate:
    """Run the real ``modelgate`` command line (the console script of this environment)."""

    def run(*args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        command = [str(Path(sys.executable).with_name("modelgate")), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)

    return run
