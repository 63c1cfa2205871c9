"""TorchServe handler for the TorchScript digits MLP taking the same V2 JSON body as the other peers.

Packaged into the .mar by the benchmark; runs in TorchServe's Python worker (one torch thread).
"""

from __future__ import annotations

import json
from typing import Any

import torch


class _Handler:
    def __init__(self) -> None:
        self.model: Any = None

    def initialize(self, context: Any) -> None:
        torch.set_num_threads(1)
        self.model = torch.jit.load(f"{context.system_properties['model_dir']}/model.pt").eval()

    def handle(self, data: list[dict[str, Any]]) -> list[dict[str, Any]]:
        answers = []
        for row in data:
            doc = row.get("body") or row.get("data")
            if isinstance(doc, (bytes, bytearray)):
                doc = json.loads(doc)
            spec = doc["inputs"][0]
            x = torch.tensor(spec["data"], dtype=torch.float32).reshape(spec["shape"])
            with torch.inference_mode():
                y = self.model(x)
            answers.append({
                "model_name": "digits_mlp",
                "outputs": [{"name": "probs", "datatype": "FP32", "shape": list(y.shape),
                             "data": y.reshape(-1).tolist()}],
            })  # fmt: skip
        return answers


_service = _Handler()


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[dict[str, Any]] | None:
    if _service.model is None:
        _service.initialize(context)
    return None if data is None else _service.handle(data)
