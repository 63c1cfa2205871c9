"""Versions of the demo digits MLP that go wrong in production, built with onnx.helper.

Each variant rewires the MLP's output ``probs`` through extra nodes:

- ``same``: an exact copy (a good new version).
- ``wrong``: the ten class probabilities in reverse order (answers that differ; no error).
- ``errors``: fails at run time whenever a pixel is above 1.0 (a Reshape to an impossible
  shape); the warm-up's generated inputs are in [0, 1), so it loads and warms up fine and
  then fails on real digits, whose pixels go up to 16.
- ``slow``: the same answers after ``repeats`` chained size x size MatMuls (hundreds of
  times the MLP's cost on any machine).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RAW = "probs_raw"


def write_variant(source: Path, target: Path, kind: str, size: int = 500, repeats: int = 4) -> None:
    """Write ``kind`` of the MLP at ``source`` (a model.onnx) to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if kind == "same":
        shutil.copyfile(source, target)
        return
    model = onnx.load(str(source))
    graph = model.graph
    for node in graph.node:
        node.output[:] = [RAW if o == "probs" else o for o in node.output]
    {"wrong": _wrong, "errors": _errors, "slow": _slow}[kind](graph, size, repeats)
    onnx.checker.check_model(model)
    onnx.save(model, str(target))


def _wrong(graph: onnx.GraphProto, size: int, repeats: int) -> None:
    graph.initializer.append(numpy_helper.from_array(np.arange(9, -1, -1, dtype=np.int64), "reverse"))
    graph.node.append(helper.make_node("Gather", [RAW, "reverse"], ["probs"], axis=1))


def _errors(graph: onnx.GraphProto, size: int, repeats: int) -> None:
    graph.initializer.extend([
        numpy_helper.from_array(np.array(1.0, np.float32), "one_f"),
        numpy_helper.from_array(np.array([-1, 10], np.int64), "good_shape"),
        numpy_helper.from_array(np.array([-1, 7], np.int64), "step"),
    ])  # fmt: skip
    graph.node.extend([
        helper.make_node("ReduceMax", ["pixels"], ["pmax"], keepdims=0),
        helper.make_node("Greater", ["pmax", "one_f"], ["big"]),
        helper.make_node("Cast", ["big"], ["big_i"], to=TensorProto.INT64),
        # shape = [-1, 10] + big * [0, -3]: [-1, 10] for small pixels, [-1, 7] (impossible) otherwise.
        helper.make_node("Sub", ["step", "good_shape"], ["delta"]),
        helper.make_node("Mul", ["delta", "big_i"], ["delta_on"]),
        helper.make_node("Add", ["good_shape", "delta_on"], ["shape"]),
        helper.make_node("Reshape", [RAW, "shape"], ["probs"]),
    ])  # fmt: skip


def _slow(graph: onnx.GraphProto, size: int, repeats: int) -> None:
    graph.initializer.extend([
        helper.make_tensor("mat_shape", TensorProto.INT64, [2], [size, size]),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero_f"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one_f"),
    ])  # fmt: skip
    nodes = [
        helper.make_node(
            "ConstantOfShape", ["mat_shape"], ["c"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1e-3])
        ),
        # Depend on the input so ONNX Runtime cannot fold the chain into a constant.
        helper.make_node("ReduceSum", ["pixels"], ["ps"], keepdims=0),
        helper.make_node("Mul", ["ps", "zero_f"], ["pz"]),
        helper.make_node("Add", ["pz", "one_f"], ["k"]),
        helper.make_node("Mul", ["c", "k"], ["m0"]),
    ]
    last = "m0"
    for i in range(repeats):
        nodes.append(helper.make_node("MatMul", [last, "m0"], [f"m{i + 1}"]))
        last = f"m{i + 1}"
    nodes += [
        helper.make_node("ReduceSum", [last], ["s"], keepdims=0),
        helper.make_node("Mul", ["s", "zero_f"], ["z"]),
        helper.make_node("Add", [RAW, "z"], ["probs"]),
    ]
    graph.node.extend(nodes)


def add_variant(repo: Path, version: int, kind: str, model: str = "digits_mlp", source_version: int = 1,
                size: int = 500) -> Path:  # fmt: skip
    """``repo/<model>/<version>/model.onnx`` as ``kind`` of version ``source_version``; returns the folder."""
    folder = repo / model / str(version)
    write_variant(repo / model / str(source_version) / "model.onnx", folder / "model.onnx", kind, size=size)
    return folder
