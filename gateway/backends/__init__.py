"""Backends: one module per serving runtime behind :class:`gateway.core.backend.Backend`.

:func:`default_registry` wires the built-in ones explicitly; importing this package
imports no framework.
"""

from __future__ import annotations

from gateway.core.backend import BackendRegistry


def default_registry() -> BackendRegistry:
    """The registry ``modelgate serve`` uses: every backend this build ships."""
    from gateway.backends.onnxruntime import OnnxRuntimeBackend

    registry = BackendRegistry()
    registry.register(OnnxRuntimeBackend.name, OnnxRuntimeBackend)
    return registry
