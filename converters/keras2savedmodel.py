"""Keras -> TensorFlow SavedModel with a ``serving_default`` signature named after the model's tensors.

``model.export()`` names the output ``output_0`` and bare ``tf.saved_model.save`` renames
the input ``inputs`` (and leaves resource variables that the TFLite converter turns into
READ_VARIABLE ops yielding NaN). Keras's ``ExportArchive`` with an explicit endpoint keeps
the author's names (``image`` -> ``probs``), a dynamic batch dimension and frozen-friendly
variables, which is what TF Serving and TFLite need.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from converters.sources import load_keras
from converters.spec import from_json
from gateway.core.codec.datatypes import numpy_dtype


def serving_signature(inputs: list[dict[str, Any]]) -> list[Any]:
    """``tf.TensorSpec`` per input, named like the model's inputs, with None for dynamic dims."""
    import tensorflow as tf

    return [
        tf.TensorSpec(
            [None if d == -1 else d for d in s.shape], tf.dtypes.as_dtype(numpy_dtype(s.datatype)), name=s.name
        )
        for s in from_json(inputs)
    ]


def serving_callable(model: Any, output_names: list[str]) -> Callable[..., dict[str, Any]]:
    """The inference function: positional inputs in spec order -> ``{output name: tensor}``."""

    def serve(*args: Any) -> dict[str, Any]:
        result = model(list(args) if len(args) > 1 else args[0], training=False)
        values = result if isinstance(result, list | tuple) else [result]
        return dict(zip(output_names, values, strict=True))

    return serve


def convert(
    source: str, source_kind: str, output: str, inputs: list[dict[str, Any]], output_names: list[str], precision: str
) -> dict[str, Any]:
    """Step (subprocess): write the SavedModel directory ``output``."""
    import keras

    model = load_keras(Path(source))
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serving_callable(model, output_names), serving_signature(inputs))
    archive.write_out(output, verbose=False)
    return {"method": "keras.export.ExportArchive with a named serving_default endpoint"}
