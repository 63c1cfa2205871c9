"""TorchServe backend pieces that need no TorchServe: the tensor frame, parameters, error mapping."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from gateway.backends.torchserve.backend import TorchServeFactory, status_error
from gateway.backends.torchserve.frames import CodecError, decode, encode
from gateway.core.backend import ModelVersionSource
from gateway.core.config import ModelConfig
from gateway.core.errors import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    ErrorKind,
    ModelNotReady,
    PayloadTooLarge,
)

DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32",
          "float64"]  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 3), (7, 2, 2), (0, 4), ()])
def test_frame_round_trip_keeps_dtype_shape_and_values(dtype: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    array = (rng.random(shape) * 100).astype(dtype)
    other = np.arange(5, dtype=np.int64) - 2**40
    first, second = decode(encode([array, other]))
    assert first.dtype == array.dtype and first.shape == array.shape
    np.testing.assert_array_equal(first, array)
    np.testing.assert_array_equal(second, other)


def test_frame_of_non_contiguous_array() -> None:
    array = np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2]
    (back,) = decode(encode([array]))
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"nope", "bad magic"),
        (b"MGT1\xff\x00\x00\x00[]", "runs past the end"),
        (b"MGT1\x02\x00\x00\x00{}", "must be a list"),
        (b"MGT1\x01\x00\x00\x00[", "not JSON"),
        (encode([np.ones(3, np.float32)])[:-1], "needs 12 bytes"),
        (encode([np.ones(3, np.float32)]) + b"x", "trailing bytes"),
    ],
)
def test_malformed_frames_are_named(payload: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode(payload)


def test_frame_header_entries_are_checked() -> None:
    head = b'[{"dtype": "O", "shape": [1]}]'
    with pytest.raises(CodecError, match="not numeric"):
        decode(b"MGT1" + len(head).to_bytes(4, "little") + head)
    head = b'[{"dtype": "<f4", "shape": [-1]}]'
    with pytest.raises(CodecError, match="non-negative"):
        decode(b"MGT1" + len(head).to_bytes(4, "little") + head)


def test_strings_cannot_be_framed() -> None:
    with pytest.raises(CodecError, match="numeric or bool"):
        encode([np.array([b"a"], dtype=object)])


def source(tmp_path: Path, **config: object) -> ModelVersionSource:
    base = {
        "backend": "torchserve",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
    }
    return ModelVersionSource("m", 1, ModelConfig.model_validate({**base, **config}), tmp_path / "m" / "1")


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"workers": 0}, "parameters: workers"),
        ({"bogus": 1}, "parameters: bogus"),
        ({"protocol": "grpc"}, "parameters: protocol"),
        ({"managed": True, "url": "http://127.0.0.1:1"}, "either url"),
        ({"managed": False}, "managed: false needs url"),
        ({"model_name": "x"}, "apply only with url"),
        ({"url": "https://ts:8443"}, "parameters: url"),
        ({"url": "http://ts:8080/predictions"}, "parameters: url"),
        ({"token": "abc"}, "apply only with url"),
        ({"url": "http://ts:8080", "token": "a b\r\nX-Evil: 1"}, r"parameters: token: .*printable ASCII"),
        ({"url": "http://ts:8080", "token": "abc", "token_file": "keys.json"}, "either token_file or token"),
    ],
)
def test_bad_parameters_are_config_errors_naming_the_field(
    tmp_path: Path, parameters: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        TorchServeFactory()(source(tmp_path, parameters=parameters))


@pytest.mark.anyio
async def test_bytes_tensors_are_refused_at_load(tmp_path: Path) -> None:
    backend = TorchServeFactory()(
        source(tmp_path, inputs=[{"name": "x", "datatype": "BYTES", "shape": [-1]}], parameters={"url": "http://x"})
    )
    with pytest.raises(ConfigError, match="BYTES"):
        await backend.load()


@pytest.mark.anyio
async def test_missing_torchscript_artifact_is_a_load_error(tmp_path: Path) -> None:
    backend = TorchServeFactory()(source(tmp_path))
    with pytest.raises(ConfigError, match=r"model\.pt"):
        await backend.load()


@pytest.mark.anyio
async def test_unreachable_external_torchserve_fails_load_with_unavailable(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = TorchServeFactory()(source(tmp_path, parameters={"url": f"http://127.0.0.1:{port}"}))
    with pytest.raises(BackendUnavailable, match="does not serve"):
        await backend.load()


def body(status: int, message: str) -> bytes:
    return json.dumps({"code": status, "type": "X", "message": message}).encode()


@pytest.mark.parametrize(
    ("status", "message", "error", "kind"),
    [
        (404, "Model not found: m_v1", ModelNotReady, ErrorKind.UNAVAILABLE),
        (503, "Prediction failed", BackendError, ErrorKind.INTERNAL),
        (500, "RuntimeError: shape '[-1, 5]' is invalid", BackendError, ErrorKind.INTERNAL),
        (503, 'Model "m_v1" has no worker to serve inference request.', BackendUnavailable, ErrorKind.UNAVAILABLE),
        (507, "Out of resources", BackendUnavailable, ErrorKind.UNAVAILABLE),
        (413, "request too large", PayloadTooLarge, ErrorKind.PAYLOAD_TOO_LARGE),
    ],
)
def test_torchserve_answers_map_to_gateway_errors(
    status: int, message: str, error: type[Exception], kind: ErrorKind
) -> None:
    exc = status_error("m", "m_v1", status, body(status, message))
    assert isinstance(exc, error)
    assert exc.kind is kind
    assert "'m'" in exc.message


def test_handler_message_reaches_the_client() -> None:
    exc = status_error("m", "m_v1", 500, body(500, "RuntimeError: bad reshape"))
    assert "bad reshape" in exc.message
    assert "<html>" in status_error("m", "m_v1", 502, b"<html>bad gateway</html>").message
