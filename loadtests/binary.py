"""The V2 binary tensor extension (Triton's spec), client side: encode a request, decode a response.

A binary request body is a JSON header followed by raw little-endian tensor bytes; the
``Inference-Header-Content-Length`` header gives the JSON's length. Inputs carry
``parameters.binary_data_size``; requested outputs ask for ``parameters.binary_data: true`` and come
back the same way, in the order the header lists them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from loadtests.answers import WrongAnswer, find_output, parse_json, v2_output_array
from loadtests.payloads import Batch

HEADER_LENGTH = "Inference-Header-Content-Length"


def encode_request(batch: Batch, input_name: str, output_name: str) -> tuple[bytes, int]:
    """The body (JSON header + raw FP32 pixels) and the JSON header's length."""
    raw = np.ascontiguousarray(batch.pixels, dtype="<f4").tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": input_name,
                    "shape": list(batch.pixels.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": output_name, "parameters": {"binary_data": True}}],
        }
    )
    return header + raw, len(header)


def _binary_size(output: Any) -> int | None:
    parameters = output.get("parameters") if isinstance(output, dict) else None
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    return size if isinstance(size, int) else None


def decode_response(body: bytes, header_length: str | None, output_name: str) -> np.ndarray:
    """The named output of a binary (or, if the server answered in plain JSON, JSON) V2 response."""
    if header_length is None:
        return v2_output_array(find_output(parse_json(body).get("outputs"), output_name))
    try:
        json_length = int(header_length)
    except ValueError:
        raise WrongAnswer(f"{HEADER_LENGTH} is not an integer: {header_length!r}") from None
    if not 0 < json_length <= len(body):
        raise WrongAnswer(f"{HEADER_LENGTH} {json_length} does not fit a {len(body)}-byte body")
    outputs = parse_json(body[:json_length]).get("outputs")
    wanted = find_output(outputs, output_name)
    offset = json_length
    for output in outputs:
        size = _binary_size(output)
        if size is None:
            continue
        if output is wanted:
            if offset + size > len(body):
                raise WrongAnswer(f"output {output_name!r} binary data runs past the end of the body")
            return v2_output_array(wanted, body[offset : offset + size])
        offset += size
    return v2_output_array(wanted)
