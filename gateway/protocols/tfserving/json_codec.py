"""TF Serving's REST predict JSON <-> core tensors (``g3doc/api_rest.md``).

A request carries either ``"instances"`` (row format: one value per example, or one object
of named values per example) or ``"inputs"`` (columnar: one tensor, or an object of named
tensors), never both; the response mirrors it as ``"predictions"`` or ``"outputs"``, naming
outputs only when there are several. Binary values travel as ``{"b64": "..."}``. Values are
typed by the model's signature, as TF Serving types them by the SignatureDef.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from gateway.core.datatypes import numpy_dtype
from gateway.core.errors import InvalidInput
from gateway.core.types import Tensor, TensorSpec
from gateway.tensorproto import BINARY_SUFFIX, DEFAULT_SIGNATURE, object_array

# -- REST: the predict JSON ---------------------------------------------------------------


class JsonFormat(enum.Enum):
    """Which request layout was used; the response uses the matching one."""

    ROW = "instances"
    COLUMNAR = "inputs"


def parse_predict_body(body: bytes) -> dict[str, Any]:
    """The request object; NaN/Infinity tokens are accepted, as TF Serving accepts them."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = _parse_lenient(body)
    if not isinstance(doc, dict):
        raise InvalidInput("request body must be a JSON object with 'instances' or 'inputs'")
    return doc


