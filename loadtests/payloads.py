"""Demo data for the demo MLP: digits images and the digit each one shows (the strongest answer check).

Inputs are scikit-learn's digits (shipped with the library, no download): 8x8 images as 64 raw
pixel values 0..16, the input the ``digits_mlp`` demo model takes. The expected answer is the
image's label. Only images a reference copy of the demo model (retrained here with numpy in a
fraction of a second, deterministic for its seed) classifies correctly with at least 0.9
confidence are used, so any working digits model answers all of them right and a wrong answer
is a real failure, not the model's ~0.3% error rate.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loadtests.tensors import Pool

#: Reference softmax probability an image must reach to be used (its label must also match).
MIN_CONFIDENCE = 0.9
PIXELS = 64
CLASSES = 10


@dataclass(frozen=True)
class DigitsSamples:
    """Images (N, 64) float32 and their labels (N,) int64."""

    pixels: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits images (float32, 0..16) and labels, as ``sklearn.datasets.load_digits`` gives them.

    The data is a CSV file inside the scikit-learn package; reading it directly skips importing
    scikit-learn, which takes seconds on a busy machine and delays every run. If the file is not
    where scikit-learn has always kept it, ``load_digits`` is used.
    """
    spec = importlib.util.find_spec("sklearn")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(locations[0]) / "datasets" / "data" / "digits.csv.gz" if locations else None
    if path is not None and path.is_file():
        table = np.loadtxt(path, delimiter=",", dtype=np.float32)
        return np.ascontiguousarray(table[:, :-1]), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    data = load_digits()
    return np.ascontiguousarray(data.data, dtype=np.float32), data.target.astype(np.int64)


def reference_samples(min_confidence: float = MIN_CONFIDENCE, seed: int = 0) -> DigitsSamples:
    """All digits images the reference model gets right with ``min_confidence``.

    The reference is the demo model retrained exactly as ``demo.mlp`` trains it (same
    75% split of the same data, same seed), so it has the demo model's weights.
    """
    from demo.mlp import train

    pixels, labels = digits()
    order = np.random.default_rng(seed).permutation(len(pixels))
    cut = int(len(pixels) * 0.75)
    reference = train(pixels[order[:cut]], labels[order[:cut]], seed)
    probs = reference.predict(pixels)
    keep = (probs.argmax(axis=1) == labels) & (probs.max(axis=1) >= min_confidence)
    return DigitsSamples(pixels[keep], labels[keep])


def digits_pool(input_name: str, seed: int = 0) -> Pool:
    """The reference samples as a pool for the demo MLP's input, labelled."""
    samples = reference_samples(seed=seed)
    return Pool({input_name: samples.pixels}, {}, samples.labels)
