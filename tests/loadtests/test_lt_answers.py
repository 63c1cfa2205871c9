"""Request bodies, response decoding and the answer checks, on real data and real encodings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson
import pytest

from gateway.protos import open_inference_grpc_pb2 as pb
from loadtests import binary
from loadtests.answers import WrongAnswer, check_answer, decode_grpc, decode_tfs, decode_v2_json
from loadtests.errors import LoadTestError
from loadtests.payloads import (
    Batch,
    BatchSampler,
    DigitsSamples,
    digits,
    load_samples,
    reference_samples,
    save_samples,
)
from loadtests.probe import model_info
from tests.onnx_models import write_digits_repo


@pytest.fixture(scope="module")
def samples() -> DigitsSamples:
    return reference_samples()


def one_hot(labels: np.ndarray) -> np.ndarray:
    probs = np.full((len(labels), 10), 0.01, np.float32)
    probs[np.arange(len(labels)), labels] = 0.91
    return probs


def test_the_demo_model_answers_every_sample_right(samples: DigitsSamples, tmp_path: Path) -> None:
    model_dir = write_digits_repo(tmp_path)
    session = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    probs = session.run(["probs"], {"pixels": samples.pixels})[0]
    assert len(samples) > 1500  # nearly all of load_digits' 1797 images
    assert (probs.argmax(axis=1) == samples.labels).all()
    check_answer(probs, Batch(samples.pixels, samples.labels))


def test_digits_are_scikit_learns() -> None:
    from sklearn.datasets import load_digits

    pixels, labels = digits()
    reference = load_digits()
    assert np.array_equal(pixels, reference.data.astype(np.float32))
    assert np.array_equal(labels, reference.target)


def test_samples_round_trip_and_sampler_is_seeded(samples: DigitsSamples, tmp_path: Path) -> None:
    save_samples(samples, tmp_path / "s.npz")
    loaded = load_samples(tmp_path / "s.npz")
    assert np.array_equal(loaded.pixels, samples.pixels) and np.array_equal(loaded.labels, samples.labels)
    first, second = BatchSampler(loaded, 4, seed=7).next(), BatchSampler(loaded, 4, seed=7).next()
    assert first.pixels.shape == (4, 64) and np.array_equal(first.labels, second.labels)


@pytest.mark.parametrize(
    ("probs", "message"),
    [
        (np.zeros((2, 10), np.float32), "sum to"),
        (np.full((2, 9), 1 / 9, np.float32), r"output shape \[2, 9\]"),
        (np.full((2, 10), np.nan, np.float32), "NaN"),
    ],
)
def test_malformed_probabilities_are_wrong(probs: np.ndarray, message: str) -> None:
    with pytest.raises(WrongAnswer, match=message):
        check_answer(probs, Batch(np.zeros((2, 64), np.float32), np.array([3, 5])))


def test_wrong_digit_is_named() -> None:
    batch = Batch(np.zeros((3, 64), np.float32), np.array([1, 2, 3]))
    with pytest.raises(WrongAnswer, match=r"expected digit 2, got 7 \(1 of 3 in the batch wrong\)"):
        check_answer(one_hot(np.array([1, 7, 3])), batch)


def test_v2_json_response_decodes() -> None:
    probs = one_hot(np.array([4, 2]))
    body = orjson.dumps(
        {"outputs": [{"name": "probs", "datatype": "FP32", "shape": [2, 10], "data": probs.ravel().tolist()}]}
    )
    assert np.allclose(decode_v2_json(body, "probs"), probs)
    with pytest.raises(WrongAnswer, match="no output 'scores'"):
        decode_v2_json(body, "scores")
    with pytest.raises(WrongAnswer, match="not JSON"):
        decode_v2_json(b"<html>", "probs")


def test_binary_request_and_response_follow_the_extension() -> None:
    batch = Batch(np.arange(128, dtype=np.float32).reshape(2, 64), np.array([0, 1]))
    body, header_length = binary.encode_request(batch, "pixels", "probs")
    header = orjson.loads(body[:header_length])
    assert header["inputs"][0]["parameters"] == {"binary_data_size": 512}
    assert np.array_equal(np.frombuffer(body[header_length:], "<f4").reshape(2, 64), batch.pixels)
    probs = one_hot(np.array([0, 1]))
    raw = probs.astype("<f4").tobytes()
    response_header = orjson.dumps(
        {
            "outputs": [
                {"name": "probs", "datatype": "FP32", "shape": [2, 10], "parameters": {"binary_data_size": len(raw)}}
            ]
        }
    )
    decoded = binary.decode_response(response_header + raw, str(len(response_header)), "probs")
    assert np.array_equal(decoded, probs)
    with pytest.raises(WrongAnswer, match="runs past the end"):
        binary.decode_response(response_header + raw[:-4], str(len(response_header)), "probs")


def test_tfs_predictions_decode() -> None:
    probs = one_hot(np.array([9]))
    assert np.allclose(decode_tfs(orjson.dumps({"predictions": probs.tolist()})), probs)
    with pytest.raises(WrongAnswer, match="no 'predictions'"):
        decode_tfs(b'{"error": "nope"}')


def test_grpc_raw_output_decodes() -> None:
    probs = one_hot(np.array([6, 8]))
    response = pb.ModelInferResponse(
        model_name="digits_mlp",
        outputs=[pb.ModelInferResponse.InferOutputTensor(name="probs", datatype="FP32", shape=[2, 10])],
        raw_output_contents=[probs.astype("<f4").tobytes()],
    )
    assert np.array_equal(decode_grpc(response.raw_output_contents, response.outputs, "probs"), probs)


def test_model_info_picks_digits_tensors_or_explains() -> None:
    info = model_info(
        "m",
        [{"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}],
        [{"name": "probs", "datatype": "FP32", "shape": [-1, 10]}],
    )
    assert (info.input_name, info.output_name) == ("pixels", "probs")
    with pytest.raises(LoadTestError, match=r"does not take digits images .* x INT64 \[-1, 3\]"):
        model_info("m", [{"name": "x", "datatype": "INT64", "shape": [-1, 3]}], [])
