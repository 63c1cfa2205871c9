"""MLServer custom runtime: the digits MLP on ONNX Runtime (runs in the MLServer venv, loaded by ``mlserver start``).

ONNX Runtime runs in the request's coroutine (one thread, no executor hop), as MLServer's own
lightweight runtimes do; ``parallel_workers`` is 0 in settings.json (MLServer's advice for cheap models).
"""

from __future__ import annotations

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxModel(MLModel):
    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        uri = self.settings.parameters.uri if self.settings.parameters else None
        self._session = ort.InferenceSession(uri, options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])
        (y,) = self._session.run(None, {self._input: x})
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("probs", y)])
