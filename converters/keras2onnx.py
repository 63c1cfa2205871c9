"""Keras -> ONNX through ``tf2onnx.convert.from_function`` (opset 17, dynamic batch).

``tf2onnx.convert.from_keras`` is broken with Keras 3 (``KeyError: 'keras_tensor_N'``);
tracing a ``tf.function`` around the model works and gives the same graph as Keras 3's
own ``model.export(format="onnx")``, which calls tf2onnx the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from converters.keras2savedmodel import serving_callable, serving_signature
from converters.onnx_names import rename_io
from converters.sources import load_keras

OPSET = 17


def convert(
    source: str, source_kind: str, output: str, inputs: list[dict[str, Any]], output_names: list[str], precision: str
) -> dict[str, Any]:
    """Step (subprocess): write ``output`` (.onnx) with inputs and outputs named like the Keras model's."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    model = load_keras(Path(source))
    signature = serving_signature(inputs)
    function = tf.function(serving_callable(model, output_names), input_signature=signature)
    proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=OPSET)
    rename_io(proto, [i["name"] for i in inputs], output_names)
    onnx.checker.check_model(proto)
    onnx.save(proto, output)
    return {"method": f"tf2onnx.convert.from_function, opset {OPSET}"}
