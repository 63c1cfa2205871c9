"""The thinnest servers for the same ONNX model: the floors the gateway is measured against.

- ``rest``: bare ASGI (no framework) + orjson + ONNX Runtime, run inline on the event loop,
  accepting the same V2 JSON and binary-extension requests as the gateway (no validation).
- ``grpc``: a bare ``grpc.aio`` generic handler for ``inference.GRPCInferenceService/ModelInfer``
  that reads ``raw_input_contents`` and answers ``raw_output_contents``.

Run: ``python -m bench.floors rest|grpc --model model.onnx --port N`` (``rest --workers 2``: uvicorn's
own multi-process mode, the floor's scaling over cores; ``rest --server modelgate``: the same ASGI app on
the gateway's own HTTP server instead of uvicorn, to price the HTTP server alone: ``bench.http_servers``).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson


def _session(path: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def rest_app(session: ort.InferenceSession) -> Any:
    input_name = session.get_inputs()[0].name

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        header_length = next((int(v) for k, v in scope["headers"] if k == b"inference-header-content-length"), None)
        if header_length is None:
            doc = orjson.loads(body)
            spec = doc["inputs"][0]
            x = np.asarray(spec["data"], np.float32).reshape(spec["shape"])
            (y,) = session.run(None, {input_name: x})
            out = orjson.dumps(
                {
                    "model_name": "m",
                    "outputs": [{"name": "probs", "datatype": "FP32", "shape": list(y.shape), "data": y.reshape(-1)}],
                },
                option=orjson.OPT_SERIALIZE_NUMPY,
            )
            headers = [(b"content-type", b"application/json")]
        else:
            doc = orjson.loads(body[:header_length])
            spec = doc["inputs"][0]
            x = np.frombuffer(body, np.float32, offset=header_length).reshape(spec["shape"])
            (y,) = session.run(None, {input_name: x})
            raw = y.tobytes()
            head = orjson.dumps(
                {
                    "model_name": "m",
                    "outputs": [
                        {
                            "name": "probs",
                            "datatype": "FP32",
                            "shape": list(y.shape),
                            "parameters": {"binary_data_size": len(raw)},
                        }
                    ],
                }
            )
            out = head + raw
            headers = [
                (b"content-type", b"application/octet-stream"),
                (b"inference-header-content-length", str(len(head)).encode()),
            ]
        headers.append((b"content-length", str(len(out)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": out})

    return app


async def serve_grpc(session: ort.InferenceSession, port: int) -> None:
    import grpc

    from gateway.protos import open_inference_grpc_pb2 as pb

    input_name = session.get_inputs()[0].name

    async def model_infer(request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        spec = request.inputs[0]
        x = np.frombuffer(request.raw_input_contents[0], np.float32).reshape(tuple(spec.shape))
        (y,) = session.run(None, {input_name: x})
        response = pb.ModelInferResponse(model_name=request.model_name, raw_output_contents=[y.tobytes()])
        response.outputs.add(name="probs", datatype="FP32", shape=list(y.shape))
        return response

    handler = grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService",
        {"ModelInfer": grpc.unary_unary_rpc_method_handler(
            model_infer, request_deserializer=pb.ModelInferRequest.FromString,
            response_serializer=pb.ModelInferResponse.SerializeToString)},
    )  # fmt: skip
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def serve_rest_on_gateway_server(app: Any, port: int) -> None:
    """``app`` on the gateway's own HTTP/1.1 server (default limits), as ``modelgate serve`` runs its REST port."""
    import socket

    from gateway.protocols.http_guard import ConnectionLimits
    from gateway.protocols.http_server import HttpServer

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    await HttpServer(app, ConnectionLimits(), keep_alive=30.0, grace=1.0).serve([sock])


def rest_app_from_env() -> Any:
    """For uvicorn's ``--workers``, which imports the app in each process: the model from ``FLOOR_MODEL``."""
    import os

    return rest_app(_session(os.environ["FLOOR_MODEL"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["rest", "grpc"])
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1, help="rest only: uvicorn worker processes")
    parser.add_argument("--server", choices=["uvicorn", "modelgate"], default="uvicorn",
                        help="rest only: the HTTP server under the ASGI app")  # fmt: skip
    args = parser.parse_args()
    import uvloop

    if args.kind == "rest" and args.workers > 1:
        import os

        import uvicorn

        os.environ["FLOOR_MODEL"] = args.model
        uvicorn.run("bench.floors:rest_app_from_env", factory=True, workers=args.workers, host="127.0.0.1",
                    port=args.port, lifespan="off", http="httptools", loop="uvloop", log_level="warning",
                    access_log=False)  # fmt: skip
        return
    session = _session(args.model)
    if args.kind == "rest" and args.server == "modelgate":
        uvloop.run(serve_rest_on_gateway_server(rest_app(session), args.port))
    elif args.kind == "rest":
        import uvicorn

        uvicorn.run(rest_app(session), host="127.0.0.1", port=args.port, lifespan="off", http="httptools",
                    loop="uvloop", log_level="warning", access_log=False)  # fmt: skip
    else:
        uvloop.run(serve_grpc(session, args.port))


if __name__ == "__main__":
    main()
