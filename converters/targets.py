"""The catalogue of conversion targets: what each one is, how it is built, who serves it.

Every target is built by one step (``converters.<src>2<dst>:convert``) from either the
source model or another target's artifact (``requires``): TFLite comes from a SavedModel,
and a PyTorch SavedModel comes from the ONNX export through onnx2tf. Intermediate
targets are built even when not requested, and only requested ones are published.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from converters.errors import BadInput


@dataclass(frozen=True)
class Recipe:
    """How one source family produces a target: the step and what it consumes."""

    step: str
    #: Name of the target whose artifact is this step's input; None means the source model.
    requires: str | None = None
    #: Source kinds of the family that cannot use this recipe (e.g. TorchScript -> .pt2).
    excluded_kinds: frozenset[str] = frozenset()
    #: The step imports onnx2tf, which lives outside the venv (see :func:`converters.isolation.onnx2tf_path`).
    uses_onnx2tf: bool = False
    #: For a quantized target: the fp32 target built beside it, so the report can say how much it shrank.
    baseline: str | None = None


@dataclass(frozen=True)
class Target:
    """One artifact kind the converters can produce."""

    name: str
    format: str
    precision: str
    artifact: str
    #: Gateway backend that serves it; None when no backend can (then it is not recommended).
    backend: str | None
    platform: str
    recipes: dict[str, Recipe] = field(default_factory=dict)


_TFLITE = Recipe("converters.savedmodel2tflite:convert", requires="savedmodel")
_TFLITE_QUANTIZED = Recipe("converters.savedmodel2tflite:convert", requires="savedmodel", baseline="tflite")

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "torchscript",
            "torchscript",
            "fp32",
            "model.pt",
            "torchserve",
            "pytorch_torchscript",
            {"torch": Recipe("converters.torch2torchscript:convert")},
        ),
        Target(
            "pt2",
            "pt2",
            "fp32",
            "model.pt2",
            None,
            "pytorch_exportedprogram",
            {"torch": Recipe("converters.torch2exportedprogram:convert", excluded_kinds=frozenset({"torchscript"}))},
        ),
        Target(
            "onnx",
            "onnx",
            "fp32",
            "model.onnx",
            "onnxruntime",
            "onnxruntime_onnx",
            {"keras": Recipe("converters.keras2onnx:convert"), "torch": Recipe("converters.torch2onnx:convert")},
        ),
        Target(
            "savedmodel",
            "savedmodel",
            "fp32",
            "model.savedmodel",
            "tensorflow",
            "tensorflow_savedmodel",
            {
                "keras": Recipe("converters.keras2savedmodel:convert"),
                "torch": Recipe("converters.onnx2savedmodel:convert", requires="onnx", uses_onnx2tf=True),
            },
        ),
        Target(
            "tflite",
            "tflite",
            "fp32",
            "model.tflite",
            "tflite",
            "tensorflow_lite",
            {"keras": _TFLITE, "torch": _TFLITE},
        ),
        Target(
            "tflite_fp16",
            "tflite",
            "fp16",
            "model.tflite",
            "tflite",
            "tensorflow_lite",
            {"keras": _TFLITE_QUANTIZED, "torch": _TFLITE_QUANTIZED},
        ),
        Target(
            "tflite_int8",
            "tflite",
            "int8",
            "model.tflite",
            "tflite",
            "tensorflow_lite",
            {"keras": _TFLITE_QUANTIZED, "torch": _TFLITE_QUANTIZED},
        ),
    )
}

#: Family of each source kind: the recipes are per family.
FAMILIES = {"keras": "keras", "torchscript": "torch", "torch_export": "torch"}


def available_targets(kind: str) -> list[str]:
    """Targets a source kind can produce, in build order."""
    family = FAMILIES[kind]
    return [t.name for t in TARGETS.values() if family in t.recipes and kind not in t.recipes[family].excluded_kinds]


def parse_targets(text: str, kind: str) -> list[str]:
    """``onnx,tflite`` or ``all`` -> target names, or :class:`BadInput` naming the impossible ones."""
    possible = available_targets(kind)
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise BadInput("--to: give at least one target, e.g. --to onnx,tflite (or --to all)")
    if names == ["all"]:
        return [n for n in possible if n != "pt2"]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        raise BadInput(f"--to: unknown target(s) {unknown}; known targets: {', '.join(TARGETS)}")
    impossible = [n for n in names if n not in possible]
    if impossible:
        raise BadInput(
            f"--to: a {kind} model cannot be converted to {', '.join(impossible)}; "
            f"it can produce: {', '.join(possible)}"
        )
    return sorted(dict.fromkeys(names), key=list(TARGETS).index)


def recipe(target: str, kind: str) -> Recipe:
    """The recipe building ``target`` from a source of ``kind``."""
    return TARGETS[target].recipes[FAMILIES[kind]]


def build_order(requested: list[str], kind: str) -> list[str]:
    """Requested targets plus the intermediates (and fp32 baselines) they need, in the order they can be built."""
    needed: set[str] = set()
    wanted = list(requested) + [b for n in requested if (b := recipe(n, kind).baseline) is not None]
    for name in wanted:
        current: str | None = name
        while current is not None and current not in needed:
            needed.add(current)
            current = recipe(current, kind).requires
    return [n for n in TARGETS if n in needed]
