"""TF Serving gRPC end to end in-process: a real grpc.aio server on a free port, real ONNX models.

Most tests use the gateway's own TF Serving stubs (no TensorFlow). The ``frameworks`` tests use
the OFFICIAL client pieces, ``tensorflow_serving.apis`` stubs with ``tf.make_tensor_proto`` and
``tf.make_ndarray``, exactly as an existing TF Serving client does, in this same process: the
gateway's modules are compiled from the same descriptors, so the two sets coexist.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import wrappers_pb2
from sklearn.datasets import load_digits

from gateway.core.types import Tensor
from gateway.metrics import Metrics
from gateway.protos import open_inference_grpc_pb2 as v2_pb
from gateway.protos import open_inference_grpc_pb2_grpc as v2_grpc
from gateway.protos.tfserving.tensorflow.core.framework import types_pb2
from gateway.protos.tfserving.tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from gateway.tensorproto import tensor_from_proto, tensor_to_proto
from tests.harness import grpc_served, loaded
from tests.onnx_models import ONNX_TYPES
from tests.protocols.tfserving.test_rest_api import write_versioned_repo

pytestmark = pytest.mark.anyio


@dataclass
class Gateway:
    channel: grpc.aio.Channel
    predict: prediction_service_pb2_grpc.PredictionServiceStub
    models: model_service_pb2_grpc.ModelServiceStub
    metrics: Metrics


@asynccontextmanager
async def serve(repo: Path) -> AsyncIterator[Gateway]:
    """Load ``repo`` and serve V2 and TF Serving gRPC on one free port, as the gateway does."""
    async with loaded(repo) as served, grpc_served(served, 16 * 1024 * 1024) as (channel, _):
        yield Gateway(
            channel,
            prediction_service_pb2_grpc.PredictionServiceStub(channel),  # type: ignore[no-untyped-call]
            model_service_pb2_grpc.ModelServiceStub(channel),  # type: ignore[no-untyped-call]
            served.metrics,
        )


@pytest.fixture
async def gateway(mixed_repo: Path) -> AsyncIterator[Gateway]:
    async with serve(mixed_repo) as gw:
        yield gw


@pytest.fixture
async def versioned(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with serve(write_versioned_repo(tmp_path)) as gw:
        yield gw


def pixels(n: int = 3) -> np.ndarray:
    data: np.ndarray = load_digits().data[:n]
    return data.astype(np.float32)


def spec(name: str, version: int | None = None, label: str | None = None, signature: str = "") -> model_pb2.ModelSpec:
    out = model_pb2.ModelSpec(name=name, signature_name=signature)
    if version is not None:
        out.version.CopyFrom(wrappers_pb2.Int64Value(value=version))
    if label is not None:
        out.version_label = label
    return out


def predict_request(model_spec: model_pb2.ModelSpec, x: np.ndarray) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest(model_spec=model_spec)
    request.inputs["pixels"].CopyFrom(tensor_to_proto(Tensor("pixels", "FP32", x)))
    return request


def reference_probs(repo: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(repo / "digits_mlp" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    result: np.ndarray = session.run(["probs"], {"pixels": x})[0]
    return result


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


# -- Predict -----------------------------------------------------------------------------


async def test_predict_answers_like_onnx_runtime(gateway: Gateway, mixed_repo: Path) -> None:
    x = pixels(4)
    response = await gateway.predict.Predict(predict_request(spec("digits_mlp"), x))
    assert response.model_spec.name == "digits_mlp" and response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"
    probs = response.outputs["probs"]
    assert probs.dtype == types_pb2.DT_FLOAT and [d.size for d in probs.tensor_shape.dim] == [4, 10]
    assert len(probs.float_val) == 40  # typed field, as TF Serving sends by default
    got = tensor_from_proto("probs", probs).data
    np.testing.assert_array_equal(got, reference_probs(mixed_repo, x))
    assert np.argmax(got, 1).tolist() == load_digits().target[:4].tolist()


async def test_tensor_content_and_typed_values_are_both_accepted(gateway: Gateway) -> None:
    x = pixels(2)
    typed = predict_request(spec("digits_mlp", version=1, signature="serving_default"), x)
    raw = predict_pb2.PredictRequest(model_spec=spec("digits_mlp"))
    raw.inputs["pixels"].CopyFrom(typed.inputs["pixels"])
    raw.inputs["pixels"].ClearField("float_val")
    raw.inputs["pixels"].tensor_content = x.astype("<f4").tobytes()
    a = await gateway.predict.Predict(typed)
    b = await gateway.predict.Predict(raw)
    assert a.outputs["probs"] == b.outputs["probs"]


async def test_every_datatype_round_trips_through_the_identity_model(gateway: Gateway) -> None:
    rng = np.random.default_rng(0)
    request = predict_pb2.PredictRequest(model_spec=spec("types"))
    sent: dict[str, np.ndarray] = {}
    for name in ONNX_TYPES:
        if name == "BYTES":
            data = np.array([["a", "b\u00e9"], ["", "\u2603"]], dtype=object)
            data = np.vectorize(lambda s: s.encode(), otypes=[object])(data)
        elif name == "BOOL":
            data = rng.integers(0, 2, (2, 2)).astype(bool)
        else:
            data = rng.uniform(0, 100, (2, 2)).astype(tensor_from_proto_dtype(name))
        sent[name] = data
        request.inputs[f"in_{name}"].CopyFrom(tensor_to_proto(Tensor(f"in_{name}", name, data)))
    request.output_filter.extend(["out_FP16", "out_BYTES", "out_UINT64"])
    response = await gateway.predict.Predict(request)
    assert sorted(response.outputs) == ["out_BYTES", "out_FP16", "out_UINT64"]
    assert response.outputs["out_FP16"].dtype == types_pb2.DT_HALF and len(response.outputs["out_FP16"].half_val) == 4
    for name in ("FP16", "BYTES", "UINT64"):
        got = tensor_from_proto(f"out_{name}", response.outputs[f"out_{name}"])
        assert got.datatype == name
        np.testing.assert_array_equal(got.data, sent[name])


def tensor_from_proto_dtype(name: str) -> str:
    return {"FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}.get(name, name.lower())


async def test_versions_and_labels_select_the_version(versioned: Gateway) -> None:
    x = pixels(1)
    for model_spec, version in (
        (spec("digits"), 2),
        (spec("digits", version=1), 1),
        (spec("digits", label="stable"), 1),
        (spec("digits", label="canary"), 2),
    ):
        response = await versioned.predict.Predict(predict_request(model_spec, x))
        assert response.model_spec.version.value == version
        out = tensor_from_proto("probs", response.outputs["probs"]).data
        if version == 2:
            np.testing.assert_array_equal(out, x[:, :10])
        else:
            assert int(np.argmax(out)) == int(load_digits().target[0])


@pytest.mark.parametrize(
    ("model_spec", "code", "message"),
    [
        (spec("nope"), grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
        (spec("digits_mlp", version=5), grpc.StatusCode.NOT_FOUND, "Specific(digits_mlp, 5)"),
        (spec("digits_mlp", label="gold"), grpc.StatusCode.NOT_FOUND, "Unrecognized servable version label: gold"),
        (spec(""), grpc.StatusCode.INVALID_ARGUMENT, "Missing model name"),
        (spec("digits_mlp", signature="other"), grpc.StatusCode.INVALID_ARGUMENT, 'signature name: "other"'),
        (spec("broken"), grpc.StatusCode.UNAVAILABLE, "max_batch_size"),
    ],
)
async def test_predict_servable_errors(
    gateway: Gateway, model_spec: model_pb2.ModelSpec, code: grpc.StatusCode, message: str
) -> None:
    error = await rpc_error(gateway.predict.Predict(predict_request(model_spec, pixels(1))))
    assert error.code() == code and message in (error.details() or "")


async def test_predict_input_errors_are_invalid_argument(gateway: Gateway) -> None:
    good = predict_request(spec("digits_mlp"), pixels(1))
    cases: list[tuple[predict_pb2.PredictRequest, str]] = []
    wrong_dtype = predict_pb2.PredictRequest(model_spec=spec("digits_mlp"))
    wrong_dtype.inputs["pixels"].CopyFrom(tensor_to_proto(Tensor("pixels", "FP64", pixels(1).astype(np.float64))))
    cases.append((wrong_dtype, "datatype FP64 does not match the model's FP32"))
    wrong_shape = predict_request(spec("digits_mlp"), pixels(2).reshape(1, 128))
    cases.append((wrong_shape, "shape [1, 128] does not match"))
    short = predict_pb2.PredictRequest()
    short.CopyFrom(good)
    del short.inputs["pixels"].float_val[5:]
    cases.append((short, "float_val has 5 values; the shape needs 64"))
    unknown_output = predict_pb2.PredictRequest()
    unknown_output.CopyFrom(good)
    unknown_output.output_filter.append("logits")
    cases.append((unknown_output, "unknown output 'logits'"))
    complex_input = predict_pb2.PredictRequest()
    complex_input.CopyFrom(good)
    complex_input.inputs["pixels"].dtype = types_pb2.DT_COMPLEX64
    cases.append((complex_input, "dtype DT_COMPLEX64 is not supported"))
    for request, message in cases:
        error = await rpc_error(gateway.predict.Predict(request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, message
        assert message in (error.details() or ""), error.details()


async def test_predict_metrics_use_the_tfs_grpc_protocol(gateway: Gateway) -> None:
    await gateway.predict.Predict(predict_request(spec("digits_mlp"), pixels(1)))
    await rpc_error(gateway.predict.Predict(predict_request(spec("made_up"), pixels(1))))
    registry = gateway.metrics.registry
    ok = {"model": "digits_mlp", "version": "1", "protocol": "tfs_grpc", "status": "OK"}
    missing = {"model": "_unknown", "version": "", "protocol": "tfs_grpc", "status": "NOT_FOUND"}
    assert registry.get_sample_value("modelgate_requests_total", ok) == 1.0
    assert registry.get_sample_value("modelgate_requests_total", missing) == 1.0
    assert registry.get_sample_value("modelgate_inflight_requests", {"protocol": "tfs_grpc"}) == 0.0


# -- metadata and status -----------------------------------------------------------------


async def test_get_model_metadata_returns_a_signature_def_map(gateway: Gateway) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=spec("digits_mlp"), metadata_field=["signature_def"]
    )
    response = await gateway.predict.GetModelMetadata(request)
    assert response.model_spec.name == "digits_mlp" and response.model_spec.version.value == 1
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    signature = signatures.signature_def["serving_default"]
    assert signature.method_name == "tensorflow/serving/predict"
    pixels_info = signature.inputs["pixels"]
    assert pixels_info.dtype == types_pb2.DT_FLOAT and [d.size for d in pixels_info.tensor_shape.dim] == [-1, 64]
    assert list(signature.outputs) == ["probs"]


@pytest.mark.parametrize(
    ("fields", "model", "code", "message"),
    [
        ([], "digits_mlp", grpc.StatusCode.INVALID_ARGUMENT, "at least one metadata_field"),
        (["signature_def", "graph"], "digits_mlp", grpc.StatusCode.INVALID_ARGUMENT, "Metadata field graph"),
        (["signature_def"], "nope", grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
    ],
)
async def test_get_model_metadata_errors(
    gateway: Gateway, fields: list[str], model: str, code: grpc.StatusCode, message: str
) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest(model_spec=spec(model), metadata_field=fields)
    error = await rpc_error(gateway.predict.GetModelMetadata(request))
    assert error.code() == code and message in (error.details() or "")


async def test_get_model_status_for_all_one_and_labelled_versions(versioned: Gateway) -> None:
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    response = await versioned.models.GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec=spec("digits"))
    )
    assert [(s.version, s.state, s.status.error_code) for s in response.model_version_status] == [
        (1, available, 0),
        (2, available, 0),
    ]
    for model_spec, version in ((spec("digits", version=2), 2), (spec("digits", label="stable"), 1)):
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=model_spec)
        response = await versioned.models.GetModelStatus(request)
        assert [s.version for s in response.model_version_status] == [version]
    request = get_model_status_pb2.GetModelStatusRequest(model_spec=spec("digits", version=3))
    error = await rpc_error(versioned.models.GetModelStatus(request))
    assert error.code() == grpc.StatusCode.NOT_FOUND and error.details() == "Could not find version 3 of model digits"


async def test_unsupported_rpcs_are_unimplemented_with_a_reason(gateway: Gateway) -> None:
    calls = [
        gateway.predict.Classify(classification_pb2.ClassificationRequest(model_spec=spec("digits_mlp"))),
        gateway.predict.Regress(regression_pb2.RegressionRequest(model_spec=spec("digits_mlp"))),
        gateway.predict.MultiInference(inference_pb2.MultiInferenceRequest()),
        gateway.models.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest()),
    ]
    for call in calls:
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.UNIMPLEMENTED and "not supported" in (error.details() or "")


async def test_v2_and_tf_serving_share_the_port(gateway: Gateway) -> None:
    v2 = v2_grpc.GRPCInferenceServiceStub(gateway.channel)  # type: ignore[no-untyped-call]
    assert (await v2.ModelReady(v2_pb.ModelReadyRequest(name="digits_mlp"))).ready
    status = await gateway.models.GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec=spec("digits_mlp"))
    )
    assert status.model_version_status[0].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE


# -- the official TF Serving client ------------------------------------------------------


@pytest.mark.frameworks
async def test_official_tf_serving_client_gets_correct_answers(gateway: Gateway, mixed_repo: Path) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import get_model_metadata_pb2 as tfs_metadata
    from tensorflow_serving.apis import get_model_status_pb2 as tfs_status
    from tensorflow_serving.apis import model_service_pb2_grpc as tfs_model_service
    from tensorflow_serving.apis import predict_pb2 as tfs_predict
    from tensorflow_serving.apis import prediction_service_pb2_grpc as tfs_prediction_service

    stub = tfs_prediction_service.PredictionServiceStub(gateway.channel)
    x = pixels(5)
    request = tfs_predict.PredictRequest()
    request.model_spec.name = "digits_mlp"
    request.model_spec.signature_name = "serving_default"
    request.inputs["pixels"].CopyFrom(tf.make_tensor_proto(x))
    response = await stub.Predict(request, timeout=10.0)
    probs = tf.make_ndarray(response.outputs["probs"])
    np.testing.assert_array_equal(probs, reference_probs(mixed_repo, x))
    assert response.model_spec.version.value == 1

    request = tfs_metadata.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "digits_mlp"
    metadata = await stub.GetModelMetadata(request, timeout=10.0)
    signatures = tfs_metadata.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signatures)
    info = signatures.signature_def["serving_default"].inputs["pixels"]
    assert tf.dtypes.as_dtype(info.dtype) == tf.float32
    assert tf.TensorShape(info.tensor_shape).as_list() == [None, 64]

    models = tfs_model_service.ModelServiceStub(gateway.channel)
    status_request = tfs_status.GetModelStatusRequest()
    status_request.model_spec.name = "digits_mlp"
    status = await models.GetModelStatus(status_request, timeout=10.0)
    assert status.model_version_status[0].state == tfs_status.ModelVersionStatus.AVAILABLE


@pytest.mark.frameworks
async def test_official_client_sends_strings_and_reads_errors(gateway: Gateway) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2 as tfs_predict
    from tensorflow_serving.apis import prediction_service_pb2_grpc as tfs_prediction_service

    stub = tfs_prediction_service.PredictionServiceStub(gateway.channel)
    request = tfs_predict.PredictRequest()
    request.model_spec.name = "types"
    sent: dict[str, np.ndarray] = {}
    for name in ONNX_TYPES:
        value = (
            np.array([["x\u00e9", "y"]], dtype=object)
            if name == "BYTES"
            else np.ones((1, 2), tensor_from_proto_dtype(name))
        )
        request.inputs[f"in_{name}"].CopyFrom(tf.make_tensor_proto(value))
        sent[name] = value
    response = await stub.Predict(request, timeout=10.0)
    assert tf.make_ndarray(response.outputs["out_BYTES"]).tolist() == [["x\u00e9".encode(), b"y"]]
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["out_FP16"]), sent["FP16"])
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["out_UINT8"]), sent["UINT8"])

    request = tfs_predict.PredictRequest()
    request.model_spec.name = "half"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones((1, 1), np.float32)))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Predict(request, timeout=10.0)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "Servable not found for request: Latest(half)"


@pytest.mark.frameworks
def test_gateway_modules_are_the_official_descriptors() -> None:
    """Same file names and bytes, so importing both into one process is safe (and classes are shared)."""
    import tensorflow_serving.apis.get_model_metadata_pb2 as official_metadata
    import tensorflow_serving.apis.predict_pb2 as official_predict
    from tensorflow.core.framework import tensor_pb2 as official_tensor

    from gateway.protos.tfserving.tensorflow.core.framework import tensor_pb2

    pairs = [
        (predict_pb2, official_predict),
        (get_model_metadata_pb2, official_metadata),
        (tensor_pb2, official_tensor),
    ]
    for mine, theirs in pairs:
        assert mine.DESCRIPTOR.name == theirs.DESCRIPTOR.name
        assert mine.DESCRIPTOR.serialized_pb == theirs.DESCRIPTOR.serialized_pb
    assert predict_pb2.PredictRequest is official_predict.PredictRequest
