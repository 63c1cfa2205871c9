import pytest

from gateway.core.codec.datatypes import DATATYPES, element_size, numpy_dtype, v2_datatype
from gateway.core.errors import InvalidInput


@pytest.mark.parametrize("datatype", sorted(DATATYPES))
def test_every_datatype_round_trips_through_numpy(datatype: str) -> None:
    assert v2_datatype(numpy_dtype(datatype)) == datatype


def test_unknown_datatype_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="unknown datatype 'FP8'"):
        numpy_dtype("FP8")


def test_element_sizes_count_the_bytes_prefix() -> None:
    assert element_size("FP64") == 8 and element_size("BOOL") == 1 and element_size("BYTES") == 4
