"""KServe Python ModelServer with the digits MLP on ONNX Runtime, V2 REST (and V2 gRPC); in the KServe venv.

Run: ``python kserve_onnx.py --model M --http-port N --grpc-port G``. One worker process, latency
logging, the access log and the docs URL off, ONNX Runtime called in the request's coroutine.

KServe 0.21 has no bind-address option: its REST server hard-codes ``0.0.0.0`` and its gRPC server
``[::]``. The benchmark keeps every server on loopback, so :func:`loopback_only` wraps the two
calls that bind (uvicorn's ``Config`` and grpc.aio's ``add_insecure_port``) before KServe starts.
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

import grpc.aio._server
import kserve
import onnxruntime as ort
import uvicorn
from kserve import InferOutput, InferRequest, InferResponse


class OnnxModel(kserve.Model):  # type: ignore[misc]
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.load()

    def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.ready = True
        return True

    async def predict(self, payload: InferRequest, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> InferResponse:  # fmt: skip
        x = payload.inputs[0].as_numpy()
        (y,) = self.session.run(None, {self.input: x})
        out = InferOutput(name="probs", shape=list(y.shape), datatype="FP32")
        out.set_data_from_numpy(y, binary_data=False)
        return InferResponse(model_name=self.name, infer_outputs=[out], response_id=payload.id or "")


def loopback_only() -> None:
    """Make KServe's REST and gRPC servers bind 127.0.0.1 only, with uvicorn's access log off."""
    config_init = uvicorn.Config.__init__

    @functools.wraps(config_init)
    def config(self: Any, *args: Any, **kwargs: Any) -> None:
        config_init(self, *args, **{**kwargs, "host": "127.0.0.1", "access_log": False})

    add_port = grpc.aio._server.Server.add_insecure_port

    @functools.wraps(add_port)
    def insecure_port(self: Any, address: str) -> int:
        return add_port(self, address.replace("[::]", "127.0.0.1"))

    uvicorn.Config.__init__ = config  # type: ignore[method-assign]
    grpc.aio._server.Server.add_insecure_port = insecure_port  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    args = parser.parse_args()
    loopback_only()
    server: Any = kserve.ModelServer(
        http_port=args.http_port, grpc_port=args.grpc_port, workers=1, enable_docs_url=False,
        enable_latency_logging=False, access_log_format=None,
    )  # fmt: skip
    server.start([OnnxModel("digits_mlp", args.model)])


if __name__ == "__main__":
    main()
