"""Request bodies, response decoding and the answer checks, against the gateway's own codecs, every datatype."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from gateway.core.codec.datatypes import V2_TO_NUMPY
from gateway.core.codec.limits import DEFAULT_LIMITS, InputRules
from gateway.core.types import InferRequest, InferResponse, Tensor
from gateway.core.types import TensorSpec as CoreSpec
from gateway.protocols.tfserving import json_codec as tfs_json
from gateway.protocols.v2 import json_codec as v2_json
from gateway.protocols.v2.grpc_codec import ModelInferRequestConverter
from gateway.protos.tfserving.tensorflow_serving.apis import predict_pb2
from gateway.tensorproto import tensor_from_proto, tensor_to_proto
from loadtests import wire
from loadtests.answers import Checker, CheckMode, WrongAnswer, check_digits
from loadtests.errors import LoadTestError
from loadtests.inputs import SourceRequest, choose_source
from loadtests.payloads import digits, reference_samples
from loadtests.tensors import Sampler, TensorSpec, generated_pool, load_pool, save_pool
from tests.onnx_models import ONNX_TYPES, write_digits_repo

SPECS = [TensorSpec(name=f"in_{t}", datatype=t, shape=(-1, -1)) for t in ONNX_TYPES]


@pytest.fixture(scope="module")
def request_tensors() -> dict[str, np.ndarray]:
    pool = generated_pool(SPECS, dynamic_size=3, seed=1, size=8)
    return Sampler(pool, batched=True, batch_size=2, seed=0).next().tensors


def same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype == object or b.dtype == object:
        return a.shape == b.shape and [bytes(x) for x in a.reshape(-1)] == [bytes(x) for x in b.reshape(-1)]
    return a.shape == b.shape and bool(np.array_equal(a.astype(np.float64), b.astype(np.float64)))


def test_every_datatype_is_generated_with_the_batch_and_dynamic_sizes(request_tensors: dict[str, np.ndarray]) -> None:
    assert set(request_tensors) == {s.name for s in SPECS}
    for spec in SPECS:
        array = request_tensors[spec.name]
        assert array.shape == (2, 3)
        if spec.datatype == "BYTES":
            assert all(isinstance(v, bytes) for v in array.reshape(-1))
        else:
            assert array.dtype == V2_TO_NUMPY[spec.datatype]


def test_pool_round_trips_bytes_without_pickles(tmp_path: Path) -> None:
    pool = generated_pool(SPECS, dynamic_size=2, seed=3, size=5)
    save_pool(pool, tmp_path / "pool.npz")
    loaded = load_pool(tmp_path / "pool.npz")
    assert all(same(loaded.inputs[k], v) for k, v in pool.inputs.items())


def rules() -> InputRules:
    """The gateway's input rules for SPECS (no max batch, default limits)."""
    return InputRules.for_inputs([CoreSpec(s.name, s.datatype, s.shape) for s in SPECS], 0, DEFAULT_LIMITS)


def test_v2_json_and_binary_bodies_decode_in_the_gateway(request_tensors: dict[str, np.ndarray]) -> None:
    decoded = v2_json.decode_request(wire.v2_json_body(request_tensors, SPECS), None, "m", None, rules())
    assert all(same(t.data, request_tensors[t.name]) for t in decoded.inputs)
    body, header_length = wire.v2_binary_body(request_tensors, SPECS)
    decoded = v2_json.decode_request(body, header_length, "m", None, rules())
    assert all(same(t.data, request_tensors[t.name]) for t in decoded.inputs)
    assert decoded.parameters == {"binary_data_output": True}


def test_grpc_requests_decode_in_the_gateway(request_tensors: dict[str, np.ndarray]) -> None:
    message = wire.v2_grpc_request("m", "2", request_tensors, SPECS)
    decoded = ModelInferRequestConverter.to_types(message, rules())
    assert decoded.model_version == "2"
    assert all(same(t.data, request_tensors[t.name]) for t in decoded.inputs)
    predict = wire.tfs_grpc_request("m", "2", request_tensors, SPECS)
    assert isinstance(predict, predict_pb2.PredictRequest) and predict.model_spec.version.value == 2
    assert all(same(tensor_from_proto(k, v).data, request_tensors[k]) for k, v in predict.inputs.items())


def test_tfs_rest_body_decodes_in_the_gateway(request_tensors: dict[str, np.ndarray]) -> None:
    doc = tfs_json.parse_predict_body(wire.tfs_rest_body(request_tensors, SPECS))
    tensors, _ = tfs_json.decode_predict(doc, rules())
    assert all(same(t.data, request_tensors[t.name]) for t in tensors)


def test_gateway_responses_decode_in_every_protocol(request_tensors: dict[str, np.ndarray]) -> None:
    outputs = [Tensor(f"out_{s.datatype}", s.datatype, request_tensors[s.name]) for s in SPECS]
    response = InferResponse("m", "1", outputs)
    for binary in (False, True):
        request = InferRequest("m", [], parameters={"binary_data_output": binary})
        body, header_length = v2_json.encode_response(response, request)
        got = wire.decode_v2(body, None if header_length is None else str(header_length))
        assert all(same(got[t.name].data, t.data) and got[t.name].datatype == t.datatype for t in outputs)
    out_specs = [TensorSpec(name=t.name, datatype=t.datatype, shape=(-1, -1)) for t in outputs]
    body = tfs_json.encode_predict(outputs, tfs_json.JsonFormat.COLUMNAR)
    got = wire.decode_tfs_rest(body, out_specs)
    assert all(same(got[t.name].data, t.data) for t in outputs)
    predict = predict_pb2.PredictResponse()
    for t in outputs:
        predict.outputs[t.name].CopyFrom(tensor_to_proto(t))
    got = wire.decode_tfs_grpc(predict)
    assert all(same(got[t.name].data, t.data) and got[t.name].datatype == t.datatype for t in outputs)