def _parse_lenient(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InvalidInput(f"malformed JSON in request body: {exc}") from None


def check_signature_name(value: Any) -> None:
    """Only the default signature exists: every gateway model has exactly one."""
    if value is None or value in ("", DEFAULT_SIGNATURE):
        return
    if not isinstance(value, str):
        raise InvalidInput("'signature_name' must be a string")
    raise InvalidInput(f'Serving signature name: "{value}" not found in signature def (only "{DEFAULT_SIGNATURE}")')


def decode_predict(doc: Mapping[str, Any], specs: Sequence[TensorSpec]) -> tuple[list[Tensor], JsonFormat]:
    """The input tensors of a ``:predict`` body, typed by the model's input specs."""
    check_signature_name(doc.get("signature_name"))
    if "instances" in doc and "inputs" in doc:
        raise InvalidInput("request has both 'instances' and 'inputs'; use exactly one of them")
    if "instances" in doc:
        return _decode_rows(doc["instances"], specs), JsonFormat.ROW
    if "inputs" in doc:
        return _decode_columns(doc["inputs"], specs), JsonFormat.COLUMNAR
    raise InvalidInput("request needs 'instances' (row format) or 'inputs' (columnar format)")


def _decode_rows(instances: Any, specs: Sequence[TensorSpec]) -> list[Tensor]:
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("'instances' must be a non-empty list with one entry per example")
    named = [isinstance(item, dict) and not _is_b64(item) for item in instances]
    if not any(named):
        return [_to_tensor(instances, _single_spec(specs, "instances"), "instances")]
    if not all(named):
        raise InvalidInput("'instances' mixes objects of named inputs with bare values; use one form")
    wanted = {spec.name for spec in specs}
    for i, item in enumerate(instances):
        if set(item) != wanted:
            raise InvalidInput(
                f"instances[{i}] has inputs {sorted(item)}; every instance needs exactly {sorted(wanted)}"
            )
    return [_to_tensor([item[s.name] for item in instances], s, f"instances[*].{s.name}") for s in specs]


def _decode_columns(inputs: Any, specs: Sequence[TensorSpec]) -> list[Tensor]:
    if not isinstance(inputs, dict) or _is_b64(inputs):
        return [_to_tensor(inputs, _single_spec(specs, "inputs"), "inputs")]
    by_name = {spec.name: spec for spec in specs}
    tensors = []
    for name, value in inputs.items():
        spec = by_name.get(name)
        if spec is None:
            raise InvalidInput(f"unknown input {name!r} in 'inputs'; the model's inputs are {sorted(by_name)}")
        tensors.append(_to_tensor(value, spec, f"inputs.{name}"))
    return tensors


def _single_spec(specs: Sequence[TensorSpec], key: str) -> TensorSpec:
    if len(specs) != 1:
        raise InvalidInput(
            f"the model has {len(specs)} inputs {[s.name for s in specs]}: "
            f"'{key}' must name them (objects keyed by input name)"
        )
    return specs[0]


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _to_tensor(value: Any, spec: TensorSpec, where: str) -> Tensor:
    if spec.datatype == "BYTES":
        return Tensor(spec.name, "BYTES", _bytes_array(value, where))
    return Tensor(spec.name, spec.datatype, _numeric_array(value, spec.datatype, where))


def _numeric_array(value: Any, datatype: str, where: str) -> np.ndarray:
    try:
        raw = np.asarray(value)
    except (ValueError, OverflowError):
        raise InvalidInput(f"{where}: the nested lists are ragged; every row needs the same length") from None
    target = numpy_dtype(datatype)
    if raw.size and not _compatible(raw.dtype, target):
        kind = {"b": "true/false values", "i": "integers", "u": "integers", "f": "numbers"}[target.kind]
        raise InvalidInput(f"{where}: expected {kind} for a {datatype} input")
    if raw.size and target.kind in "iu":
        info = np.iinfo(target.name)
        if raw.min() < info.min or raw.max() > info.max:
            raise InvalidInput(f"{where}: values outside the range of {datatype}")
    return raw.astype(target)


def _compatible(source: np.dtype[Any], target: np.dtype[Any]) -> bool:
    if target.kind == "b":
        return source.kind == "b"
    if target.kind in "iu":
        return source.kind in "iu"
    return source.kind in "iuf"


def _bytes_array(value: Any, where: str) -> np.ndarray:
    flat: list[bytes] = []
    shape = _walk_bytes(value, flat, where)
    return object_array(flat).reshape(shape)


def _walk_bytes(value: Any, flat: list[bytes], where: str) -> tuple[int, ...]:
    """Collect the leaves of a nested list of strings or b64 objects; returns its shape."""
    if isinstance(value, str):
        flat.append(value.encode("utf-8"))
        return ()
    if _is_b64(value):
        flat.append(_b64decode(value["b64"], where))
        return ()
    if not isinstance(value, list):
        raise InvalidInput(f'{where}: a BYTES input takes strings or {{"b64": ...}} objects, not {_kind(value)}')
    shapes = {_walk_bytes(item, flat, where) for item in value}
    if len(shapes) > 1:
        raise InvalidInput(f"{where}: the nested lists are ragged; every row needs the same length")
    inner = shapes.pop() if shapes else ()
    return (len(value), *inner)


def _b64decode(text: Any, where: str) -> bytes:
    if not isinstance(text, str):
        raise InvalidInput(f"{where}: a b64 value must be a string")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise InvalidInput(f"{where}: invalid base64 in a b64 value: {exc}") from None


def _kind(value: Any) -> str:
    return {dict: "objects", bool: "booleans", int: "numbers", float: "numbers"}.get(type(value), type(value).__name__)


def encode_predict(outputs: Sequence[Tensor], fmt: JsonFormat) -> bytes:
    """The ``:predict`` response body: ``predictions`` for row requests, ``outputs`` for columnar ones."""
    values = {t.name: _json_value(t) for t in outputs}
    if fmt is JsonFormat.COLUMNAR:
        body: Any = values if len(outputs) != 1 else values[outputs[0].name]
        return _dumps({"outputs": body}, outputs)
    _check_rows(outputs)
    if len(outputs) == 1:
        return _dumps({"predictions": values[outputs[0].name]}, outputs)
    batch = outputs[0].shape[0]
    rows = [{name: value[i] for name, value in values.items()} for i in range(batch)]
    return _dumps({"predictions": rows}, outputs)


def _check_rows(outputs: Sequence[Tensor]) -> None:
    """The row format needs every output to share the batch (0-th) dimension, as in TF Serving."""
    batches = {t.name: (t.shape[0] if t.shape else None) for t in outputs}
    if None in batches.values() or len(set(batches.values())) > 1:
        raise InvalidInput(
            f"outputs {batches} do not share a batch dimension, so they cannot be returned as rows; "
            "send the request in the columnar format ('inputs') instead"
        )


def _json_value(tensor: Tensor) -> Any:
    """A numpy array orjson writes directly, or nested lists for BYTES."""
    if tensor.datatype != "BYTES":
        return np.ascontiguousarray(tensor.data)
    binary = tensor.name.endswith(BINARY_SUFFIX)
    return _bytes_json(tensor.data.tolist(), binary)


def _bytes_json(value: Any, binary: bool) -> Any:
    if isinstance(value, list):
        return [_bytes_json(item, binary) for item in value]
    raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if not binary:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            pass  # not text: fall through to base64 rather than fail the request
    return {"b64": base64.b64encode(raw).decode("ascii")}


def _dumps(doc: Mapping[str, Any], outputs: Sequence[Tensor]) -> bytes:
    """orjson normally; the stdlib when a float is NaN or infinite, which TF Serving writes as tokens."""
    if all(t.data.dtype.kind != "f" or bool(np.isfinite(t.data).all()) for t in outputs):
        return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    return json.dumps(_plain(doc), allow_nan=True, separators=(",", ":")).encode("utf-8")


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
