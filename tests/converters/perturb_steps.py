"""Step (subprocess): change one weight tensor of a published .tflite by 1 %, as tampering or a bad copy would."""

from __future__ import annotations

from typing import Any

import numpy as np

#: TFLite TensorType codes.
FLOAT32, FLOAT16, INT8 = 0, 1, 9


def perturb_tflite(path: str, precision: str) -> dict[str, Any]:
    """Scale the largest weight tensor by 1.01: its values (fp32, fp16) or its quantization scale (int8)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(path)
    buffers = model.buffers
    tensors = [t for t in model.subgraphs[0].tensors if buffers[t.buffer].data is not None]
    wanted = {"fp32": FLOAT32, "fp16": FLOAT16, "int8": INT8}[precision]
    tensor = max((t for t in tensors if t.type == wanted), key=lambda t: len(buffers[t.buffer].data))
    if precision == "int8":
        tensor.quantization.scale = np.asarray(tensor.quantization.scale, dtype=np.float32) * np.float32(1.01)
    else:
        dtype = np.dtype(np.float32 if precision == "fp32" else np.float16)
        values = np.frombuffer(bytes(buffers[tensor.buffer].data), dtype=dtype).astype(np.float64) * 1.01
        buffers[tensor.buffer].data = np.frombuffer(values.astype(dtype).tobytes(), dtype=np.uint8)
    flatbuffer_utils.write_model(model, path)
    return {"tensor": tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)}