def checker(mode: CheckMode = CheckMode.GENERIC) -> Checker:
    return Checker((TensorSpec(name="y", datatype="FP32", shape=(-1, 3)),), batched=True, mode=mode, atol=0.01, rtol=0)


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ({}, "no output 'y'"),
        ({"y": wire.Output("FP64", np.zeros((2, 3)))}, "datatype 'FP64'"),
        ({"y": wire.Output("FP32", np.zeros((2, 4), np.float32))}, r"shape \[2, 4\], expected \[-1, 3\]"),
        ({"y": wire.Output("FP32", np.zeros((1, 3), np.float32))}, "1 rows for a batch of 2"),
        ({"y": wire.Output("FP32", np.full((2, 3), np.inf, np.float32))}, "NaN or infinity"),
    ],
)
def test_generic_checks_name_what_is_wrong(output: dict[str, wire.Output], message: str) -> None:
    with pytest.raises(WrongAnswer, match=message):
        checker().check(output, 2, {}, None)


def test_expected_answers_are_checked_within_tolerance() -> None:
    want = {"y": np.zeros((2, 3), np.float32)}
    checker(CheckMode.EXPECTED).check({"y": wire.Output("FP32", np.full((2, 3), 0.009, np.float32))}, 2, want, None)
    with pytest.raises(WrongAnswer, match=r"differs from the stored answer by 0.02 .*atol 0.01.*1 of 6"):
        got = np.zeros((2, 3), np.float32)
        got[1, 2] = 0.02
        checker(CheckMode.EXPECTED).check({"y": wire.Output("FP32", got)}, 2, want, None)


def test_the_demo_model_answers_every_digits_sample_right(tmp_path: Path) -> None:
    samples = reference_samples()
    model_dir = write_digits_repo(tmp_path)
    session = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    probs = session.run(["probs"], {"pixels": samples.pixels})[0]
    assert len(samples) > 1500  # nearly all of load_digits' 1797 images
    check_digits(probs, samples.labels)
    wrong = probs.copy()
    wrong[1] = np.roll(wrong[1], 1)
    with pytest.raises(WrongAnswer, match=r"wrong answer: expected digit \d, got \d \(1 of"):
        check_digits(wrong, samples.labels)


def test_digits_are_scikit_learns() -> None:
    from sklearn.datasets import load_digits

    pixels, labels = digits()
    reference = load_digits()
    assert np.array_equal(pixels, reference.data.astype(np.float32))
    assert np.array_equal(labels, reference.target)


def test_source_order_user_files_digits_generated(tmp_path: Path) -> None:
    mlp_in = [TensorSpec(name="pixels", datatype="FP32", shape=(-1, 64))]
    mlp_out = [TensorSpec(name="probs", datatype="FP32", shape=(-1, 10))]
    assert choose_source(SourceRequest(), mlp_in, mlp_out).mode is CheckMode.DIGITS
    other = [TensorSpec(name="image", datatype="FP32", shape=(-1, 8, 8, 1))]
    generated = choose_source(SourceRequest(dynamic_size=2), other, mlp_out)
    assert generated.mode is CheckMode.GENERIC and generated.pool.inputs["image"].shape[1:] == (8, 8, 1)
    np.save(tmp_path / "x.npy", np.ones((5, 8, 8, 1), np.float32))
    np.save(tmp_path / "y.npy", np.zeros((5, 10), np.float32))
    given = choose_source(
        SourceRequest(inputs_file=tmp_path / "x.npy", expected_file=tmp_path / "y.npy"), other, mlp_out
    )
    assert given.mode is CheckMode.EXPECTED and len(given.pool) == 5
    np.save(tmp_path / "bad.npy", np.ones((5, 8, 8), np.float32))
    with pytest.raises(LoadTestError, match=r"'image' has shape \[5, 8, 8\]; the model needs \[samples, 8, 8, 1\]"):
        choose_source(SourceRequest(inputs_file=tmp_path / "bad.npy"), other, mlp_out)


def test_stored_samples_and_tolerance_come_from_the_version(tmp_path: Path) -> None:
    version = tmp_path / "m" / "3"
    version.mkdir(parents=True)
    report = (
        '{"tolerances": {"fp32": {"atol": 1e-5, "rtol": 1e-4}, "fp16": {"atol": 0.005, "rtol": 0.01}},'
        ' "artifacts": [{"published_version": 3, "precision": "fp16"}]}'
    )
    (version / "conversion-report.json").write_text(report, encoding="utf-8")
    specs_in = [TensorSpec(name="x", datatype="FP32", shape=(-1, 2))]
    specs_out = [TensorSpec(name="y", datatype="FP32", shape=(-1, 1))]
    request = SourceRequest(model_dir=tmp_path / "m", version="3")
    assert choose_source(request, specs_in, specs_out).mode is CheckMode.GENERIC  # no stored samples: fall back
    np.savez(version / "samples.npz", x=np.ones((4, 2), np.float32))
    np.savez(version / "expected.npz", y=np.full((4, 1), 2.0, np.float32))
    stored = choose_source(request, specs_in, specs_out)
    assert stored.mode is CheckMode.EXPECTED and (stored.atol, stored.rtol) == (0.005, 0.01)
    np.savez(version / "samples.npz", x=np.ones((4, 7), np.float32))  # does not fit the model: fall back
    assert choose_source(request, specs_in, specs_out).mode is CheckMode.GENERIC
