"""Dataset sources: arrays in, arrays out (numpy only, no torch).

Every source returns an `ArrayDataset` with a fixed train/test split. The embedded default is
scikit-learn's bundled digits (8x8, 10 classes), which needs no download.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from clbench.errors import UsageError

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.25


@dataclass(frozen=True)
class ArrayDataset:
    """A labelled image dataset as arrays: x is float32 (N, C, H, W) in [0, 1], y is int64 (N,)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def validation(self, fraction: float = 0.2, seed: int = 0) -> "ArrayDataset":
        """Hold out a seeded, stratified part of the training split as the evaluation split.

        Use it to tune hyperparameters without ever looking at the test split.
        """
        train_idx, val_idx = stratified_split(self.y_train, fraction, seed)
        return ArrayDataset(
            f"{self.name}:val",
            self.x_train[train_idx], self.y_train[train_idx],
            self.x_train[val_idx], self.y_train[val_idx],
        )


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices (train, test): each class loses round(fraction * its size) samples to test,
    drawn reproducibly from `seed`."""
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        test.append(rng.permutation(members)[: int(round(test_fraction * len(members)))])
    test_idx = np.sort(np.concatenate(test))
    return np.setdiff1d(np.arange(len(y)), test_idx), test_idx


@lru_cache(maxsize=1)
def digits() -> ArrayDataset:
    """scikit-learn's bundled digits: 1,797 images of 8x8 pixels (values 0-16), 10 classes.

    The train/test split is fixed (stratified, seed 0, 25% test) so every run sees the same data.
    The file is read from the installed scikit-learn package without importing scikit-learn,
    which would cost seconds of start-up.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise UsageError("the digits dataset ships with scikit-learn: pip install scikit-learn")
    table = np.loadtxt(Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz", delimiter=",")
    x = (table[:, :-1].astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = table[:, -1].astype(np.int64)
    train_idx, test_idx = stratified_split(y, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    return ArrayDataset("digits", x[train_idx], y[train_idx], x[test_idx], y[test_idx])


SOURCES = {"digits": digits}


def load(name: str) -> ArrayDataset:
    """A dataset by source name; an unknown name lists the known ones."""
    if name not in SOURCES:
        from clbench.registry import unknown_name_error

        raise unknown_name_error("dataset", name, SOURCES)
    return SOURCES[name]()
