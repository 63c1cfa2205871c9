"""Train a small MLP on scikit-learn's digits with numpy alone and write it as ONNX.

This is the gateway's lightest real model: it needs neither TensorFlow nor torch, builds
in about a second and is what the core and protocol tests serve. Input ``pixels``
(FP32, [-1, 64], raw 0..16 values as ``load_digits`` gives them), output ``probs``
(FP32, [-1, 10], softmax). Run as a module to publish it into a repository::

    python -m demo.mlp --model-repository model_repo
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from demo.digits import load_digits_split

MODEL_NAME = "digits_mlp"
HIDDEN = 32


@dataclass(frozen=True)
class Mlp:
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Reference forward pass in numpy (the ONNX graph computes the same)."""
        hidden = np.maximum((pixels / 16.0) @ self.w1 + self.b1, 0.0)
        logits = hidden @ self.w2 + self.b2
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs: np.ndarray = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
        return probs


def train(x: np.ndarray, y: np.ndarray, seed: int = 0, epochs: int = 40) -> Mlp:
    """Minibatch SGD with momentum on cross-entropy; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, np.sqrt(2 / 64), (64, HIDDEN)).astype(np.float32)
    b1 = np.zeros(HIDDEN, np.float32)
    w2 = rng.normal(0, np.sqrt(2 / HIDDEN), (HIDDEN, 10)).astype(np.float32)
    b2 = np.zeros(10, np.float32)
    params = [w1, b1, w2, b2]
    velocity = [np.zeros_like(p) for p in params]
    onehot = np.eye(10, dtype=np.float32)[y]
    for _ in range(epochs):
        for batch in np.array_split(rng.permutation(len(x)), max(1, len(x) // 32)):
            xb = x[batch] / 16.0
            hidden = np.maximum(xb @ w1 + b1, 0.0)
            logits = hidden @ w2 + b2
            exp = np.exp(logits - logits.max(axis=1, keepdims=True))
            grad_logits = (exp / exp.sum(axis=1, keepdims=True) - onehot[batch]) / len(batch)
            grad_hidden = (grad_logits @ w2.T) * (hidden > 0)
            grads = [xb.T @ grad_hidden, grad_hidden.sum(0), hidden.T @ grad_logits, grad_logits.sum(0)]
            for p, v, g in zip(params, velocity, grads, strict=True):
                v *= 0.9
                v -= 0.1 * g
                p += v
    return Mlp(w1, b1, w2, b2)


def to_onnx(mlp: Mlp) -> onnx.ModelProto:
    """The MLP as an ONNX graph with a dynamic batch dimension (opset 17)."""
    inits = [
        numpy_helper.from_array(np.array(1 / 16, np.float32), "scale"),
        numpy_helper.from_array(mlp.w1, "w1"),
        numpy_helper.from_array(mlp.b1, "b1"),
        numpy_helper.from_array(mlp.w2, "w2"),
        numpy_helper.from_array(mlp.b2, "b2"),
    ]
    nodes = [
        helper.make_node("Mul", ["pixels", "scale"], ["scaled"]),
        helper.make_node("Gemm", ["scaled", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("Gemm", ["hr", "w2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "digits_mlp",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="modelgate")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


CONFIG_YAML = """\
# Built by `python -m demo.mlp`: a numpy-trained MLP on scikit-learn's digits.
backend: onnxruntime
max_batch_size: 1024
inputs:
  - {name: pixels, datatype: FP32, shape: [-1, 64]}
outputs:
  - {name: probs, datatype: FP32, shape: [-1, 10]}
version_policy: {latest: 1}
# Concurrent requests share one ONNX Runtime call (no added delay): see docs/model-repository.md.
dynamic_batching: {max_delay_ms: 0, concurrency: 2}
parameters:
  intra_op_threads: 1
  concurrency: 2
"""


def build(path: Path, seed: int = 0) -> float:
    """Train and write ``path`` (an .onnx file); returns held-out accuracy."""
    x_train, y_train, x_test, y_test = load_digits_split(seed)
    mlp = train(x_train, y_train, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(to_onnx(mlp), path)
    return float((mlp.predict(x_test).argmax(1) == y_test).mean())


def publish_if_missing(repository: Path) -> Path | None:
    """Create ``<repository>/digits_mlp`` (config + version 1) unless it exists."""
    model_dir = repository / MODEL_NAME
    if (model_dir / "1" / "model.onnx").exists():
        return None
    model_dir.mkdir(parents=True, exist_ok=True)
    accuracy = build(model_dir / "1" / "model.onnx")
    (model_dir / "config.yaml").write_text(CONFIG_YAML, encoding="utf-8")
    print(f"built {model_dir}/1/model.onnx (held-out accuracy {accuracy:.3f})")
    return model_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, default=Path("model_repo"))
    args = parser.parse_args(argv)
    publish_if_missing(args.model_repository)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
