"""Contract tests of ``backend: tfserving`` against a REAL TF Serving (tensorflow_model_server).

The binary cannot be installed on the machine this was written on, so these tests run only
when you point them at one; otherwise they are reported as SKIPPED (never as passed):

    MODELGATE_TFSERVING_TEST_URL=http://127.0.0.1:8501   # REST base URL (required)
    MODELGATE_TFSERVING_TEST_GRPC=127.0.0.1:8500         # gRPC address (default: URL host, port 8500)
    MODELGATE_TFSERVING_TEST_MODEL=digits                # a model it serves (default: digits)

Any model with numeric inputs works: the tests read its signature from TF Serving, send
zeros of that signature, and check both protocols agree with each other and with the
declared datatypes, plus the error mapping for an unknown model and signature.
Example with the test model: ``python -c "from pathlib import Path; from
tests.backends.keras_models import build_keras_artifacts as b; b(Path('/srv/x'))"``, move
``/srv/x/model.savedmodel`` to ``/models/digits/1``, then
``tensorflow_model_server --port=8500 --rest_api_port=8501 --model_name=digits --model_base_path=/models/digits``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest

from gateway.backends.tfserving import TFServingBackend
from gateway.core.backend import ModelVersionSource
from gateway.core.codec.datatypes import numpy_dtype
from gateway.core.config import ModelConfig
from gateway.core.errors import ConfigError, ModelNotReady

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

URL = os.environ.get("MODELGATE_TFSERVING_TEST_URL", "")
MODEL = os.environ.get("MODELGATE_TFSERVING_TEST_MODEL", "digits")


def grpc_address() -> str:
    explicit = os.environ.get("MODELGATE_TFSERVING_TEST_GRPC")
    return explicit or f"{urlparse(URL).hostname}:8500"


@pytest.fixture(autouse=True)
def _needs_real_tf_serving() -> None:
    if not URL:
        pytest.skip("no real TF Serving: set MODELGATE_TFSERVING_TEST_URL (see this module's docstring)")


def backend(tmp_path: Path, protocol: str, **extra: Any) -> TFServingBackend:
    endpoint = {"address": grpc_address()} if protocol == "grpc" else {"url": URL}
    params = {"protocol": protocol, "model_name": MODEL, **endpoint, **extra}
    config = ModelConfig.model_validate({"backend": "tfserving", "parameters": params})
    return TFServingBackend(ModelVersionSource(MODEL, 1, config, tmp_path))


@pytest.fixture
async def both(tmp_path: Path) -> AsyncIterator[dict[str, TFServingBackend]]:
    loaded = {p: backend(tmp_path, p) for p in ("grpc", "rest")}
    for b in loaded.values():
        await b.load()
    yield loaded
    for b in loaded.values():
        await b.unload()


async def test_metadata_status_and_predict_agree_across_protocols(both: dict[str, TFServingBackend]) -> None:
    grpc_backend, rest_backend = both["grpc"], both["rest"]
    assert grpc_backend.signature == rest_backend.signature and grpc_backend.signature.inputs
    assert await grpc_backend.health() and await rest_backend.health()
    inputs = {
        spec.name: np.zeros([1 if d == -1 else d for d in spec.shape], numpy_dtype(spec.datatype))
        for spec in grpc_backend.signature.inputs
    }
    outputs = [spec.name for spec in grpc_backend.signature.outputs]
    via_grpc = await grpc_backend.infer(inputs, outputs)
    via_rest = await rest_backend.infer(inputs, outputs)
    for spec in grpc_backend.signature.outputs:
        assert via_grpc[spec.name].dtype == numpy_dtype(spec.datatype)
        np.testing.assert_allclose(via_grpc[spec.name], via_rest[spec.name], atol=1e-5)


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
async def test_unknown_model_and_signature(tmp_path: Path, protocol: str) -> None:
    unknown_signature = backend(tmp_path, protocol, signature_name="no_such_signature")
    with pytest.raises(ConfigError, match="no_such_signature"):
        await unknown_signature.load()
    declared = {
        "backend": "tfserving",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}],
        "parameters": {"protocol": protocol, "model_name": "no_such_model_here",
                       **({"address": grpc_address()} if protocol == "grpc" else {"url": URL})},
    }  # fmt: skip
    missing = TFServingBackend(ModelVersionSource("m", 1, ModelConfig.model_validate(declared), tmp_path))
    await missing.load()
    try:
        assert not await missing.health()
        with pytest.raises(ModelNotReady):
            await missing.infer({"x": np.zeros((1, 1), np.float32)}, ["y"])
    finally:
        await missing.unload()
