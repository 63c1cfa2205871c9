"""Backends: one module per serving runtime behind :class:`gateway.core.backend.Backend`.

:func:`default_registry` wires the built-in ones explicitly; importing this package
imports no framework.
"""

from __future__ import annotations

from gateway.core.backend import BackendRegistry


def default_registry() -> BackendRegistry:
    """The registry ``modelgate serve`` uses: every backend this build ships."""
    from gateway.backends.onnxruntime import OnnxRuntimeBackend
    from gateway.backends.tensorflow import TensorFlowBackend
    from gateway.backends.tflite import TFLiteBackend
    from gateway.backends.tfserving import TFServingBackend
    from gateway.backends.torchserve.backend import TorchServeBackend, TorchServeFactory

    registry = BackendRegistry()
    registry.register(OnnxRuntimeBackend)
    registry.register(TFLiteBackend)
    registry.register(TensorFlowBackend)
    registry.register(TFServingBackend)
    # One managed TorchServe is shared by every torchserve version; it starts only when one loads.
    registry.register(TorchServeBackend, TorchServeFactory())
    return registry
