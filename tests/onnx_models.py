"""Small real ONNX models for tests, written with onnx.helper (no framework needed).

- :func:`write_identity_model`: one Identity per V2 datatype, to round-trip every type.
- :func:`write_slow_model`: repeated large MatMuls, so a request stays in flight long
  enough to observe (drain on SIGTERM, deadlines, queue overflow) without sleeping.
- :func:`write_digits_repo`: the demo digits MLP in a repository directory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from demo.mlp import CONFIG_YAML, build

ONNX_TYPES = {
    "BOOL": TensorProto.BOOL,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}


def _save(model: onnx.ModelProto, path: Path) -> None:
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)


def write_identity_model(path: Path) -> None:
    """Inputs ``in_<TYPE>`` [-1, -1] -> outputs ``out_<TYPE>`` for every V2 datatype."""
    nodes, inputs, outputs = [], [], []
    for name, onnx_type in ONNX_TYPES.items():
        inputs.append(helper.make_tensor_value_info(f"in_{name}", onnx_type, ["b", "n"]))
        outputs.append(helper.make_tensor_value_info(f"out_{name}", onnx_type, ["b", "n"]))
        nodes.append(helper.make_node("Identity", [f"in_{name}"], [f"out_{name}"]))
    graph = helper.make_graph(nodes, "identity", inputs, outputs)
    _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def write_slow_model(path: Path, size: int = 1500, repeats: int = 6) -> None:
    """x FP32 [-1, 1] -> y FP32 [-1, 1]; y = x + 0 * (sum of ``repeats`` size^3 MatMuls).

    Each request costs about ``repeats * 2 * size**3`` flops (seconds on one thread), and
    the answer is still exactly ``x`` so callers can check it.
    """
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [size, size])
    fill = helper.make_tensor("v", TensorProto.FLOAT, [1], [1e-3])
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["c"], value=fill),
        # Scale by an input-dependent scalar so ONNX Runtime cannot constant-fold the chain.
        helper.make_node("ReduceSum", ["x"], ["xs"], keepdims=0),
        helper.make_node("Mul", ["xs", "zero"], ["xz"]),
        helper.make_node("Add", ["xz", "one"], ["k"]),
        helper.make_node("Mul", ["c", "k"], ["m0"]),
    ]
    last = "m0"
    for i in range(repeats):
        nodes.append(helper.make_node("MatMul", [last, "m0"], [f"m{i + 1}"]))
        last = f"m{i + 1}"
    nodes += [
        helper.make_node("ReduceSum", [last], ["s"], keepdims=0),
        helper.make_node("Mul", ["s", "zero"], ["z"]),
        helper.make_node("Add", ["x", "z"], ["y"]),
    ]
    zero = onnx.numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    one = onnx.numpy_helper.from_array(np.array(1.0, np.float32), "one")
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 1])],
        [shape, zero, one],
    )
    _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def write_digits_repo(repo: Path, name: str = "digits_mlp") -> Path:
    """``repo/<name>/{config.yaml,1/model.onnx}`` with the demo MLP; returns the model dir."""
    model_dir = repo / name
    build(model_dir / "1" / "model.onnx")
    (model_dir / "config.yaml").write_text(CONFIG_YAML, encoding="utf-8")
    return model_dir


def write_model(repo: Path, name: str, config: str, writer: str = "identity", version: int = 1) -> Path:
    """A model directory with ``config`` as its config.yaml and a generated artifact."""
    model_dir = repo / name
    target = model_dir / str(version) / "model.onnx"
    {"identity": write_identity_model, "slow": write_slow_model}[writer](target)
    (model_dir / "config.yaml").write_text(config, encoding="utf-8")
    return model_dir
