"""Fixtures for the converter tests: small demo models trained once per session, in subprocesses.

Training goes through the same step functions as ``make models`` (with fewer epochs),
so the test process itself never imports TensorFlow or torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from converters.isolation import run_step
from demo.digits import digits_images

EPOCHS = 1


@pytest.fixture(scope="session")
def keras_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Keras demo CNN (input ``image`` [-1, 8, 8, 1], output ``probs``) saved as .keras."""
    folder = tmp_path_factory.mktemp("keras")
    path = folder / "digits.keras"
    run_step("demo.cnn:train_keras", {"path": str(path), "epochs": EPOCHS}, folder / "steps")
    return path


@pytest.fixture(scope="session")
def torch_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The PyTorch demo CNN (input ``image`` [-1, 1, 8, 8], softmax output) as a torch.export .pt2."""
    folder = tmp_path_factory.mktemp("torch")
    path = folder / "digits.pt2"
    run_step("demo.cnn:train_torch", {"path": str(path), "epochs": EPOCHS}, folder / "steps")
    return path


@pytest.fixture(scope="session")
def digits_samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Held-out digits as NHWC and NCHW .npy validation sets plus their labels."""
    folder = tmp_path_factory.mktemp("samples")
    _, _, x_test, y_test = digits_images()
    x_test = x_test.astype(np.float32)
    np.save(folder / "nhwc.npy", x_test[..., None])
    np.save(folder / "nchw.npy", x_test[:, None])
    np.save(folder / "labels.npy", y_test)
    return {"nhwc": folder / "nhwc.npy", "nchw": folder / "nchw.npy", "labels": folder / "labels.npy"}


@pytest.fixture(scope="session")
def keras_h5_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same Keras CNN saved in the legacy HDF5 format (as ModelCheckpoint pipelines write it)."""
    folder = tmp_path_factory.mktemp("keras_h5")
    path = folder / "digits.h5"
    run_step("demo.cnn:train_keras", {"path": str(path), "epochs": 1}, folder / "steps")
    return path


@pytest.fixture(scope="session")
def torchscript_file(torch_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The PyTorch CNN as a TorchScript .pt (made by the real torch2torchscript step)."""
    folder = tmp_path_factory.mktemp("torchscript")
    path = folder / "digits.pt"
    kwargs = {
        "source": str(torch_file),
        "source_kind": "torch_export",
        "output": str(path),
        "precision": "fp32",
        "inputs": [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 8, 8]}],
        "output_names": ["probs"],
    }
    run_step("converters.torch2torchscript:convert", kwargs, folder / "steps")
    return path
