"""The OpenAPI 3.1 description of the V2 REST surface, served at ``/openapi.json``.

Written by hand from the Open Inference Protocol's REST specification so that it
describes exactly what this gateway answers, error statuses included.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from gateway import __version__
from gateway.core.config import MODEL_NAME_PATTERN, VERSION_PATTERN

_ERROR = {"$ref": "#/components/responses/Error"}
_DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
              "FP16", "FP32", "FP64", "BYTES"]  # fmt: skip


_PATTERNS = {"model": MODEL_NAME_PATTERN.pattern, "version": VERSION_PATTERN.pattern}
#: The binary tensor data extension's header: required with an application/octet-stream body.
_HEADER_LENGTH = {
    "name": "Inference-Header-Content-Length", "in": "header", "required": False,
    "description": "Length of the JSON header at the start of the body (binary tensor data extension); "
                   "required with an application/octet-stream body, 0 for the raw data of a single-input model.",
    "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
}  # fmt: skip


def _path_params(*names: str) -> list[dict[str, Any]]:
    return [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string", "pattern": _PATTERNS[n]}}
        for n in names
    ]


def _get(summary: str, schema: str, params: list[dict[str, Any]], errors: tuple[int, ...]) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": _json(schema)}
    responses.update({str(code): _ERROR for code in errors})
    return {"get": {"summary": summary, "parameters": params, "responses": responses}}


def _json(schema: str) -> dict[str, Any]:
    return {
        "description": "OK",
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _infer(params: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "post": {
            "summary": "Run inference (JSON tensors, or the binary tensor data extension)",
            "description": "An application/json body is an InferRequest. An application/octet-stream body needs "
            "the Inference-Header-Content-Length header: that many bytes of InferRequest JSON, then the raw tensors.",
            "parameters": [*params, _HEADER_LENGTH],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}},
                    "application/octet-stream": {
                        "schema": {"type": "string", "format": "binary"},
                        "description": "JSON header of Inference-Header-Content-Length bytes, then raw tensors.",
                    },
                },
            },
            "responses": {
                "200": {
                    "description": "OK (application/octet-stream when binary outputs were asked for)",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/InferResponse"}},
                        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    },
                },
                **{str(c): _ERROR for c in (400, 404, 413, 429, 503, 504)},
            },
        }
    }


def _schemas() -> dict[str, Any]:
    meta_properties: dict[str, Any] = {
        "name": {"type": "string"},
        "datatype": {"type": "string", "enum": _DATATYPES},
        "shape": {"type": "array", "items": {"type": "integer"}},
    }
    required = ["name", "datatype", "shape"]
    tensor_meta = {"type": "object", "required": required, "properties": meta_properties}
    tensor_properties = {**meta_properties, "parameters": {"type": "object"}, "data": {"type": "array"}}
    tensor = {"type": "object", "required": required, "properties": tensor_properties}
    # A request tensor: a non-empty name, a concrete shape (no -1), and its data in JSON.
    input_properties = {
        **tensor_properties,
        "name": {"type": "string", "minLength": 1},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}},
    }
    input_tensor = {"type": "object", "required": [*required, "data"], "properties": input_properties}
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        "Live": {"type": "object", "properties": {"live": {"type": "boolean"}}},
        "Ready": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
        "ModelReady": {"type": "object", "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}},
        "ServerMetadata": {"type": "object", "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                                                            "extensions": {"type": "array",
                                                                           "items": {"type": "string"}}}},
        "TensorMetadata": tensor_meta,
        "ModelMetadata": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"},
                "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/TensorMetadata"}},
                "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/TensorMetadata"}},
            },
        },
        "Tensor": tensor,
        "InputTensor": input_tensor,
        "InferRequest": {
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "id": {"type": "string"},
                "parameters": {"type": "object"},
                "inputs": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/InputTensor"}},
                "outputs": {"type": "array", "items": {"type": "object", "required": ["name"],
                                                       "properties": {"name": {"type": "string", "minLength": 1},
                                                                      "parameters": {"type": "object"}}}},
            },
        },
        "InferResponse": {
            "type": "object",
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "id": {"type": "string"},
                "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/Tensor"}},
            },
        },
        "RepositoryIndex": {"type": "array", "items": {"type": "object"}},
    }  # fmt: skip


@cache
def openapi_document() -> dict[str, Any]:
    model = _path_params("model")
    versioned = _path_params("model", "version")
    return {
        "openapi": "3.1.0",
        "info": {"title": "modelgate V2 inference API", "version": __version__},
        "paths": {
            "/v2": _get("Server metadata", "ServerMetadata", [], ()),
            "/v2/health/live": _get("Liveness", "Live", [], ()),
            "/v2/health/ready": _get("Readiness (503 while loading or draining)", "Ready", [], (503,)),
            "/v2/models/{model}": _get("Model metadata", "ModelMetadata", model, (400, 404, 503)),
            "/v2/models/{model}/versions/{version}": _get("Model version metadata", "ModelMetadata", versioned,
                                                          (400, 404, 503)),
            "/v2/models/{model}/ready": _get("Model readiness", "ModelReady", model, (400, 404, 503)),
            "/v2/models/{model}/versions/{version}/ready": _get("Model version readiness", "ModelReady", versioned,
                                                                (400, 404, 503)),
            "/v2/models/{model}/infer": _infer(model),
            "/v2/models/{model}/versions/{version}/infer": _infer(versioned),
            "/v2/repository/index": {"post": {
                "summary": "Repository index (an empty body, or {\"ready\": true} for ready versions only)",
                "requestBody": {"required": False, "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"ready": {"type": "boolean"}}}}}},
                "responses": {"200": _json("RepositoryIndex"), "400": _ERROR, "413": _ERROR}}},
        },
        "components": {
            "schemas": _schemas(),
            "responses": {"Error": {"description": "Error", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}}}}},
        },
    }  # fmt: skip
