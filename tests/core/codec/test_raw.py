import numpy as np
import pytest

from gateway.core.codec.raw import array_from_raw, array_to_raw, decode_bytes_elements, encode_bytes_elements
from gateway.core.errors import InvalidInput


def test_bytes_wire_format() -> None:
    array = np.array([b"ab", b"", b"\xff"], dtype=object)
    raw = encode_bytes_elements(array)
    assert raw == b"\x02\x00\x00\x00ab\x00\x00\x00\x00\x01\x00\x00\x00\xff"
    assert list(decode_bytes_elements(raw, 3, "t")) == [b"ab", b"", b"\xff"]


@pytest.mark.parametrize(
    ("raw", "count", "message"),
    [
        (b"\x02\x00", 1, "too few for 1 BYTES elements"),
        (b"\x05\x00\x00\x00ab", 1, "says 5 bytes"),
        (b"\x01\x00\x00\x00ab", 1, "1 bytes left after 1 BYTES elements"),
        (b"\x00\x00\x00\x00\x01\x00", 2, "too few for 2 BYTES elements"),
        (b"\x00\x00\x00\x00\x00\x00\x00\x00\x01", 2, "1 bytes left after 2 BYTES elements"),
        (b"\x01\x00\x00\x00a\x00\x00\x00\x00", 3, "too few for 3"),
    ],
)
def test_bad_bytes_buffers_name_the_tensor(raw: bytes, count: int, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as info:
        decode_bytes_elements(raw, count, "words")
    assert "'words'" in info.value.message


def test_a_huge_declared_bytes_count_is_refused_before_allocating() -> None:
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput, match="too few for 20000000 BYTES elements"):
            decode_bytes_elements(b"abcd", 20_000_000, "words")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # the 160 MB object array was never made


def test_fixed_size_buffers_must_match_exactly_and_are_zero_copy() -> None:
    buffer = np.arange(6, dtype="<f4").tobytes()
    array = array_from_raw("x", "FP32", (2, 3), 6, buffer)
    assert array.tolist() == [[0, 1, 2], [3, 4, 5]] and not array.flags.owndata
    with pytest.raises(InvalidInput, match="has 24 bytes; shape \\[2, 4\\] of FP32 needs 32"):
        array_from_raw("x", "FP32", (2, 4), 8, buffer)


def test_bool_bytes_must_be_zero_or_one() -> None:
    assert array_from_raw("b", "BOOL", (2,), 2, b"\x00\x01").tolist() == [False, True]
    with pytest.raises(InvalidInput, match="only bytes 0 and 1"):
        array_from_raw("b", "BOOL", (2,), 2, b"\x00\x02")


def test_to_raw_is_little_endian() -> None:
    assert array_to_raw(np.array([1], ">i4"), "INT32") == b"\x01\x00\x00\x00"
