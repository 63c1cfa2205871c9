"""Run an artifact in its own runtime: ONNX Runtime, TensorFlow, LiteRT or torch.

Each format has a small runner that loads the artifact, reports the signature the
artifact itself declares (the names a server will see) and maps named numpy inputs to
named numpy outputs. :func:`run` is the verification step: it executes in a subprocess,
runs batch 1, 32 and N, and profiles load time, latency percentiles and peak memory. All runtimes use one thread
so their latencies compare fairly.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from converters.profile import exclusive, latency_samples, latency_stats, peak_rss_bytes, timed
from gateway.core.codec.datatypes import v2_datatype

BATCHES = (1, 32)


class Runner(Protocol):
    """A loaded artifact."""

    def signature(self) -> dict[str, list[dict[str, Any]]]:
        """``{"inputs": [...], "outputs": [...]}`` as the artifact declares them (-1 = dynamic)."""
        ...

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs by name for named inputs."""
        ...


def _tensor(name: str, dtype: Any, shape: Any) -> dict[str, Any]:
    dims = [-1 if d is None or isinstance(d, str) or d < 0 else int(d) for d in shape]
    return {"name": name, "datatype": v2_datatype(np.dtype(dtype)), "shape": dims}


class OnnxRunner:
    """ONNX Runtime, CPU provider, one intra-op thread."""

    _ORT_TYPES: ClassVar[dict[str, str]] = {
        "tensor(float)": "float32",
        "tensor(float16)": "float16",
        "tensor(double)": "float64",
        "tensor(int64)": "int64",
        "tensor(int32)": "int32",
        "tensor(uint8)": "uint8",
        "tensor(int8)": "int8",
        "tensor(bool)": "bool",
    }

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]

    def signature(self) -> dict[str, list[dict[str, Any]]]:
        def describe(values: Any) -> list[dict[str, Any]]:
            return [_tensor(v.name, self._ORT_TYPES.get(v.type, "float32"), v.shape) for v in values]

        return {"inputs": describe(self.session.get_inputs()), "outputs": describe(self.session.get_outputs())}

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.outputs, self.session.run(self.outputs, feeds), strict=True))


class TFLiteRunner:
    """LiteRT (ai-edge-litert), through the ``serving_default`` signature runner so names match the SavedModel."""

    def __init__(self, path: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=1)
        self.runner = self.interpreter.get_signature_runner("serving_default")

    def signature(self) -> dict[str, list[dict[str, Any]]]:
        def describe(details: dict[str, Any]) -> list[dict[str, Any]]:
            return [_tensor(n, d["dtype"], d["shape_signature"]) for n, d in details.items()]

        return {
            "inputs": describe(self.runner.get_input_details()),
            "outputs": describe(self.runner.get_output_details()),
        }

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.array(v) for k, v in self.runner(**feeds).items()}

    def tensor_dtypes(self) -> dict[str, int]:
        """How many tensors of each dtype the file holds (int8 / float16 ones are quantized weights)."""
        counts: dict[str, int] = {}
        for detail in self.interpreter.get_tensor_details():
            name = np.dtype(detail["dtype"]).name
            counts[name] = counts.get(name, 0) + 1
        return counts


class SavedModelRunner:
    """TensorFlow ``tf.saved_model.load`` + the ``serving_default`` signature."""

    def __init__(self, path: Path) -> None:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        self.model = tf.saved_model.load(str(path))
        self.function = self.model.signatures["serving_default"]

    def signature(self) -> dict[str, list[dict[str, Any]]]:
        _, inputs = self.function.structured_input_signature
        outputs = self.function.structured_outputs
        return {
            "inputs": [_tensor(k, v.dtype.as_numpy_dtype, v.shape.as_list()) for k, v in sorted(inputs.items())],
            "outputs": [_tensor(k, v.dtype.as_numpy_dtype, v.shape.as_list()) for k, v in outputs.items()],
        }

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in self.function(**feeds).items()}


