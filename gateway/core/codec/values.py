"""JSON-style values and protobuf repeated fields <-> arrays, strict per datatype.

JSON rules (V2 REST and TF Serving REST alike): numeric datatypes take numbers only (no
strings, booleans or null), integer datatypes take integers only, every value must fit the
datatype's range (``1e300`` is not an FP32, ``300`` is not an INT8), NaN and Infinity are
refused, BOOL takes ``true``/``false`` only, BYTES takes strings (and, where the wire format
allows it, ``{"b64": "..."}`` objects). Nested lists must be regular. The element count is
known from the nesting before any array is made.

Protobuf repeated fields (V2 gRPC ``contents``, TensorFlow ``*_val``) are already typed by
their field; narrower datatypes riding in a wider field (INT8 in ``int_contents``) are
range-checked, and TF Serving's single value filling the whole shape is allowed where asked.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from operator import countOf
from typing import Any, Final, NamedTuple, NoReturn

import numpy as np

from gateway.core.codec.datatypes import V2_TO_NUMPY, numpy_dtype
from gateway.core.codec.raw import as_bytes, object_array
from gateway.core.errors import InvalidInput

_EXPECTS: Final = {"b": "true/false", "i": "integers", "u": "non-negative integers", "f": "numbers"}


# -- JSON -> array -----------------------------------------------------------------------------


def nested_shape(name: str, data: Any, where: str = "data", *, b64: bool = False) -> tuple[int, ...]:
    """The shape of a nested list, read from its first elements (regularity is checked on conversion)."""
    shape: list[int] = []
    value = data
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    if isinstance(value, dict) and not (b64 and _is_b64(value)):
        raise InvalidInput(f"input {name!r}: {where} holds an object where a value was expected")
    return tuple(shape)


def array_from_json(
    name: str,
    datatype: str,
    data: Any,
    where: str = "data",
    *,
    b64: bool = False,
    finite: bool = True,
    shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """A tensor from JSON values; its shape is the nesting's (a scalar gives shape ``()``).

    ``finite=False`` lets NaN and Infinity through (a server's outputs, not a client's inputs).
    ``shape`` is the :func:`nested_shape` when the caller has already read it.
    """
    if shape is None:
        shape = nested_shape(name, data, where, b64=b64)
    if datatype == "BYTES":
        return _bytes_from_json(name, data, where, b64, shape)
    return _numbers_from_json(name, datatype, data, where, finite, shape)


def _numbers_from_json(
    name: str, datatype: str, data: Any, where: str, finite: bool, shape: tuple[int, ...]
) -> np.ndarray:
    """Regular lists of the datatype's own JSON types take the fast path; anything else, the checked one."""
    try:
        rule = _NUMBER_RULES[datatype]
    except KeyError:
        numpy_dtype(datatype)  # an unknown datatype: its error names it
        raise
    depth = len(shape)
    leaves = data if depth == 1 else _regular_leaves(data, shape) if depth else None
    if leaves is not None:
        array = _flat_numbers(leaves, rule, finite)
        if array is not None:
            return array if depth == 1 else array.reshape(shape)
    return _checked_numbers(name, datatype, data, where, finite, depth, rule)


def _regular_leaves(data: list[Any], shape: tuple[int, ...]) -> list[Any] | None:
    """The leaves of a nesting whose every level holds lists of exactly the shape's length, or None."""
    rows = data
    for size in shape[1:]:
        count = len(rows)
        if countOf(map(type, rows), list) != count or countOf(map(len, rows), size) != count:
            return None
        rows = list(itertools.chain.from_iterable(rows))
    return rows


def _flat_numbers(data: list[Any], rule: _NumberRule, finite: bool) -> np.ndarray | None:
    """The common case, or None: every leaf of a JSON type the datatype takes (one set of the types),
    one conversion, and for floats the largest and smallest values within range (NaN fails both).

    None sends the data to :func:`_checked_numbers`, which decides and names the element at fault,
    so the fast path never changes what is accepted or the message given.
    """
    if not set(map(type, data)) <= rule.allowed:
        return None
    count = len(data)
    try:
        raw = np.fromiter(data, rule.wide, count)
    except (OverflowError, ValueError):  # an integer that does not fit: the checked path names it
        return None
    limit = rule.limit
    if limit is None:
        return raw
    if finite and count and not (raw.item(raw.argmax()) < limit and raw.item(raw.argmin()) > -limit):
        return None
    return raw.astype(rule.target, copy=False)


