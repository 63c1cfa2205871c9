"""SavedModel -> TFLite at fp32, fp16 (float16 weights) or int8 (dynamic-range weight quantisation).

Converting from the SavedModel (rather than the Keras object) keeps the
``serving_default`` signature, so the .tflite file carries the same input and output
names and a dynamic batch dimension (``shape_signature`` [-1, ...]).
"""

from __future__ import annotations

from typing import Any

from converters.errors import BadInput


def convert(
    source: str, source_kind: str, output: str, inputs: list[dict[str, Any]], output_names: list[str], precision: str
) -> dict[str, Any]:
    """Step (subprocess): write ``output`` (.tflite) from the SavedModel directory ``source``."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(source, signature_keys=["serving_default"])
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision != "fp32":
        raise BadInput(f"TFLite precision {precision!r}: expected fp32, fp16 or int8")
    with open(output, "wb") as handle:
        handle.write(converter.convert())
    return {"method": f"TFLiteConverter.from_saved_model ({precision})"}
