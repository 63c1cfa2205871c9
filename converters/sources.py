"""Source models: recognise the file, load it, and describe its inputs and outputs.

The kind comes from the file's content (a Keras zip or HDF5 file, a TorchScript zip, a
torch.export archive), with the extension only as a hint, so a renamed file still works
and a corrupt one fails early with a clear message. Loading happens only in step
subprocesses; this module imports no framework at import time.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import BadInput
from converters.safety import check_model_file, is_pickle
from converters.spec import check_inputs, from_json, generate_inputs, to_json
from gateway.core.codec.datatypes import v2_datatype
from gateway.core.types import TensorSpec

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
KINDS = ("keras", "torchscript", "torch_export")
#: Inputs generated when the user passes no validation set (batch N of the verification).
GENERATED_COUNT = 64


def detect_kind(path: Path) -> str:
    """``keras``, ``torchscript`` or ``torch_export``, or :class:`BadInput` explaining what is wrong."""
    if not path.exists():
        raise BadInput(f"model file {path} does not exist")
    if path.is_dir():
        raise BadInput(f"{path} is a directory; pass a .keras, .h5, .pt (TorchScript) or .pt2 (torch.export) file")
    with path.open("rb") as handle:
        head = handle.read(8)
    if head == HDF5_MAGIC:
        return "keras"
    if is_pickle(head):
        check_model_file(path, "torch")  # refuses every bare pickle, with the reason
    if not zipfile.is_zipfile(path):
        raise BadInput(
            f"{path} is not a Keras (.keras/.h5), TorchScript (.pt) or torch.export (.pt2) file "
            "(it is not a zip or HDF5 archive: corrupt or truncated?)"
        )
    return _zip_kind(path)


def detect_and_check(path: Path) -> str:
    """:func:`detect_kind`, then the safety rule (:func:`converters.safety.check_model_file`)."""
    kind = detect_kind(path)
    check_model_file(path, kind)
    return kind


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadInput(f"{path}: cannot read the archive ({exc}); is the file complete?") from None
    if "config.json" in names and any(n.endswith(".weights.h5") for n in names):
        return "keras"
    if any("/code/" in n for n in names):
        return "torchscript"
    if any(n.endswith("models/model.json") or n.endswith("archive_format") for n in names):
        return "torch_export"
    if any(n.endswith("data.pkl") for n in names):
        raise BadInput(
            f"{path} is refused: it is a torch.save checkpoint (pickled weights; loading a pickle can run code), "
            "not a model graph: load it into your nn.Module "
            "and use converters.api.convert_torch_module, or save it with torch.jit.save / torch.export.save"
        )
    raise BadInput(f"{path}: a zip archive that is neither a Keras, TorchScript nor torch.export model")


def load_keras(path: Path) -> Any:
    """The Keras model in ``path`` (.keras or legacy .h5), without its training config.

    The safety rule runs first, and Keras's own ``safe_mode`` stays on.
    """
    check_model_file(path, "keras")
    import keras

    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        raise BadInput(
            f"cannot load the Keras model {path}: {_first_line(exc)}. Custom layers must be importable and "
            "registered with @keras.saving.register_keras_serializable(); use built-in layers otherwise"
        ) from None


def load_exported_program(path: Path) -> Any:
    """``torch.export.load`` of a .pt2, after the safety rule (the only way this package loads one)."""
    check_model_file(path, "torch_export")
    import torch

    return torch.export.load(str(path))


def load_torch(path: Path, kind: str) -> Any:
    """A callable torch module: a ScriptModule for TorchScript, ``ExportedProgram.module()`` for .pt2.

    The safety rule runs first: no pickle in the archive may reference anything but tensors.
    """
    check_model_file(path, kind)
    import torch

    try:
        if kind == "torchscript":
            return torch.jit.load(str(path), map_location="cpu").eval()  # type: ignore[no-untyped-call]
        return load_exported_program(path).module()
    except Exception as exc:
        raise BadInput(f"cannot load the {kind} model {path}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    """The informative line of an error: TorchScript wraps the real one at the end of a traceback."""
    text = str(exc).strip()
    marker = "RuntimeError: "
    if marker in text:
        return marker + text.rsplit(marker, 1)[1].strip().splitlines()[0]
    lines = text.splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def keras_input_specs(model: Any) -> list[TensorSpec]:
    """Names, datatypes and shapes (None -> -1) of a Keras model's inputs."""
    specs = []
    for tensor in model.inputs:
        shape = tuple(-1 if d is None else int(d) for d in tensor.shape)
        specs.append(TensorSpec(str(tensor.name), v2_datatype(np.dtype(str(tensor.dtype))), shape))
    return specs