def _checked_numbers(
    name: str, datatype: str, data: Any, where: str, finite: bool, depth: int, rule: _NumberRule
) -> np.ndarray:
    """Types first (one pass over the leaves), then one conversion (floats through FP64, range-checked)."""
    target, wide, limit = rule.target, rule.wide, rule.limit
    try:
        types = set(map(type, _leaves(data, depth)))
    except TypeError:  # a value where a list was expected at some depth
        raise InvalidInput(f"input {name!r}: {where} is ragged: every row needs the same length") from None
    if not types <= rule.allowed:
        raise _first_bad(name, datatype, data, where)
    try:
        raw = np.asarray(data, dtype=wide)
    except ValueError:
        raise InvalidInput(f"input {name!r}: {where} is ragged: every row needs the same length") from None
    except OverflowError:  # numpy refuses Python ints that do not fit the datatype
        raise _first_bad(name, datatype, data, where) from None
    if raw.ndim != depth:
        raise InvalidInput(f"input {name!r}: {where} is ragged: every row needs the same length")
    if limit is None:
        return raw
    if finite and raw.size and not float(np.maximum.reduce(np.abs(raw), axis=None)) < limit:  # NaN fails
        _check_float_range(name, datatype, data, target, where)
    return raw.astype(target, copy=False)


#: Largest finite value of FP16, FP32, FP64 by item size (for messages).
_FLOAT_MAX: Final = {size: float(np.finfo(f"f{size}").max) for size in (2, 4, 8)}
#: Where rounding to FP16, FP32, FP64 overflows to infinity: the largest value plus half of its last step.
_FLOAT_LIMIT: Final = {2: 65520.0, 4: 2.0**128 - 2.0**103, 8: float("inf")}
_ALLOWED: Final = {"b": frozenset({bool}), "i": frozenset({int}), "u": frozenset({int}), "f": frozenset({int, float})}
_FLOAT64: Final = np.dtype(np.float64)


class _NumberRule(NamedTuple):
    """Per numeric datatype: its dtype, the JSON types it takes, the dtype values are converted to
    first (FP64 for floats, so out-of-range values are seen before rounding), the magnitude that
    overflows (floats only)."""

    target: np.dtype[Any]
    allowed: frozenset[type]
    wide: np.dtype[Any]
    limit: float | None


_NUMBER_RULES: Final = {
    datatype: _NumberRule(
        dtype,
        _ALLOWED[dtype.kind],
        _FLOAT64 if dtype.kind == "f" else dtype,
        _FLOAT_LIMIT[dtype.itemsize] if dtype.kind == "f" else None,
    )
    for datatype, dtype in V2_TO_NUMPY.items()
    if datatype != "BYTES"
}


def _leaves(data: Any, ndim: int) -> Iterable[Any]:
    if ndim == 0:
        return (data,)
    items: Iterable[Any] = data
    for _ in range(ndim - 1):
        items = itertools.chain.from_iterable(items)
    return items


def _check_float_range(name: str, datatype: str, data: Any, target: np.dtype[Any], where: str) -> NoReturn:
    """The error for a float input whose largest magnitude failed ``peak < limit``: NaN, Infinity or out of range."""
    limit = _FLOAT_LIMIT[target.itemsize]
    for value in _walk(data):
        if abs(value) >= limit:
            largest = _FLOAT_MAX[target.itemsize]
            raise InvalidInput(
                f"input {name!r}: {where} value {value:g} is outside the {datatype} range (±{largest:g})"
            )
    raise InvalidInput(f"input {name!r}: {where} holds NaN or Infinity, which {datatype} data may not carry in JSON")


def _first_bad(name: str, datatype: str, data: Any, where: str) -> InvalidInput:
    """The error for the first element a datatype cannot take (or for a ragged nesting)."""
    target = numpy_dtype(datatype)
    allowed = _ALLOWED[target.kind]
    try:
        for index, value in enumerate(_walk(data)):
            if type(value) not in allowed:
                return InvalidInput(
                    f"input {name!r}: {where}[{index}] is {_describe(value)}; {datatype} takes {_EXPECTS[target.kind]}"
                )
            if target.kind == "f" and abs(value) >= _FLOAT_LIMIT[target.itemsize]:
                largest = _FLOAT_MAX[target.itemsize]
                return InvalidInput(
                    f"input {name!r}: {where} value {value:g} is outside the {datatype} range (±{largest:g})"
                )
            if target.kind in "iu" and not np.iinfo(target.name).min <= value <= np.iinfo(target.name).max:
                info = np.iinfo(target.name)
                return InvalidInput(
                    f"input {name!r}: {where} value {value} is outside the {datatype} range [{info.min}, {info.max}]"
                )
    except _Ragged:
        pass
    return InvalidInput(f"input {name!r}: {where} is ragged: every row needs the same length")


