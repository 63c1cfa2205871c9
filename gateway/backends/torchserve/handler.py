"""The TorchServe handler the gateway packages into every .mar: tensors in, tensors out, exactly.

It runs inside TorchServe's Python worker, not in the gateway: that is why it imports
torch and TorchServe's ``ts`` package at module level (the gateway never imports this
module). Requests are frames of :mod:`frames` (packaged next to this file in
the .mar), so dtype and shape, batch dimension included, survive both ways. TorchServe
may group several HTTP requests into one call (``batch_size``); each keeps its own frame.

Failures raise ``PredictionException(message, 500)`` so TorchServe answers 500 with the
real reason instead of its generic 503 "Prediction failed".
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from ts.torch_handler.base_handler import BaseHandler
from ts.utils.util import PredictionException

try:  # inside a .mar: the codec is an extra file next to this handler
    from frames import decode, encode  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # imported from the source tree (tests, tooling)
    from gateway.backends.torchserve.frames import decode, encode


class TensorHandler(BaseHandler):  # type: ignore[misc]
    """Runs the TorchScript model on positional tensors; BaseHandler loads ``model.pt``."""

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[bytes]:
        self.context = context
        try:
            return [self._one(row) for row in data]
        except PredictionException:
            raise
        except Exception as exc:  # any model or decoding failure goes back to the gateway with its reason
            raise PredictionException(f"{type(exc).__name__}: {exc}", 500) from exc

    def _one(self, row: dict[str, Any]) -> bytes:
        body = row.get("body", row.get("data"))
        if not isinstance(body, bytes | bytearray):
            raise PredictionException("request body must be a modelgate tensor frame (application/octet-stream)", 400)
        inputs = [torch.from_numpy(np.array(a, copy=True)) for a in decode(body)]
        with torch.inference_mode():
            result = self.model(*inputs)
        return cast(bytes, encode([t.detach().cpu().numpy() for t in _as_tensors(result)]))


def _as_tensors(result: Any) -> list[torch.Tensor]:
    """A model returns one tensor, a tuple/list of them, or a dict of them (outputs in declared order;
    a dict's values in its own order, as ``modelgate convert`` names a dict model's outputs after its keys)."""
    if isinstance(result, torch.Tensor):
        return [result]
    values = list(result.values()) if isinstance(result, dict) else result
    if isinstance(values, tuple | list) and all(isinstance(t, torch.Tensor) for t in values):
        return list(values)
    raise TypeError(f"model returned {type(result).__name__}; expected a tensor, or a tuple or dict of tensors")
