"""Decode each protocol's response into class probabilities and check them against the labels.

Every response is checked, not only its status: the output must be present with the right
datatype and shape, finite, each row a probability distribution, and its argmax must be the
digit the image shows. Any difference raises :class:`WrongAnswer`, which the users turn into
a Locust failure whose message says what was wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from loadtests.payloads import CLASSES, Batch

#: How far a row of probabilities may sum from 1 (float32 softmax is well inside this).
SUM_TOLERANCE = 1e-3


class WrongAnswer(Exception):
    """The response arrived but is not the right answer (message names what differs)."""


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise WrongAnswer(f"response is not JSON: {exc}") from None


def find_output(outputs: Any, output_name: str) -> Mapping[str, Any]:
    """The V2 output tensor called ``output_name`` from a response's ``outputs`` list."""
    if not isinstance(outputs, list):
        raise WrongAnswer("response has no 'outputs' list")
    for output in outputs:
        if isinstance(output, dict) and output.get("name") == output_name:
            return output
    raise WrongAnswer(f"response has no output {output_name!r}")


def v2_output_array(output: Mapping[str, Any], raw: bytes | None = None) -> np.ndarray:
    """A V2 output (JSON ``data`` or binary ``raw`` bytes) as a float32 array of its declared shape."""
    if output.get("datatype") != "FP32":
        raise WrongAnswer(f"output {output.get('name')!r} has datatype {output.get('datatype')!r}, expected 'FP32'")
    shape = output.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
        raise WrongAnswer(f"output {output.get('name')!r} has no integer shape")
    if raw is not None:
        values = np.frombuffer(raw, dtype="<f4")
    else:
        data = output.get("data")
        if not isinstance(data, list):
            raise WrongAnswer(f"output {output.get('name')!r} has no 'data' list")
        values = np.asarray(data, dtype=np.float32)
    if values.size != int(np.prod(shape)):
        raise WrongAnswer(f"output {output.get('name')!r} has {values.size} values for shape {shape}")
    return values.reshape(shape)


def decode_v2_json(body: bytes, output_name: str) -> np.ndarray:
    return v2_output_array(find_output(parse_json(body).get("outputs"), output_name))


def decode_tfs(body: bytes) -> np.ndarray:
    """TF Serving ``{"predictions": [[...], ...]}`` (row format) or ``{"outputs": ...}`` (columnar)."""
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise WrongAnswer("response is not a JSON object")
    rows = payload.get("predictions", payload.get("outputs"))
    if isinstance(rows, dict) and len(rows) == 1:
        rows = next(iter(rows.values()))
    if not isinstance(rows, list):
        raise WrongAnswer("response has no 'predictions' list")
    try:
        return np.asarray(rows, dtype=np.float32)
    except (ValueError, TypeError):
        raise WrongAnswer("'predictions' is not a numeric matrix") from None


def decode_grpc(contents: Sequence[bytes], outputs: Sequence[Any], output_name: str) -> np.ndarray:
    """A ``ModelInferResponse``'s output (``raw_output_contents`` or typed ``contents``) as an array."""
    for i, output in enumerate(outputs):
        if output.name != output_name:
            continue
        if output.datatype != "FP32":
            raise WrongAnswer(f"output {output_name!r} has datatype {output.datatype!r}, expected 'FP32'")
        shape = list(output.shape)
        values = (
            np.frombuffer(contents[i], dtype="<f4")
            if i < len(contents)
            else np.asarray(output.contents.fp32_contents, dtype=np.float32)
        )
        if values.size != int(np.prod(shape)):
            raise WrongAnswer(f"output {output_name!r} has {values.size} values for shape {shape}")
        return values.reshape(shape)
    raise WrongAnswer(f"response has no output {output_name!r}")


def check_answer(probs: np.ndarray, batch: Batch) -> None:
    """Raise :class:`WrongAnswer` unless ``probs`` is the right answer for every image of ``batch``."""
    expected_shape = (len(batch.labels), CLASSES)
    if probs.shape != expected_shape:
        raise WrongAnswer(f"output shape {list(probs.shape)}, expected {list(expected_shape)}")
    if not np.isfinite(probs).all():
        raise WrongAnswer("output contains NaN or infinity")
    sums = probs.sum(axis=1)
    if np.abs(sums - 1.0).max() > SUM_TOLERANCE:
        raise WrongAnswer(f"probabilities sum to {float(sums[np.abs(sums - 1).argmax()]):.4f}, not 1")
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != batch.labels)
    if wrong.size:
        first = int(wrong[0])
        raise WrongAnswer(
            f"wrong answer: expected digit {int(batch.labels[first])}, got {int(predicted[first])}"
            f" ({wrong.size} of {len(batch.labels)} in the batch wrong)"
        )
