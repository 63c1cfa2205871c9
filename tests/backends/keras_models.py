"""A tiny Keras digits model exported as SavedModel, TFLite (fp32) and ONNX, for backend tests.

Imports TensorFlow: call only from fixtures of ``@pytest.mark.frameworks`` tests. The model
is a small CNN on 8x8x1 load_digits images, trained for two epochs with a fixed seed; its
accuracy is irrelevant, only that every format computes the same function.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits


@dataclass(frozen=True)
class KerasArtifacts:
    savedmodel: Path
    tflite: Path
    onnx: Path


def digit_images(n: int, offset: int = 0) -> np.ndarray:
    """``n`` load_digits images as FP32 NHWC [n, 8, 8, 1], raw 0..16 values scaled to 0..1."""
    data: np.ndarray = load_digits().data[offset : offset + n].astype(np.float32) / 16.0
    return data.reshape(n, 8, 8, 1)


def shared_artifacts(base: Path) -> KerasArtifacts:
    """Build once per test process under ``base`` (pass ``tmp_path_factory.getbasetemp()``)."""
    out = base / "keras_digits"
    artifacts = KerasArtifacts(out / "model.savedmodel", out / "model.tflite", out / "model.onnx")
    if not (out / "done").exists():
        out.mkdir(parents=True, exist_ok=True)
        build_keras_artifacts(out)
        (out / "done").touch()
    return artifacts


def write_version(repo: Path, model: str, version: int, backend: str, artifact: Path, extra: str = "") -> Path:
    """``<repo>/<model>/<version>/`` holding a copy of ``artifact`` and a version config.yaml."""
    import shutil

    version_dir = repo / model / str(version)
    version_dir.mkdir(parents=True)
    if artifact.is_dir():
        shutil.copytree(artifact, version_dir / artifact.name)
    else:
        shutil.copy(artifact, version_dir / artifact.name)
    (version_dir / "config.yaml").write_text(f"backend: {backend}\n{extra}", encoding="utf-8")
    return version_dir


def build_keras_artifacts(out: Path) -> KerasArtifacts:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1), name="image"),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    digits = load_digits()
    model.fit(digit_images(len(digits.target)), digits.target, epochs=2, batch_size=64, verbose=0)
    artifacts = KerasArtifacts(out / "model.savedmodel", out / "model.tflite", out / "model.onnx")
    model.export(str(artifacts.savedmodel), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(artifacts.savedmodel))
    artifacts.tflite.write_bytes(converter.convert())
    with warnings.catch_warnings():  # keras' tf2onnx shim probes np.object, which numpy 2 warns about
        warnings.simplefilter("ignore", FutureWarning)
        model.export(str(artifacts.onnx), format="onnx", verbose=False)
    return artifacts
