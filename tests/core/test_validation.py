import numpy as np
import pytest

from gateway.core.errors import InvalidInput
from gateway.core.types import RequestedOutput, Signature, Tensor, TensorSpec
from gateway.core.validation import select_outputs, validate_inputs

SIG = Signature(
    inputs=[TensorSpec("a", "FP32", (-1, 4)), TensorSpec("b", "INT64", (-1,))],
    outputs=[TensorSpec("y", "FP32", (-1, 2)), TensorSpec("z", "FP32", (-1,))],
)


def tensors(a_shape: tuple[int, ...] = (2, 4), a_type: str = "FP32") -> list[Tensor]:
    return [Tensor("a", a_type, np.zeros(a_shape, np.float32)), Tensor("b", "INT64", np.zeros(2, np.int64))]


def test_valid_inputs_pass_through() -> None:
    arrays = validate_inputs(tensors(), SIG, max_batch_size=8)
    assert sorted(arrays) == ["a", "b"] and arrays["a"].shape == (2, 4)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (tensors(a_type="FP64"), "input 'a': datatype FP64 does not match the model's FP32"),
        (tensors(a_shape=(2, 5)), "input 'a': shape [2, 5] does not match the model's [-1, 4]"),
        (tensors(a_shape=(8,)), "input 'a': shape [8] does not match"),
        (tensors()[:1], "missing inputs ['b']"),
        ([*tensors(), Tensor("c", "FP32", np.zeros(1, np.float32))], "unknown input 'c'"),
        ([*tensors(), tensors()[0]], "input 'a' is given more than once"),
        (tensors(a_shape=(9, 4)), "batch size 9 is over max_batch_size 8"),
    ],
)
def test_invalid_inputs_name_the_problem(inputs: list[Tensor], message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_inputs(inputs, SIG, max_batch_size=8)
    assert message in info.value.message


def test_output_selection() -> None:
    assert [s.name for s in select_outputs(None, SIG)] == ["y", "z"]
    assert [s.name for s in select_outputs([RequestedOutput("z")], SIG)] == ["z"]
    with pytest.raises(InvalidInput, match="unknown output 'q'"):
        select_outputs([RequestedOutput("q")], SIG)
