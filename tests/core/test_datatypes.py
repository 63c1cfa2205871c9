import numpy as np
import pytest

from gateway.core.datatypes import (
    DATATYPES,
    deserialize_bytes_tensor,
    numpy_dtype,
    serialize_bytes_tensor,
    v2_datatype,
)
from gateway.core.errors import InvalidInput


@pytest.mark.parametrize("datatype", sorted(DATATYPES))
def test_every_datatype_round_trips_through_numpy(datatype: str) -> None:
    assert v2_datatype(numpy_dtype(datatype)) == datatype


def test_unknown_datatype_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="unknown datatype 'FP8'"):
        numpy_dtype("FP8")


def test_bytes_wire_format() -> None:
    array = np.array([b"ab", b"", b"\xff"], dtype=object)
    raw = serialize_bytes_tensor(array)
    assert raw == b"\x02\x00\x00\x00ab\x00\x00\x00\x00\x01\x00\x00\x00\xff"
    assert list(deserialize_bytes_tensor(raw, 3, "t")) == [b"ab", b"", b"\xff"]


@pytest.mark.parametrize(
    ("raw", "count", "message"),
    [
        (b"\x02\x00", 1, "inside element 0's length prefix"),
        (b"\x05\x00\x00\x00ab", 1, "says 5 bytes"),
        (b"\x01\x00\x00\x00ab", 1, "1 bytes left after 1 BYTES elements"),
    ],
)
def test_bad_bytes_buffers_name_the_tensor(raw: bytes, count: int, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as info:
        deserialize_bytes_tensor(raw, count, "words")
    assert "'words'" in info.value.message
