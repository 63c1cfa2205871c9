"""TF Serving's REST predict JSON <-> core tensors (``g3doc/api_rest.md``).

A request carries either ``"instances"`` (row format: one value per example, or one object
of named values per example) or ``"inputs"`` (columnar: one tensor, or an object of named
tensors), never both; the response mirrors it as ``"predictions"`` or ``"outputs"``, naming
outputs only when there are several. Binary values travel as ``{"b64": "..."}``. Values are
typed by the model's signature, as TF Serving types them by the SignatureDef.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from gateway.core.codec.limits import InputRules
from gateway.core.codec.values import array_from_json, array_to_json, nested_shape
from gateway.core.errors import InvalidInput
from gateway.core.types import Tensor, TensorSpec
from gateway.protocols.http import parse_json
from gateway.tensorproto import BINARY_SUFFIX, DEFAULT_SIGNATURE

# -- REST: the predict JSON ---------------------------------------------------------------


class JsonFormat(enum.Enum):
    """Which request layout was used; the response uses the matching one."""

    ROW = "instances"
    COLUMNAR = "inputs"


def parse_predict_body(body: bytes) -> dict[str, Any]:
    """The request object (NaN and Infinity tokens are refused, as everywhere in the gateway)."""
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise InvalidInput("request body must be a JSON object with 'instances' or 'inputs'")
    return doc


def check_signature_name(value: Any) -> None:
    """Only the default signature exists: every gateway model has exactly one."""
    if value is None or value in ("", DEFAULT_SIGNATURE):
        return
    if not isinstance(value, str):
        raise InvalidInput("'signature_name' must be a string")
    raise InvalidInput(f'Serving signature name: "{value}" not found in signature def (only "{DEFAULT_SIGNATURE}")')


def decode_predict(doc: Mapping[str, Any], rules: InputRules) -> tuple[list[Tensor], JsonFormat]:
    """The input tensors of a ``:predict`` body, typed by the resolved model's input rules."""
    check_signature_name(doc.get("signature_name"))
    if "instances" in doc and "inputs" in doc:
        raise InvalidInput("request has both 'instances' and 'inputs'; use exactly one of them")
    specs = list(rules.specs.values())
    if "instances" in doc:
        return _decode_rows(doc["instances"], specs, rules), JsonFormat.ROW
    if "inputs" in doc:
        return _decode_columns(doc["inputs"], specs, rules), JsonFormat.COLUMNAR
    raise InvalidInput("request needs 'instances' (row format) or 'inputs' (columnar format)")


def _decode_rows(instances: Any, specs: Sequence[TensorSpec], rules: InputRules) -> list[Tensor]:
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("'instances' must be a non-empty list with one entry per example")
    named = [isinstance(item, dict) and not _is_b64(item) for item in instances]
    if not any(named):
        return [_to_tensor(instances, _single_spec(specs, "instances"), "instances", rules)]
    if not all(named):
        raise InvalidInput("'instances' mixes objects of named inputs with bare values; use one form")
    wanted = {spec.name for spec in specs}
    for i, item in enumerate(instances):
        if set(item) != wanted:
            raise InvalidInput(
                f"instances[{i}] has inputs {sorted(item)}; every instance needs exactly {sorted(wanted)}"
            )
    return [_to_tensor([item[s.name] for item in instances], s, f"instances[*].{s.name}", rules) for s in specs]


def _decode_columns(inputs: Any, specs: Sequence[TensorSpec], rules: InputRules) -> list[Tensor]:
    if not isinstance(inputs, dict) or _is_b64(inputs):
        return [_to_tensor(inputs, _single_spec(specs, "inputs"), "inputs", rules)]
    tensors = []
    for name, value in inputs.items():
        spec = rules.spec(name)
        tensors.append(_to_tensor(value, spec, f"inputs.{name}", rules))
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


def _to_tensor(value: Any, spec: TensorSpec, where: str, rules: InputRules) -> Tensor:
    """The shape comes from the nesting and passes the model's rules before the array is made."""
    shape = nested_shape(spec.name, value, where, b64=True)
    rules.check(spec.name, spec.datatype, list(shape))
    data = array_from_json(spec.name, spec.datatype, value, where, b64=True, shape=shape)
    return Tensor(spec.name, spec.datatype, data)


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
    """A numpy array orjson writes directly, or nested lists of text / b64 objects for BYTES."""
    binary = tensor.name.endswith(BINARY_SUFFIX)
    return array_to_json(tensor.name, tensor.data, tensor.datatype, b64=binary, nested=True)


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
