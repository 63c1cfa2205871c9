"""scikit-learn's digits data set (shipped with the library, no download), split the same way everywhere."""

from __future__ import annotations

import numpy as np

SEED = 0


def load_digits_split(seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Raw 8x8 pixel rows (float32, 0..16) and labels, split 75/25: x_train, y_train, x_test, y_test."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = data.data.astype(np.float32)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(len(x) * 0.75)
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def digits_images(seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train/test images as [N, 8, 8] float32 in [0, 1] with integer labels."""
    x_train, y_train, x_test, y_test = load_digits_split(seed)
    return (x_train / 16.0).reshape(-1, 8, 8), y_train, (x_test / 16.0).reshape(-1, 8, 8), y_test