def keras_output_names(model: Any) -> list[str]:
    """The output layers' names: clear names like ``probs`` when the model author chose them."""
    names = getattr(model, "output_names", None)
    if names:
        return [str(n) for n in names]
    return [str(model.layers[-1].name)]


def torch_input_specs(path: Path, kind: str) -> list[TensorSpec] | None:
    """Inputs recorded in a .pt2 (symbolic dims -> -1); None for TorchScript, which stores no shapes."""
    if kind != "torch_export":
        return None
    program = load_exported_program(path)
    user_inputs = set(program.graph_signature.user_inputs)
    specs = []
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            value = node.meta["val"]
            shape = tuple(d if isinstance(d, int) else -1 for d in value.shape)
            dtype = np.dtype(str(value.dtype).removeprefix("torch."))
            specs.append(TensorSpec(node.name, v2_datatype(dtype), shape))
    return specs


def torchscript_input_names(module: Any) -> list[str]:
    """Argument names of a ScriptModule's forward (without ``self``)."""
    return [a.name for a in module.forward.schema.arguments[1:]]


def reconcile_specs(found: list[TensorSpec] | None, given: list[TensorSpec] | None, where: str) -> list[TensorSpec]:
    """The user's --input-spec checked against what the model says, or the model's own."""
    if given is None:
        if found is None:
            raise BadInput(f"{where} records no input shapes: pass --input-spec NAME:DATATYPE:DIMS for each input")
        return found
    if found is None:
        return given
    if [s.name for s in found] != [s.name for s in given]:
        raise BadInput(
            f"--input-spec names {[s.name for s in given]} do not match the model's inputs {[s.name for s in found]}"
        )
    for model_spec, user_spec in zip(found, given, strict=True):
        compatible = len(model_spec.shape) == len(user_spec.shape) and all(
            m in (-1, u) for m, u in zip(model_spec.shape, user_spec.shape, strict=True)
        )
        if not compatible or model_spec.datatype != user_spec.datatype:
            raise BadInput(
                f"--input-spec {user_spec.name}: {user_spec.datatype} {list(user_spec.shape)} does not fit the model's "
                f"{model_spec.datatype} {list(model_spec.shape)}"
            )
    return given


