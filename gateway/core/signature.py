"""Merge a model's declared tensors (config.yaml) with what its artifact reports.

Backends that can introspect their artifact (ONNX, TFLite, SavedModel) call
:func:`merge_signature`; a config that contradicts the artifact is a load error.
"""

from __future__ import annotations

from gateway.core.config import ModelConfig, TensorConfig
from gateway.core.errors import ConfigError
from gateway.core.types import Signature, TensorSpec


def merge_signature(model: str, config: ModelConfig, discovered: Signature) -> Signature:
    """The config's tensors if given (checked against the artifact), else the artifact's."""
    return Signature(
        inputs=_merge(model, "inputs", config.inputs, discovered.inputs),
        outputs=_merge(model, "outputs", config.outputs, discovered.outputs),
    )


def declared_signature(model: str, config: ModelConfig) -> Signature:
    """For backends that cannot introspect (remote servers): the config must declare tensors."""
    if not config.inputs or not config.outputs:
        raise ConfigError(f"model {model!r}: backend {config.backend!r} needs inputs and outputs in config.yaml")
    return Signature(
        inputs=[_spec(t) for t in config.inputs],
        outputs=[_spec(t) for t in config.outputs],
    )


def _spec(t: TensorConfig) -> TensorSpec:
    return TensorSpec(t.name, t.datatype, tuple(t.shape))


def _merge(model: str, kind: str, declared: list[TensorConfig] | None, found: list[TensorSpec]) -> list[TensorSpec]:
    if declared is None:
        return found
    by_name = {t.name: t for t in found}
    merged = []
    for tensor in declared:
        actual = by_name.get(tensor.name)
        if actual is None:
            raise ConfigError(
                f"model {model!r}: config {kind} names {tensor.name!r} but the artifact has {sorted(by_name)}"
            )
        if actual.datatype != tensor.datatype:
            raise ConfigError(
                f"model {model!r}: config {kind} {tensor.name!r} says {tensor.datatype}, "
                f"artifact says {actual.datatype}"
            )
        merged.append(TensorSpec(tensor.name, tensor.datatype, _merge_shape(model, tensor, actual.shape)))
    if kind == "inputs" and len(declared) != len(found):
        missing = sorted(set(by_name) - {t.name for t in declared})
        raise ConfigError(f"model {model!r}: config inputs omit artifact inputs {missing}")
    return merged


def _merge_shape(model: str, tensor: TensorConfig, actual: tuple[int, ...]) -> tuple[int, ...]:
    if len(tensor.shape) != len(actual):
        raise ConfigError(
            f"model {model!r}: config shape of {tensor.name!r} is {tensor.shape}, "
            f"artifact rank is {len(actual)} {list(actual)}"
        )
    for mine, theirs in zip(tensor.shape, actual, strict=True):
        if theirs != -1 and mine != theirs:
            raise ConfigError(
                f"model {model!r}: config shape of {tensor.name!r} is {tensor.shape}, artifact says {list(actual)}"
            )
    return tuple(tensor.shape)
