"""Steps (run in subprocesses by the safety tests): real small models, and loading with the raw framework."""

from __future__ import annotations

from typing import Any


def tiny_torch(pt2: str, pt: str) -> dict[str, Any]:
    """A tiny Linear model as .pt2 (torch.export) and TorchScript (.pt)."""
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Softmax(dim=1)).eval()
    example = (torch.rand(2, 4),)
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.export.save(torch.export.export(model, example, dynamic_shapes=({0: batch},)), pt2)
    torch.jit.save(torch.jit.trace(model, example), pt)  # type: ignore[no-untyped-call]
    return {}


def keras_lambda(path: str, canary: str) -> dict[str, Any]:
    """A Keras model with a Lambda layer whose function would create ``canary`` when it runs."""
    import keras

    def marker(x: Any) -> Any:
        with open(canary, "w", encoding="utf-8") as handle:
            handle.write("the Lambda ran")
        return x

    inputs = keras.Input((4,), name="x")
    outputs = keras.layers.Dense(2, name="probs")(keras.layers.Lambda(marker, name="sneaky")(inputs))
    keras.Model(inputs, outputs).save(path)
    return {}


def raw_torch_export_load(path: str) -> dict[str, Any]:
    """Load with torch.export.load directly (no safety check): the positive control for the crafted .pt2."""
    import torch

    try:
        torch.export.load(path)
    except Exception as exc:
        return {"error": type(exc).__name__}
    return {}