def load_samples(path: Path, specs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """A validation set: an .npy (single-input models) or an .npz keyed by input name; floats cast to the spec."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BadInput(f"--samples {path}: cannot read it as .npy/.npz ({exc})") from None
    if isinstance(loaded, np.ndarray):
        if len(specs) != 1:
            raise BadInput(f"--samples {path}: the model has {len(specs)} inputs; pass an .npz keyed by input name")
        arrays = {specs[0].name: loaded}
    else:
        arrays = {k: loaded[k] for k in loaded.files}
    arrays = {k: _cast_float(v, specs) if k in {s.name for s in specs} else v for k, v in arrays.items()}
    check_inputs(specs, arrays)
    return arrays


def _cast_float(array: np.ndarray, specs: list[TensorSpec]) -> np.ndarray:
    target = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64}
    wanted = [target[s.datatype] for s in specs if s.datatype in target]
    if array.dtype.kind == "f" and len(specs) == 1 and wanted:
        return array.astype(wanted[0])
    return array


def load_labels(path: Path, count: int) -> np.ndarray:
    """Integer class labels, one per sample."""
    try:
        labels = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BadInput(f"--labels {path}: cannot read it as .npy ({exc})") from None
    if not isinstance(labels, np.ndarray) or labels.ndim != 1 or labels.shape[0] != count:
        raise BadInput(f"--labels {path}: expected a 1-D array of {count} class indices (one per sample)")
    if labels.dtype.kind not in "iu":
        raise BadInput(f"--labels {path}: expected integer class indices, got {labels.dtype}")
    return labels.astype(np.int64)


def inspect(
    source: str,
    kind: str,
    input_spec: list[dict[str, Any]] | None,
    output_names: list[str] | None,
    samples: str | None,
    workdir: str,
) -> dict[str, Any]:
    """Step (subprocess): resolve the signature, the validation inputs and the source's reference outputs.

    Writes ``inputs.npz`` and ``reference.npz`` into ``workdir``.
    """
    path = Path(source)
    given = from_json(input_spec) if input_spec else None
    if kind == "keras":
        model = load_keras(path)
        specs = reconcile_specs(keras_input_specs(model), given, str(path))
        default_names = keras_output_names(model)
    else:
        model = load_torch(path, kind)
        found = torch_input_specs(path, kind)
        if found is None and given is not None and len(given) != len(torchscript_input_names(model)):
            raise BadInput(f"--input-spec: the TorchScript model takes inputs {torchscript_input_names(model)}")
        specs = reconcile_specs(found, given, f"{path} (TorchScript)")
        default_names = []
    inputs = load_samples(Path(samples), specs) if samples else generate_inputs(specs, GENERATED_COUNT)
    keys, outputs = run_source(model, kind, specs, inputs)
    names = output_names or default_names or keys or [f"output_{i}" for i in range(len(outputs))]
    if len(names) != len(outputs):
        raise BadInput(f"--output-names: the model has {len(outputs)} output(s), {len(names)} name(s) were given")
    ordered: dict[str, Any] = {s.name: inputs[s.name] for s in specs}
    reference: dict[str, Any] = dict(zip(names, outputs, strict=True))
    np.savez(Path(workdir) / "inputs.npz", **ordered)
    np.savez(Path(workdir) / "reference.npz", **reference)
    out_specs = [TensorSpec(n, v2_datatype(o.dtype), (-1, *o.shape[1:])) for n, o in zip(names, outputs, strict=True)]
    return {
        "inputs": to_json(specs),
        "outputs": to_json(out_specs),
        "count": len(next(iter(inputs.values()))),
        "recurrent": recurrent_ops(model, kind),
    }


#: Recurrent layers: onnx2tf cannot convert them, and a trace fixes their batch size.
RECURRENT_OPS = ("lstm", "gru", "rnn_tanh", "rnn_relu")


#: Keras recurrent layer classes (lower-cased), nested models and wrappers (Bidirectional) included.
KERAS_RECURRENT_LAYERS = ("lstm", "gru", "simplernn", "rnn", "convlstm1d", "convlstm2d", "convlstm3d")


def _keras_layers(layer: Any, seen: set[int] | None = None) -> list[Any]:
    """Every layer inside a Keras model or layer: nested models, and wrapped layers (Bidirectional)."""
    seen = set() if seen is None else seen
    if id(layer) in seen:
        return []
    seen.add(id(layer))
    found = [layer]
    for child in [*getattr(layer, "layers", []), *(getattr(layer, n, None) for n in ("forward_layer", "layer"))]:
        if child is not None:
            found.extend(_keras_layers(child, seen))
    return found


def recurrent_ops(model: Any, kind: str) -> list[str]:
    """The recurrent layers (LSTM, GRU, RNN) in a Keras model or ops in a PyTorch model's graph."""
    if kind == "keras":
        names = {type(layer).__name__.lower() for layer in _keras_layers(model)}
        return [name for name in KERAS_RECURRENT_LAYERS if name in names]
    text = str(model.graph) if kind == "torch_export" else str(model.inlined_graph)
    return [op for op in RECURRENT_OPS if f"aten.{op}" in text or f"aten::{op}" in text]


def _flatten(result: Any) -> tuple[list[str], list[Any]]:
    """Output names (dict keys, else none) and values of a model's result: a tensor, tuple, list or dict."""
    if isinstance(result, dict):
        return [str(k) for k in result], list(result.values())
    if isinstance(result, list | tuple):
        return [], list(result)
    return [], [result]


def run_source(
    model: Any, kind: str, specs: list[TensorSpec], inputs: dict[str, np.ndarray]
) -> tuple[list[str], list[np.ndarray]]:
    """The source model's output names (when it returns a dict) and outputs on ``inputs`` (the reference)."""
    ordered = [inputs[s.name] for s in specs]
    try:
        if kind == "keras":
            result = model(ordered if len(ordered) > 1 else ordered[0], training=False)
            keys, values = _flatten(result)
            return keys, [np.asarray(v) for v in values]
        import torch

        with torch.no_grad():
            result = model(*(torch.from_numpy(a) for a in ordered))
    except Exception as exc:
        shapes = {s.name: list(inputs[s.name].shape) for s in specs}
        raise BadInput(
            f"the source model fails on inputs {shapes}: {_first_line(exc)}; check --input-spec / --samples"
        ) from None
    keys, values = _flatten(result)
    if not all(isinstance(v, torch.Tensor) for v in values):
        kinds = sorted({type(v).__name__ for v in values})
        raise BadInput(f"the model returns {kinds}: outputs must be tensors (one, a tuple, a list or a dict of them)")
    return keys, [v.detach().numpy() for v in values]
