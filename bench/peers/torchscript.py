"""The TorchScript version of the demo digits MLP, built from the ONNX model's own weights (same function).

The ONNX graph is ``softmax(relu((pixels * scale) @ w1 + b1) @ w2 + b2)``; this reads its
initializers and traces the same network with torch, then checks both answer alike.
Run (a subprocess of the benchmark, so the runner never imports torch):
``python -m bench.peers.torchscript model.onnx model.pt``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def build(onnx_path: Path, out: Path) -> float:
    """Write the TorchScript model; returns its max difference from ONNX Runtime on 32 inputs."""
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    ops = [node.op_type for node in graph.node]
    if ops != ["Mul", "Gemm", "Relu", "Gemm", "Softmax"] or any(n.attribute for n in graph.node[:4]):
        raise SystemExit(f"{onnx_path}: not the demo MLP graph ({ops})")
    w = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
    mul, gemm1, gemm2 = graph.node[0], graph.node[1], graph.node[3]
    scale, w1, b1, w2, b2 = (w[name] for name in (mul.input[1], *gemm1.input[1:], *gemm2.input[1:]))
    hidden, output = torch.nn.Linear(w1.shape[0], w1.shape[1]), torch.nn.Linear(w2.shape[0], w2.shape[1])
    with torch.no_grad():
        hidden.weight.copy_(w1.T * scale)  # the input scaling folded into the first layer
        hidden.bias.copy_(b1)
        output.weight.copy_(w2.T)
        output.bias.copy_(b2)
    net = torch.nn.Sequential(hidden, torch.nn.ReLU(), output, torch.nn.Softmax(1)).eval()
    traced = torch.jit.trace(net, torch.zeros(2, w1.shape[0]))  # type: ignore[no-untyped-call]
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(traced, str(out))
    x = np.random.default_rng(0).uniform(0, 16, (32, w1.shape[0])).astype(np.float32)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {session.get_inputs()[0].name: x})
    with torch.inference_mode():
        got = torch.jit.load(str(out))(torch.from_numpy(x)).numpy()  # type: ignore[no-untyped-call]
    return float(np.abs(got - expected).max())


def main() -> int:
    diff = build(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"max difference from ONNX Runtime: {diff:.1e}")
    return 0 if diff < 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
