"""Run tritonclient's repository calls against a gateway (a separate process: tritonclient's
generated protobuf modules and the gateway's share the ``inference`` package name and cannot
be imported into one process). Prints one line per check; exits non-zero on any failure."""

from __future__ import annotations

import json
import sys

import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def main(http_port: int, grpc_port: int, token: str) -> int:
    headers = {"authorization": f"Bearer {token}"}
    result: dict[str, object] = {}
    http = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
    rpc = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    result["http_index"] = http.get_model_repository_index(headers=headers)
    http.unload_model("digits_mlp", headers=headers)
    result["http_ready_after_unload"] = http.is_model_ready("digits_mlp")
    http.load_model("digits_mlp", headers=headers)
    result["http_ready_after_load"] = http.is_model_ready("digits_mlp")
    index = rpc.get_model_repository_index(headers=headers, as_json=True)
    result["grpc_index"] = index.get("models", [])
    rpc.unload_model("digits_mlp", headers=headers)
    result["grpc_ready_after_unload"] = rpc.is_model_ready("digits_mlp")
    rpc.load_model("digits_mlp", headers=headers)
    result["grpc_ready_after_load"] = rpc.is_model_ready("digits_mlp")
    for name, call in [("http_no_token", lambda: http.load_model("digits_mlp")),
                       ("grpc_no_token", lambda: rpc.load_model("digits_mlp")),
                       ("grpc_missing_model", lambda: rpc.load_model("no_such_model", headers=headers)),
                       ("http_upload", lambda: http.load_model("digits_mlp", headers=headers,
                                                               files={"file:1/model.onnx": b"x"}))]:  # fmt: skip
        try:
            call()
            result[name] = "accepted"
        except InferenceServerException as exc:
            result[name] = f"{exc.status()}: {exc.message()}"
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
