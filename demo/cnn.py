"""The demo models: the same small CNN in Keras and PyTorch, trained on scikit-learn's digits.

``python -m demo.cnn --model-repository model_repo`` (``make models``) trains both
on ``load_digits`` (8x8 images scaled to [0, 1]; no download), converts each to every
servable format, verifies against the 25 % held-out split with its labels and publishes
``digits_keras`` (input ``image`` [-1, 8, 8, 1], NHWC) and ``digits_torch`` (``image``
[-1, 1, 8, 8], NCHW), both with output ``probs`` [-1, 10]. Training runs in subprocesses
like every conversion. Models already published are left alone, so the command is
idempotent. The .pt2 target is not built: no gateway backend serves it yet.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import BadInput
from converters.isolation import run_step
from converters.pipeline import ConversionRequest, run
from converters.report import to_markdown
from demo.digits import SEED, digits_images
from gateway.core.types import TensorSpec

KERAS_NAME = "digits_keras"
TORCH_NAME = "digits_torch"
EPOCHS = 12


def train_keras(path: str, epochs: int = EPOCHS) -> dict[str, Any]:
    """Step (subprocess): train the Keras CNN and save it to ``path`` (.keras or .h5)."""
    import keras

    keras.utils.set_random_seed(SEED)
    x_train, y_train, x_test, y_test = digits_images()
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1), name="image"),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.BatchNormalization(),
            layers.MaxPooling2D(),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.BatchNormalization(),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dropout(0.2),
            layers.Dense(64, activation="relu"),
            layers.Dense(10, activation="softmax", name="probs"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train[..., None], y_train, epochs=epochs, batch_size=32, verbose=0)
    _, acc = model.evaluate(x_test[..., None], y_test, verbose=0)
    model.save(path)
    return {"test_accuracy": float(acc)}


def torch_cnn() -> Any:
    """The PyTorch twin of the Keras CNN (NCHW, softmax inside forward so outputs are probabilities)."""
    import torch
    from torch import nn

    class DigitsCnn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(16), nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(32), nn.MaxPool2d(2),
                nn.Flatten(), nn.Dropout(0.2), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10),
            )  # fmt: skip

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.features(image), dim=1)

    return DigitsCnn()


def train_torch(path: str, epochs: int = EPOCHS) -> dict[str, Any]:
    """Step (subprocess): train the PyTorch CNN and save it as a .pt2 with a dynamic batch."""
    import torch

    from converters.torch2exportedprogram import export_module

    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    x_train, y_train, x_test, y_test = digits_images()
    model = torch_cnn()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    images, labels = torch.from_numpy(x_train[:, None]), torch.from_numpy(y_train)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(images)).split(32):  # type: ignore[no-untyped-call]
            optimiser.zero_grad()
            probs = model(images[batch])
            loss = torch.nn.functional.nll_loss(torch.log(probs + 1e-9), labels[batch])
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(torch.from_numpy(x_test[:, None])).argmax(1).numpy() == y_test).mean())
    export_module(model, [TensorSpec("image", "FP32", (-1, 1, 8, 8))], Path(path))
    return {"test_accuracy": acc}


def build(repository: Path, name: str, trainer: str, suffix: str, layout: str, epochs: int = EPOCHS) -> int:
    """Train, convert to every servable format, verify on the held-out digits and publish ``name``."""
    if (repository / name / "config.yaml").exists():
        print(f"{name}: already published in {repository}, nothing to do")
        return 0
    with tempfile.TemporaryDirectory(prefix=f"{name}-") as scratch:
        folder = Path(scratch)
        source = folder / f"{name}{suffix}"
        trained = run_step(trainer, {"path": str(source), "epochs": epochs}, folder / "train")
        print(f"{name}: trained, held-out accuracy {trained['test_accuracy']:.2%}", file=sys.stderr)
        _, _, x_test, y_test = digits_images()
        images = x_test[..., None] if layout == "NHWC" else x_test[:, None]
        np.save(folder / "samples.npy", images.astype(np.float32))
        np.save(folder / "labels.npy", y_test)
        request = ConversionRequest(
            source=source,
            name=name,
            targets="all",
            repository=repository,
            samples=folder / "samples.npy",
            labels=folder / "labels.npy",
            output_names=["probs"],
        )
        report = run(request, lambda line: print(f"{name}: {line}", file=sys.stderr, flush=True))
    print(to_markdown(report))
    return report.exit_code


def main(argv: list[str] | None = None) -> int:
    """Build both demo models; the exit code is the worst of the two conversions."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model-repository", type=Path, default=Path("model_repo"))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args(argv)
    try:
        codes = [
            build(args.model_repository, KERAS_NAME, "demo.cnn:train_keras", ".keras", "NHWC", args.epochs),
            build(args.model_repository, TORCH_NAME, "demo.cnn:train_torch", ".pt2", "NCHW", args.epochs),
        ]
    except BadInput as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return max(codes)


if __name__ == "__main__":
    raise SystemExit(main())
