import pytest

from gateway.core.codec.limits import InputRules, TensorLimits, check_dims, check_shape
from gateway.core.errors import InvalidInput
from gateway.core.types import TensorSpec

RULES = InputRules.for_inputs([TensorSpec("x", "FP32", (-1, 64))], max_batch_size=16, limits=TensorLimits(1 << 20))


def test_a_good_header_gives_the_count() -> None:
    header = RULES.check("x", "FP32", [4, 64])
    assert (header.shape, header.elements) == ((4, 64), 256)


@pytest.mark.parametrize(
    ("name", "datatype", "shape", "message"),
    [
        ("y", "FP32", [1, 64], "unknown input 'y'; the model's inputs are \\['x'\\]"),
        ("", "FP32", [1, 64], "an input has no name"),
        ("x", "FP8", [1, 64], "unknown datatype 'FP8'"),
        ("x", "FP64", [1, 64], "datatype FP64 does not match the model's FP32"),
        ("x", "FP32", [1, -64], "negative dimension"),
        ("x", "FP32", [1, 65], "shape \\[1, 65\\] does not match the model's \\[-1, 64\\]"),
        ("x", "FP32", [64], "does not match"),
        ("x", "FP32", [17, 64], "batch size 17 is over max_batch_size 16"),
        ("x", "FP32", "1,64", "shape must be a list of integers"),
        ("x", "FP32", [1.0, 64], "shape must be a list of integers"),
        ("x", "FP32", [True, 64], "shape must be a list of integers"),
    ],
)
def test_every_rule_names_the_input(name: str, datatype: str, shape: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        RULES.check(name, datatype, shape)


def test_limits_are_checked_on_the_declared_shape() -> None:
    unlimited_batch = InputRules.for_inputs([TensorSpec("x", "FP32", (-1, 64))], 0, TensorLimits(1 << 20))
    with pytest.raises(InvalidInput, match="needs 2097152 bytes, over the limit of 1048576 bytes"):
        unlimited_batch.check("x", "FP32", [2**13, 64])
    with pytest.raises(InvalidInput, match="268435456 elements, over the limit"):
        unlimited_batch.check("x", "FP32", [2**22, 64])
    with pytest.raises(InvalidInput, match="elements, over the limit"):
        unlimited_batch.check("x", "FP32", [2**40, 64])


def test_check_shape_alone() -> None:
    assert check_shape("t", "UINT8", (0, 5)) == 0
    assert check_dims("t", [3, 0]) == (3, 0)
    with pytest.raises(InvalidInput, match="over the limit of 16 bytes"):
        check_shape("t", "BYTES", (5,), TensorLimits(16))
