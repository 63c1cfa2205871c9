"""ONNX -> TensorFlow SavedModel through onnx2tf (the path for PyTorch models to TF and TFLite).

onnx2tf is installed with ``pip install --no-deps --target .venv/onnx2tf`` because its
pins (tensorflow 2.19, numpy 1.26, ...) would wreck the TF 2.21 stack; the step runs in a
subprocess with that folder on ``PYTHONPATH``. onnx2tf overwrites its input file, so it
converts a copy. Inputs stay NCHW (as the PyTorch source takes them) instead of onnx2tf's
default NHWC (onnx2tf's option only takes 3-D to 5-D inputs, so 2-D ones are left out of it), and
the signature is re-saved with the source's output names (onnx2tf
names them ``output_0``...).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from converters.errors import BadInput


def kept_layout_inputs(inputs: list[dict[str, Any]]) -> list[str]:
    """Inputs whose layout onnx2tf must keep: every 3-D to 5-D input (the only ranks its option accepts).

    2-D inputs ([batch, features]) have no layout to change; onnx2tf rejects them in that list.
    """
    return [i["name"] for i in inputs if 3 <= len(i["shape"]) <= 5]


def convert(
    source: str, source_kind: str, output: str, inputs: list[dict[str, Any]], output_names: list[str], precision: str
) -> dict[str, Any]:
    """Step (subprocess): write the SavedModel directory ``output`` from the ONNX file ``source``."""
    try:
        import onnx2tf
    except ImportError:
        raise BadInput(
            "onnx2tf is not installed: run `make install` (it installs onnx2tf into .venv/onnx2tf) "
            "or set MODELGATE_ONNX2TF_PATH to its folder"
        ) from None
    with tempfile.TemporaryDirectory(prefix="onnx2tf-") as scratch:
        copy = Path(scratch) / "model.onnx"
        shutil.copyfile(source, copy)
        converted = Path(scratch) / "saved_model"
        onnx2tf.convert(
            input_onnx_file_path=str(copy),
            output_folder_path=str(converted),
            output_signaturedefs=True,
            non_verbose=True,
            keep_ncw_or_nchw_or_ncdhw_input_names=kept_layout_inputs(inputs) or None,
        )
        _rename_outputs(converted, Path(output), output_names)
    return {"method": "onnx2tf.convert (NCHW inputs kept) + signature re-saved with the source's names"}


def _rename_outputs(converted: Path, output: Path, output_names: list[str]) -> None:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(converted))
    signature = loaded.signatures["serving_default"]
    _, input_specs = signature.structured_input_signature
    produced = sorted(signature.structured_outputs, key=lambda k: int(k.rsplit("_", 1)[-1]) if k[-1].isdigit() else 0)
    names = dict(zip(produced, output_names, strict=True))

    def serve(*args: Any) -> dict[str, Any]:
        result = signature(**dict(zip(sorted(input_specs), args, strict=True)))
        return {names[k]: result[k] for k in produced}

    function = tf.function(serve, input_signature=[input_specs[k] for k in sorted(input_specs)])
    tf.saved_model.save(loaded, str(output), signatures={"serving_default": function.get_concrete_function()})
