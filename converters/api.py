"""Python API: convert a Keras model object or a PyTorch ``nn.Module`` without writing files first.

Both functions save the model to a temporary source file (``.keras``, or a ``.pt2`` made
with ``torch.export``) and run the same pipeline as ``modelgate convert``, so every
conversion still happens in its own subprocess. They return the
:class:`~converters.report.ConversionReport` (``exit_code`` 0/1) and raise
:class:`~converters.errors.BadInput` for what the CLI reports with exit code 2.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from converters.pipeline import ConversionRequest, Log, run
from converters.report import ConversionReport
from converters.spec import parse_input_spec
from converters.verify import DEFAULT_TOLERANCES, Tolerance
from gateway.core.types import TensorSpec


def _save_samples(folder: Path, samples: np.ndarray | Mapping[str, np.ndarray] | None) -> Path | None:
    if samples is None:
        return None
    if isinstance(samples, np.ndarray):
        np.save(folder / "samples.npy", samples)
        return folder / "samples.npy"
    arrays: dict[str, Any] = dict(samples)
    np.savez(folder / "samples.npz", **arrays)
    return folder / "samples.npz"


def _save_labels(folder: Path, labels: np.ndarray | None) -> Path | None:
    if labels is None:
        return None
    np.save(folder / "labels.npy", labels)
    return folder / "labels.npy"


def convert_keras_model(
    model: Any,
    name: str,
    targets: str,
    repository: Path,
    *,
    samples: np.ndarray | Mapping[str, np.ndarray] | None = None,
    labels: np.ndarray | None = None,
    tolerances: Mapping[str, Tolerance] | None = None,
    log: Log | None = None,
) -> ConversionReport:
    """Convert a Keras model object (it is saved as ``.keras`` first, so it must be serialisable)."""
    with tempfile.TemporaryDirectory(prefix="modelgate-api-") as scratch:
        folder = Path(scratch)
        source = folder / f"{name}.keras"
        model.save(source)
        request = ConversionRequest(
            source=source,
            name=name,
            targets=targets,
            repository=repository,
            samples=_save_samples(folder, samples),
            labels=_save_labels(folder, labels),
            tolerances={**DEFAULT_TOLERANCES, **(tolerances or {})},
        )
        return run(request, log) if log else run(request)


def convert_torch_module(
    module: Any,
    input_spec: list[TensorSpec] | list[str],
    name: str,
    targets: str,
    repository: Path,
    *,
    output_names: list[str] | None = None,
    samples: np.ndarray | Mapping[str, np.ndarray] | None = None,
    labels: np.ndarray | None = None,
    tolerances: Mapping[str, Tolerance] | None = None,
    log: Log | None = None,
) -> ConversionReport:
    """Convert an ``nn.Module``: exported with ``torch.export`` (dynamic batch for -1) to a .pt2 first.

    ``input_spec`` names the forward() arguments in order, as TensorSpecs or
    ``NAME:DATATYPE:DIMS`` strings.
    """
    from converters.torch2exportedprogram import export_module

    specs = [parse_input_spec(s) if isinstance(s, str) else s for s in input_spec]
    with tempfile.TemporaryDirectory(prefix="modelgate-api-") as scratch:
        folder = Path(scratch)
        source = folder / f"{name}.pt2"
        export_module(module, specs, source)
        request = ConversionRequest(
            source=source,
            name=name,
            targets=targets,
            repository=repository,
            samples=_save_samples(folder, samples),
            labels=_save_labels(folder, labels),
            output_names=output_names,
            tolerances={**DEFAULT_TOLERANCES, **(tolerances or {})},
        )
        return run(request, log) if log else run(request)
