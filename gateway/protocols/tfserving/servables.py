"""TF Serving's view of the model repository, shared by its REST and gRPC front ends.

A TF Serving request names a servable by model name plus a version number, a version
label, or neither (the latest). This module resolves that to a served version with TF
Serving's error wording (``Servable not found for request: Latest(half)``), and builds the
status and metadata messages (``GetModelStatusResponse``, ``GetModelMetadataResponse``
with a ``SignatureDefMap``) from the core signature. The REST front end renders the same
messages as JSON, so both APIs always agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf import json_format, wrappers_pb2

from gateway.core.dataplane import DataPlane, ModelRef, VersionStatus
from gateway.core.errors import InvalidInput, ModelNotFound
from gateway.core.models import ServedVersion, VersionState, clip
from gateway.core.types import TensorSpec
from gateway.protos.tfserving.tensorflow.core.protobuf import meta_graph_pb2
from gateway.protos.tfserving.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    status_pb2,
)
from gateway.protos.tfserving.xla.tsl.protobuf import error_codes_pb2
from gateway.tensorproto import DEFAULT_SIGNATURE, TF_DTYPE, shape_proto

#: The only metadata field TF Serving (and this gateway) supports.
SIGNATURE_DEF_FIELD: Final = "signature_def"
PREDICT_METHOD: Final = "tensorflow/serving/predict"

#: Core version state -> TF Serving state; a version that failed to load is END with an error, as in TF Serving.
TF_STATE: Final[dict[VersionState, get_model_status_pb2.ModelVersionStatus.State]] = {
    VersionState.LOADING: get_model_status_pb2.ModelVersionStatus.LOADING,
    VersionState.READY: get_model_status_pb2.ModelVersionStatus.AVAILABLE,
    VersionState.UNAVAILABLE: get_model_status_pb2.ModelVersionStatus.END,
    VersionState.UNLOADED: get_model_status_pb2.ModelVersionStatus.END,
}


@dataclass(frozen=True, slots=True)
class ServableRef:
    """What a request names: a model and at most one of a version number or a label."""

    name: str
    #: As the client wrote it (REST path segment, or the gRPC Int64Value in decimal).
    version: str | None = None
    label: str | None = None

    @classmethod
    def from_model_spec(cls, spec: model_pb2.ModelSpec) -> ServableRef:
        choice = spec.WhichOneof("version_choice")
        version = str(spec.version.value) if choice == "version" else None
        label = spec.version_label if choice == "version_label" and spec.version_label else None
        return cls(spec.name, version, label)

    def model_ref(self) -> ModelRef:
        return ModelRef(self.name, self.version, self.label)

    def describe(self) -> str:
        """TF Serving's ServableRequest wording, used in its not-found messages (the name truncated)."""
        name = clip(self.name)
        if self.version is not None:
            return f"Specific({name}, {clip(self.version)})"
        return f"Latest({name})"


def resolve(dataplane: DataPlane, ref: ServableRef) -> ServedVersion:
    """The served version ``ref`` names; 404 in TF Serving's words when there is none."""
    if not ref.name:
        raise InvalidInput("Missing model name in request.")
    try:
        return dataplane.resolve(ref.model_ref())
    except ModelNotFound:
        if ref.label is not None:
            raise ModelNotFound(f"Unrecognized servable version label: {clip(ref.label)}") from None
        raise ModelNotFound(f"Servable not found for request: {ref.describe()}") from None


# -- status -------------------------------------------------------------------------------


def model_status(dataplane: DataPlane, ref: ServableRef) -> get_model_status_pb2.GetModelStatusResponse:
    """Every version's state when ``ref`` names none, else the one it names."""
    if not ref.name:
        raise InvalidInput("Missing model name in request.")
    try:
        statuses = dataplane.model_status(ref.model_ref())
    except ModelNotFound:
        if ref.version is not None:
            raise ModelNotFound(f"Could not find version {clip(ref.version)} of model {clip(ref.name)}") from None
        if ref.label is not None:
            raise ModelNotFound(f"Unrecognized servable version label: {clip(ref.label)}") from None
        raise ModelNotFound(f"Servable not found for request: {ref.describe()}") from None
    return get_model_status_pb2.GetModelStatusResponse(model_version_status=[_version_status(v) for v in statuses])


def _version_status(version: VersionStatus) -> get_model_status_pb2.ModelVersionStatus:
    failed = version.state is VersionState.UNAVAILABLE
    status = status_pb2.StatusProto(
        error_code=error_codes_pb2.UNKNOWN if failed else error_codes_pb2.OK,
        error_message=version.reason if failed else "",
    )
    return get_model_status_pb2.ModelVersionStatus(
        version=version.version, state=TF_STATE[version.state], status=status
    )


# -- metadata -----------------------------------------------------------------------------


def check_metadata_fields(fields: Sequence[str]) -> None:
    """TF Serving's rule: at least one field, and only ``signature_def``."""
    if not fields:
        raise InvalidInput("GetModelMetadataRequest must specify at least one metadata_field")
    for field in fields:
        if field != SIGNATURE_DEF_FIELD:
            raise InvalidInput(f"Metadata field {field} is not supported (only {SIGNATURE_DEF_FIELD})")


def model_metadata(
    dataplane: DataPlane, ref: ServableRef, signature_name: str = ""
) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """The served version's signature as ``serving_default`` in a SignatureDefMap."""
    served = resolve(dataplane, ref)
    metadata = dataplane.model_metadata(served)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    signatures.signature_def[DEFAULT_SIGNATURE].CopyFrom(signature_def(metadata.inputs, metadata.outputs))
    spec = model_pb2.ModelSpec(
        name=served.model, version=wrappers_pb2.Int64Value(value=served.version), signature_name=signature_name
    )
    response = get_model_metadata_pb2.GetModelMetadataResponse(model_spec=spec)
    response.metadata[SIGNATURE_DEF_FIELD].Pack(signatures)
    return response


def signature_def(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> meta_graph_pb2.SignatureDef:
    signature = meta_graph_pb2.SignatureDef(method_name=PREDICT_METHOD)
    for spec in inputs:
        signature.inputs[spec.name].CopyFrom(_tensor_info(spec))
    for spec in outputs:
        signature.outputs[spec.name].CopyFrom(_tensor_info(spec))
    return signature


def _tensor_info(spec: TensorSpec) -> meta_graph_pb2.TensorInfo:
    return meta_graph_pb2.TensorInfo(
        name=spec.name, dtype=TF_DTYPE[spec.datatype], tensor_shape=shape_proto(spec.shape)
    )


# -- JSON, the way TF Serving's REST API prints these messages -----------------------------


def message_json(message: Any) -> dict[str, Any]:
    """Proto field names, default values printed (``"error_message": ""``), int64 as strings."""
    doc: dict[str, Any] = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return doc


def metadata_json(response: get_model_metadata_pb2.GetModelMetadataResponse) -> dict[str, Any]:
    """TF Serving unpacks the ``Any`` and nests it: ``{"model_spec", "metadata": {"signature_def": {...}}}``."""
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata[SIGNATURE_DEF_FIELD].Unpack(signatures)
    return {
        "model_spec": message_json(response.model_spec),
        "metadata": {SIGNATURE_DEF_FIELD: message_json(signatures)},
    }