class TorchRunner:
    """TorchScript (``torch.jit.load``) or torch.export (``ExportedProgram.module()``), one thread."""

    def __init__(self, path: Path, input_names: list[str], output_names: list[str], exported: bool) -> None:
        import torch

        from converters.sources import load_torch

        torch.set_num_threads(1)
        self.torch = torch
        self.module = load_torch(path, "torch_export" if exported else "torchscript")
        self.input_names = input_names
        self.output_names = output_names

    def signature(self) -> dict[str, list[dict[str, Any]]]:
        # TorchScript and .pt2 carry no output names; the caller fills both lists from the source.
        return {"inputs": [], "outputs": []}

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self.torch.no_grad():
            result = self.module(*(self.torch.from_numpy(feeds[n]) for n in self.input_names))
        if isinstance(result, dict):
            values = list(result.values())
        else:
            values = list(result) if isinstance(result, list | tuple) else [result]
        return {n: v.numpy() for n, v in zip(self.output_names, values, strict=True)}


def import_runtime(fmt: str) -> None:
    """Import the format's framework first, so load time measures the artifact, not the import."""
    module = {"onnx": "onnxruntime", "tflite": "ai_edge_litert.interpreter", "savedmodel": "tensorflow"}.get(
        fmt, "torch"
    )
    importlib.import_module(module)


def open_runner(fmt: str, path: Path, input_names: list[str], output_names: list[str]) -> Runner:
    """The runner for an artifact format."""
    if fmt == "onnx":
        return OnnxRunner(path)
    if fmt == "tflite":
        return TFLiteRunner(path)
    if fmt == "savedmodel":
        return SavedModelRunner(path)
    return TorchRunner(path, input_names, output_names, exported=fmt == "pt2")


def run(
    fmt: str, artifact: str, inputs: str, output_names: list[str], output: str, lock: str, max_batch: int | None = None
) -> dict[str, Any]:
    """Step (subprocess): run ``artifact`` on batch 1, 32 and N of ``inputs`` (.npz); profile it.

    Outputs go to ``output`` (.npz, keys ``<batch>/<output name>``); the return value has
    the artifact's signature, load time, latency percentiles at batch 1 and 32 and peak
    memory, timed while holding ``lock`` so that concurrent verification steps do not skew
    each other. An artifact pinned to ``max_batch`` runs in chunks of that size (batch N is
    all samples, ``max_batch`` at a time) and is timed only at batches it accepts.
    """
    feeds = dict(np.load(inputs))
    names = list(feeds)
    import_runtime(fmt)
    runner, load_s = timed(lambda: open_runner(fmt, Path(artifact), names, output_names))
    total = len(next(iter(feeds.values())))
    batches = sorted({min(b, total) for b in BATCHES if max_batch is None or b <= max_batch} | {total})
    results: dict[str, Any] = {}
    for batch in batches:
        produced = _chunked(runner, {k: v[:batch] for k, v in feeds.items()}, max_batch or batch)
        results.update({f"{batch}/{k}": v for k, v in produced.items()})
    np.savez(output, **results)
    timed_batches = [b for b in BATCHES if max_batch is None or b <= max_batch]
    with exclusive(Path(lock)):
        latency = {str(b): _latency(runner, feeds, b) for b in timed_batches}
    dtypes = runner.tensor_dtypes() if isinstance(runner, TFLiteRunner) else None
    return {
        "signature": runner.signature(),
        "load_s": load_s,
        "batches": batches,
        "tensor_dtypes": dtypes,
        "latency": latency,
        **{f"latency_b{b}_s": latency[str(b)]["p50_s"] if str(b) in latency else None for b in BATCHES},
        "peak_rss_bytes": peak_rss_bytes(),
    }


def _chunked(runner: Runner, feeds: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """The runner's outputs on ``feeds``, computed ``size`` rows at a time and concatenated."""
    total = len(next(iter(feeds.values())))
    parts = [runner({k: v[start : start + size] for k, v in feeds.items()}) for start in range(0, total, size)]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _latency(runner: Runner, feeds: dict[str, np.ndarray], batch: int) -> dict[str, float]:
    batch_feeds = {k: _rows(v, batch) for k, v in feeds.items()}
    return latency_stats(latency_samples(lambda: runner(batch_feeds)), batch)


def _rows(array: np.ndarray, count: int) -> np.ndarray:
    """``count`` rows, repeating the data if there are fewer (latency of batch 32 on a small set)."""
    if len(array) >= count:
        return array[:count]
    return np.resize(array, (count, *array.shape[1:]))
