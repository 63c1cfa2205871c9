"""Serve what ``modelgate convert`` published through the real gateway and compare with the source model.

The repository is loaded by the real :class:`ModelManager` over the real backends (ONNX Runtime and
TFLite in process, TensorFlow in a worker process, TorchScript on a managed TorchServe), and every
published version answers the stored samples through the data plane, as every protocol calls it.
Its answers must equal the source model's own (computed in a separate step, loading the source as
its author would) within the tolerance of the version's precision from its conversion report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from converters.isolation import run_step
from converters.publish import REPORT_JSON
from gateway.backends import default_registry
from gateway.backends.onnxruntime import OnnxRuntimeBackend
from gateway.backends.tensorflow import TensorFlowBackend
from gateway.backends.tflite import TFLiteBackend
from gateway.core.backend import BackendRegistry
from gateway.core.config import CONFIG_FILE
from gateway.core.dataplane import DataPlane
from gateway.core.errors import InvalidInput
from gateway.core.types import InferRequest, Tensor
from tests.harness import infer_named, loaded


@dataclass(frozen=True)
class Converted:
    """One ``modelgate convert`` run: exit code, JSON report, stderr, and where it published."""

    code: int
    report: dict[str, Any]
    err: str
    repo: Path
    name: str

    def artifacts(self) -> dict[str, dict[str, Any]]:
        return {a["target"]: a for a in self.report["artifacts"]}

    def published(self) -> dict[str, int]:
        """``{target: version}`` of what was published."""
        return {a["target"]: a["published_version"] for a in self.report["artifacts"] if a["published_version"]}


def cli_convert(source: Path, repo: Path, name: str, *argv: str) -> Converted:
    """``modelgate convert SOURCE --name NAME --model-repository REPO ... --json`` as a real process."""
    args = [sys.executable, "-m", "gateway.cli", "convert", str(source), "--name", name,
            "--model-repository", str(repo), *argv, "--json"]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=1800, check=False)
    report = json.loads(done.stdout) if done.stdout.strip() else {}
    return Converted(done.returncode, report, done.stderr, repo, name)


def source_answers(source: Path, kind: str, inputs: Path, folder: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """The source model's outputs on ``inputs`` in its own output order (``"0"``, ``"1"``...), and dict keys."""
    output = folder / "source-answers.npz"
    result = run_step("tests.converters.shapes_steps:source_outputs",
                      {"path": str(source), "kind": kind, "inputs": str(inputs), "output": str(output)},
                      folder / "steps")  # fmt: skip
    return dict(np.load(output)), list(result["keys"])


def in_process_registry() -> BackendRegistry:
    """The gateway's backends without TorchServe: a torchscript version stays unavailable, not started."""
    registry = BackendRegistry()
    for backend in (OnnxRuntimeBackend, TFLiteBackend, TensorFlowBackend):
        registry.register(backend)
    return registry


def registry_for(torchserve: bool) -> BackendRegistry:
    return default_registry() if torchserve else in_process_registry()


async def served_answers(
    converted: Converted, inputs: dict[str, np.ndarray], targets: set[str], registry: BackendRegistry
) -> dict[str, dict[str, np.ndarray]]:
    """``{target: {output: array}}``: each published target's version answering ``inputs`` through the gateway.

    A version whose config pins the batch (shape[0] > 0, e.g. a TorchScript RNN) is sent that many rows at a time.
    """
    versions = converted.published()
    answers: dict[str, dict[str, np.ndarray]] = {}
    async with loaded(converted.repo, registry) as served:
        for target in sorted(targets):
            version = str(versions[target])
            config = yaml.safe_load((converted.repo / converted.name / version / CONFIG_FILE).read_text())
            answers[target] = await _ask(served.dataplane, converted.name, version, config["inputs"], inputs)
    return answers


async def _ask(
    plane: DataPlane, name: str, version: str, specs: list[dict[str, Any]], inputs: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    rows = len(next(iter(inputs.values())))
    pinned = specs[0]["shape"][0]
    step = pinned if pinned > 0 else rows
    if pinned > 0:  # the pin is enforced: a larger batch is refused before it reaches the runtime
        tensors = [Tensor(s["name"], s["datatype"], inputs[s["name"]][: pinned + 1]) for s in specs]
        with pytest.raises(InvalidInput, match=rf"shape \[{pinned + 1}, .* does not match the model's \[{pinned}, "):
            await infer_named(plane, InferRequest(name, tensors, model_version=version))
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, rows, step):
        tensors = [Tensor(s["name"], s["datatype"], inputs[s["name"]][start : start + step]) for s in specs]
        response = await infer_named(plane, InferRequest(name, tensors, model_version=version))
        parts.append({t.name: t.data for t in response.outputs})
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def assert_answers_like_source(
    converted: Converted, answers: dict[str, dict[str, np.ndarray]], source: dict[str, np.ndarray]
) -> None:
    """Every output of every served target equals the source's, within its precision's tolerance."""
    names = [o["name"] for o in converted.report["outputs"]]
    expected = {name: source[str(i)] for i, name in enumerate(names)}
    for target, outputs in answers.items():
        artifact = converted.artifacts()[target]
        tolerance = converted.report["tolerances"][artifact["precision"]]
        assert set(outputs) == set(names), (target, sorted(outputs))
        for name, want in expected.items():
            got = outputs[name]
            assert got.shape == want.shape, (target, name, got.shape, want.shape)
            bound = tolerance["atol"] + tolerance["rtol"] * np.abs(want)
            worst = float(np.max(np.abs(got.astype(np.float64) - want)))
            assert np.all(np.abs(got - want) <= bound), f"{target} {name}: max abs error {worst:.3g}"


def stored_report(converted: Converted, target: str) -> dict[str, Any]:
    """The conversion report stored beside a published version."""
    version = converted.published()[target]
    report: dict[str, Any] = json.loads((converted.repo / converted.name / str(version) / REPORT_JSON).read_text())
    return report
