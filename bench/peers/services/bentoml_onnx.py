"""BentoML 1.4 service with the digits MLP on ONNX Runtime; in the BentoML venv.

Run: ``bentoml serve bentoml_onnx:DigitsMlp --host 127.0.0.1 --port N`` with ``PEER_MODEL`` set.
It takes the same V2 JSON body as the others (the ``inputs`` field maps to the API's argument).
One worker (the load generator shares the 2 cores), access log off, ONNX Runtime in the coroutine.
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
import numpy as np
import onnxruntime as ort


@bentoml.service(workers=1, logging={"access": {"enabled": False}}, traffic={"timeout": 30})
class DigitsMlp:
    def __init__(self) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(os.environ["PEER_MODEL"], options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    @bentoml.api(route="/v2/models/digits_mlp/infer")
    async def infer(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        spec = inputs[0]
        x = np.asarray(spec["data"], np.float32).reshape(spec["shape"])
        (y,) = self.session.run(None, {self.input: x})
        return {
            "model_name": "digits_mlp",
            "outputs": [{"name": "probs", "datatype": "FP32", "shape": list(y.shape), "data": y.ravel().tolist()}],
        }
