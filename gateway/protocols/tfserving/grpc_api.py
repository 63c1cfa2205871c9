"""TF Serving's gRPC API on the gateway's gRPC port: ``tensorflow.serving.PredictionService``
(``Predict``, ``GetModelMetadata``) and ``tensorflow.serving.ModelService`` (``GetModelStatus``).

An existing TF Serving client (``PredictionServiceStub`` + ``tf.make_tensor_proto``) works
unchanged once pointed at this port. ``Classify``, ``Regress`` and ``MultiInference`` need
``tf.Example`` signatures that no gateway backend has, and ``HandleReloadConfigRequest``
would let a client rewrite the repository; all four answer UNIMPLEMENTED. Failures map to
status codes through :mod:`gateway.protocols.grpc_errors` only, as in the V2 service.

The messages come from :mod:`gateway.protos.tfserving`, compiled from TF Serving's own
descriptors, so the gateway never imports TensorFlow.
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias

import grpc
from google.protobuf import wrappers_pb2

from gateway.core.dataplane import DataPlane
from gateway.core.errors import Unsupported
from gateway.core.models import ServedVersion
from gateway.core.types import InferRequest, RequestedOutput, Tensor
from gateway.metrics import Metrics, RequestLabels
from gateway.protocols.grpc_envelope import measured_rpc
from gateway.protocols.grpc_errors import abort_with, status_on_error
from gateway.protocols.mounts import Mounts, ProtocolContext
from gateway.protocols.tfserving.json_codec import check_signature_name
from gateway.protocols.tfserving.servables import (
    ServableRef,
    check_metadata_fields,
    model_metadata,
    model_status,
    resolve,
)
from gateway.protocols.tracing import traced_rpc
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
from gateway.tensorproto import DEFAULT_SIGNATURE, tensor_from_proto, tensor_to_proto

PROTOCOL: Final = "tfs_grpc"
PREDICTION_SERVICE: Final = "tensorflow.serving.PredictionService"
MODEL_SERVICE: Final = "tensorflow.serving.ModelService"

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata over the shared :class:`DataPlane`."""

    def __init__(self, dataplane: DataPlane, metrics: Metrics) -> None:
        self._dataplane = dataplane
        self._metrics = metrics

    async def Predict(
        self, request: predict_pb2.PredictRequest, context: Context, traced: bool = False
    ) -> predict_pb2.PredictResponse:
        tracer = self._dataplane.tracer
        if tracer.enabled and not traced:  # tracing: the same call, inside its request span
            run = lambda: self.Predict(request, context, traced=True)  # noqa: E731
            return await traced_rpc(tracer, context, PROTOCOL, request.model_spec.name, run)
        ref = ServableRef.from_model_spec(request.model_spec)
        labels = RequestLabels(ref.name)

        async def handle() -> predict_pb2.PredictResponse:
            check_signature_name(request.model_spec.signature_name)
            served = resolve(self._dataplane, ref)
            labels.version = str(served.version)
            return await self._predict(request, served, ref)

        return await measured_rpc(context, self._metrics, PROTOCOL, labels, handle)

    async def _predict(
        self, request: predict_pb2.PredictRequest, served: ServedVersion, ref: ServableRef
    ) -> predict_pb2.PredictResponse:
        tracer = self._dataplane.tracer
        with tracer.span("decode"):
            rules = self._dataplane.input_rules(served)
            inputs = [tensor_from_proto(name, proto, rules) for name, proto in request.inputs.items()]
            outputs = [RequestedOutput(name) for name in request.output_filter] or None
        named = ref.version if ref.label is None else str(served.version)  # empty: the split chose (shadow applies)
        result = await self._dataplane.infer(
            served, InferRequest(served.model, inputs, model_version=named, outputs=outputs)
        )
        with tracer.span("encode"):
            return _predict_response(served, result.outputs)

    async def GetModelMetadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: Context
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        async with status_on_error(context):
            check_metadata_fields(list(request.metadata_field))
            ref = ServableRef.from_model_spec(request.model_spec)
            return model_metadata(self._dataplane, ref, request.model_spec.signature_name)
        raise AssertionError("unreachable: status_on_error aborts on every failure")  # pragma: no cover

    async def Classify(
        self, request: classification_pb2.ClassificationRequest, context: Context
    ) -> classification_pb2.ClassificationResponse:
        await abort_with(context, _unsupported("Classify"))

    async def Regress(
        self, request: regression_pb2.RegressionRequest, context: Context
    ) -> regression_pb2.RegressionResponse:
        await abort_with(context, _unsupported("Regress"))

    async def MultiInference(
        self, request: inference_pb2.MultiInferenceRequest, context: Context
    ) -> inference_pb2.MultiInferenceResponse:
        await abort_with(context, _unsupported("MultiInference"))


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus over the shared :class:`DataPlane`; reloading config is not offered."""

    def __init__(self, dataplane: DataPlane) -> None:
        self._dataplane = dataplane

    async def GetModelStatus(
        self, request: get_model_status_pb2.GetModelStatusRequest, context: Context
    ) -> get_model_status_pb2.GetModelStatusResponse:
        async with status_on_error(context):
            return model_status(self._dataplane, ServableRef.from_model_spec(request.model_spec))
        raise AssertionError("unreachable: status_on_error aborts on every failure")  # pragma: no cover

    async def HandleReloadConfigRequest(
        self, request: model_management_pb2.ReloadConfigRequest, context: Context
    ) -> model_management_pb2.ReloadConfigResponse:
        await abort_with(
            context,
            Unsupported(
                "HandleReloadConfigRequest is not supported: the gateway serves the model repository "
                "it was started with (edit the repository and restart the gateway)"
            ),
        )


def _predict_response(served: ServedVersion, outputs: list[Tensor]) -> predict_pb2.PredictResponse:
    spec = model_pb2.ModelSpec(
        name=served.model, version=wrappers_pb2.Int64Value(value=served.version), signature_name=DEFAULT_SIGNATURE
    )
    message = predict_pb2.PredictResponse(model_spec=spec)
    for tensor in outputs:
        message.outputs[tensor.name].CopyFrom(tensor_to_proto(tensor))
    return message


def _unsupported(method: str) -> Unsupported:
    return Unsupported(f"{method} is not supported by this gateway (it needs tf.Example signatures); use Predict")


def mount(mounts: Mounts, ctx: ProtocolContext) -> None:
    """PredictionService and ModelService on the gRPC port (the same port as the V2 service)."""
    prediction = PredictionServicer(ctx.dataplane, ctx.metrics)
    models = ModelServicer(ctx.dataplane)
    mounts.grpc_services.append(
        lambda server: prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(  # type: ignore[no-untyped-call]
            prediction, server
        )
    )
    mounts.grpc_services.append(
        lambda server: model_service_pb2_grpc.add_ModelServiceServicer_to_server(models, server)  # type: ignore[no-untyped-call]
    )
    mounts.grpc_service_names.extend([PREDICTION_SERVICE, MODEL_SERVICE])