class _Ragged(Exception):
    pass


def _walk(data: Any) -> Iterator[Any]:
    """Leaves in row-major order; raises _Ragged when lists and values are mixed at one level."""
    if not isinstance(data, list):
        yield data
        return
    has_lists = any(isinstance(v, list) for v in data)
    if has_lists and not all(isinstance(v, list) for v in data):
        raise _Ragged
    for value in data:
        yield from _walk(value)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, float):
        return "a number with a fraction"
    return f"the number {value}" if isinstance(value, int) else "not a value"


def _bytes_from_json(name: str, data: Any, where: str, b64: bool, shape: tuple[int, ...]) -> np.ndarray:
    flat: list[bytes] = []
    try:
        for index, value in enumerate(_walk(data)):
            flat.append(_bytes_value(name, value, f"{where}[{index}]", b64))
    except _Ragged:
        raise InvalidInput(f"input {name!r}: {where} is ragged: every row needs the same length") from None
    if len(flat) != math.prod(shape):
        raise InvalidInput(f"input {name!r}: {where} is ragged: every row needs the same length")
    return object_array(flat).reshape(shape)


def _bytes_value(name: str, value: Any, where: str, b64: bool) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if b64 and _is_b64(value):
        return decode_b64(name, value["b64"], where)
    allowed = 'strings or {"b64": ...} objects' if b64 else "strings"
    raise InvalidInput(f"input {name!r}: {where} is {_describe(value)}; BYTES takes {allowed}")


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def decode_b64(name: str, text: Any, where: str) -> bytes:
    """Strict base64 (RFC 4648 alphabet, correct padding)."""
    if not isinstance(text, str):
        raise InvalidInput(f"input {name!r}: {where}: a b64 value must be a string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"input {name!r}: {where}: the b64 value is not valid base64") from None


def encode_b64(raw: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(raw).decode("ascii")}


# -- protobuf repeated fields -> array -------------------------------------------------------------


def array_from_field(
    name: str,
    datatype: str,
    values: Sequence[Any],
    field_dtype: np.dtype[Any] | None,
    count: int,
    where: str,
    *,
    fill: bool = False,
) -> np.ndarray:
    """A flat tensor of ``count`` elements from one typed repeated field (``count`` already limit-checked).

    ``field_dtype`` is the field's own element type (None for a bytes field); narrower
    datatypes are range-checked. With ``fill``, one value fills every element (TF Serving).
    """
    given = len(values)
    if given != count and not (fill and given == 1):
        raise InvalidInput(f"input {name!r}: {where} has {given} values; the shape needs {count}")
    if field_dtype is None:
        flat = object_array([as_bytes(v) for v in values])
    else:
        flat = narrow(name, datatype, np.array(values, dtype=field_dtype), where)
    if given != count:
        return np.full(count, flat[0], dtype=flat.dtype) if flat.dtype != object else object_array([flat[0]] * count)
    return flat


def narrow(name: str, datatype: str, wide: np.ndarray, where: str) -> np.ndarray:
    """Cast a wide integer field to a narrower datatype, refusing values that would wrap."""
    target = numpy_dtype(datatype)
    if wide.dtype == target:
        return wide
    if target.kind in "iu" and wide.size:
        info = np.iinfo(target.name)
        low, high = int(wide.min()), int(wide.max())
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise InvalidInput(
                f"input {name!r}: {where} value {bad} is outside the {datatype} range [{info.min}, {info.max}]"
            )
    return wide.astype(target)


# -- array -> JSON ---------------------------------------------------------------------------------


def array_to_json(name: str, array: np.ndarray, datatype: str, *, b64: bool = False, nested: bool = False) -> Any:
    """Values orjson writes directly: a numeric ndarray (FP16 widened to FP32), or str/b64 for BYTES.

    ``nested`` keeps the array's shape (TF Serving); otherwise values are flat (V2).
    """
    data = array if nested else array.reshape(-1)
    if datatype != "BYTES":
        return np.ascontiguousarray(data.astype(np.float32) if datatype == "FP16" else data)
    if nested:
        return _nested_text(data.tolist(), b64)
    try:
        return [as_bytes(v).decode("utf-8") for v in data]
    except UnicodeDecodeError:
        raise InvalidInput(
            f"output {name!r} holds non-UTF-8 bytes; request it with parameters.binary_data=true"
        ) from None


def _nested_text(value: Any, b64: bool) -> Any:
    if isinstance(value, list):
        return [_nested_text(item, b64) for item in value]
    raw = as_bytes(value)
    if not b64:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            pass  # not text: base64 rather than fail the request
    return encode_b64(raw)
