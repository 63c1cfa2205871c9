"""Ray Serve deployment of the digits MLP on ONNX Runtime; in the Ray venv.

Run: ``python ray_onnx.py --model M --port N --temp-dir D``. A local Ray on 127.0.0.1 without the
dashboard or usage stats, one replica with ``max_ongoing_requests`` above the benchmark's highest
concurrency (the default of 5 would queue at the proxy), access log off, log level WARNING.
SIGTERM shuts Serve and Ray down.
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

import numpy as np
import onnxruntime as ort
import ray
from ray import serve
from starlette.requests import Request

LOGGING = {"enable_access_log": False, "log_level": "WARNING"}


@serve.deployment(num_replicas=1, max_ongoing_requests=128, logging_config=LOGGING)
class DigitsMlp:
    def __init__(self, path: str) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    async def __call__(self, request: Request) -> dict[str, Any]:
        spec = (await request.json())["inputs"][0]
        x = np.asarray(spec["data"], np.float32).reshape(spec["shape"])
        (y,) = self.session.run(None, {self.input: x})
        return {
            "model_name": "digits_mlp",
            "outputs": [{"name": "probs", "datatype": "FP32", "shape": list(y.shape), "data": y.ravel().tolist()}],
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--temp-dir", required=True)
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", _temp_dir=args.temp_dir,
             log_to_driver=False, logging_level="warning")  # fmt: skip
    serve.start(http_options={"host": "127.0.0.1", "port": args.port}, logging_config=LOGGING)
    serve.run(DigitsMlp.bind(args.model), name="digits", route_prefix="/v2/models/digits_mlp/infer")
    print("ready", flush=True)
    stop.wait()
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
