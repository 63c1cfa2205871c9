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

import asyncio
import logging
import time
from typing import Any, Final, TypeAlias

import grpc
from google.protobuf import wrappers_pb2

from gateway.core.dataplane import DataPlane
from gateway.core.errors import GatewayError, Unsupported
from gateway.core.models import ServedVersion
from gateway.core.types import InferRequest, RequestedOutput
from gateway.metrics import Metrics, outcome_of
from gateway.protocols.grpc_errors import abort_internal, abort_with, status_for, status_on_error
from gateway.protocols.tfserving.json_codec import check_signature_name
from gateway.protocols.tfserving.servables import (
    ServableRef,
    check_metadata_fields,
    model_metadata,
    model_status,
    resolve,
)
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

log = logging.getLogger(__name__)

PROTOCOL: Final = "tfs_grpc"
PREDICTION_SERVICE: Final = "tensorflow.serving.PredictionService"
MODEL_SERVICE: Final = "tensorflow.serving.ModelService"

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata over the shared :class:`DataPlane`."""

    def __init__(self, dataplane: DataPlane, metrics: Metrics) -> None:
        self._dataplane = dataplane
        self._metrics = metrics
        self._inflight = metrics.inflight.labels(PROTOCOL)

    async def Predict(self, request: predict_pb2.PredictRequest, context: Context) -> predict_pb2.PredictResponse:
        started = time.perf_counter()
        ref = ServableRef.from_model_spec(request.model_spec)
        version = ""
        self._inflight.inc()
        try:
            check_signature_name(request.model_spec.signature_name)
            served = resolve(self._dataplane.manager, ref)
            version = str(served.version)
            message = await self._predict(request, served)
        except GatewayError as error:
            self._observe(ref.name, version, status_for(error), error.is_client_error, started)
            await abort_with(context, error)
        except asyncio.CancelledError:  # the client went away or its deadline passed
            self._observe(ref.name, version, grpc.StatusCode.CANCELLED, True, started)
            raise
        except Exception:
            log.exception("unexpected error in TF Serving Predict for model %r", ref.name)
            self._observe(ref.name, version, grpc.StatusCode.INTERNAL, False, started)
            await abort_internal(context)
        finally:
            self._inflight.dec()
        self._observe(ref.name, version, grpc.StatusCode.OK, False, started)
        return message

    async def _predict(self, request: predict_pb2.PredictRequest, served: ServedVersion) -> predict_pb2.PredictResponse:
        model, version = served.model, str(served.version)
        inputs = [tensor_from_proto(name, proto) for name, proto in request.inputs.items()]
        outputs = [RequestedOutput(name) for name in request.output_filter] or None
        result = await self._dataplane.infer_version(
            served, InferRequest(model, inputs, model_version=version, outputs=outputs)
        )
        spec = model_pb2.ModelSpec(
            name=model, version=wrappers_pb2.Int64Value(value=served.version), signature_name=DEFAULT_SIGNATURE
        )
        message = predict_pb2.PredictResponse(model_spec=spec)
        for tensor in result.outputs:
            message.outputs[tensor.name].CopyFrom(tensor_to_proto(tensor))
        return message

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

    def _observe(self, model: str, version: str, code: grpc.StatusCode, client_error: bool, started: float) -> None:
        ok = code == grpc.StatusCode.OK
        outcome = outcome_of(client_error and not ok, not ok and not client_error)
        self._metrics.observe_request(model, version, PROTOCOL, code.name, outcome, time.perf_counter() - started)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus over the shared :class:`DataPlane`; reloading config is not offered."""

    def __init__(self, dataplane: DataPlane) -> None:
        self._dataplane = dataplane

    async def GetModelStatus(
        self, request: get_model_status_pb2.GetModelStatusRequest, context: Context
    ) -> get_model_status_pb2.GetModelStatusResponse:
        async with status_on_error(context):
            return model_status(self._dataplane.manager, ServableRef.from_model_spec(request.model_spec))
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


def _unsupported(method: str) -> Unsupported:
    return Unsupported(f"{method} is not supported by this gateway (it needs tf.Example signatures); use Predict")


def add_tfs_grpc_services(server: grpc.aio.Server, dataplane: DataPlane, metrics: Metrics) -> None:
    """Register PredictionService and ModelService on ``server`` (the same port as the V2 service)."""
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(  # type: ignore[no-untyped-call]
        PredictionServicer(dataplane, metrics), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(  # type: ignore[no-untyped-call]
        ModelServicer(dataplane), server
    )
