"""What every dataset source returns and raises: `ArrayDataset` (arrays in, arrays out; numpy
only, no torch), the data errors, stratified splits, and where dataset files live (`data_dir`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clbench.errors import UsageError

DATA_ENV = "CLBENCH_DATA"
DEFAULT_DATA_DIR = "~/.cache/clbench"
FETCH_COMMAND = "clbench fetch {name}"  # the CLI command that calls `clbench.data_fetch.fetch(name)`


class DataError(UsageError):
    """A dataset that cannot be used: missing files, a failed checksum, malformed arrays or a failed
    download. A UsageError, so the CLI prints it as one line."""


class MissingDataError(DataError):
    """The files of a dataset are not where clbench looks for them."""


class ChecksumError(DataError):
    """A dataset file differs from the published release."""


@dataclass(frozen=True)
class ArrayDataset:
    """A labelled image dataset as arrays: x is (N, C, H, W), y is int64 (N,).

    x is float32 in [0, 1], or uint8 (0-255, meaning x / 255) for datasets too large to hold twice
    as float32 (CIFAR); `as_float` converts either, and the scenario builders convert task by task.
    `info` records where the data came from and how it was checked or split (seed, checksums).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    info: dict[str, Any] = field(default_factory=dict, compare=False)

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
            {**self.info, "validation": {"fraction": fraction, "seed": seed}},
        )


def as_float(x: np.ndarray) -> np.ndarray:
    """Images as float32 in [0, 1]: uint8 is divided by 255, float32 is returned as it is."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255)
    return x


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


def finish(name: str, x_train, y_train, x_test, y_test, info: dict[str, Any]) -> ArrayDataset:
    """A dataset with int64 labels and read-only arrays (loaders cache them; nobody may edit them)."""
    arrays = [np.ascontiguousarray(a) for a in (x_train, np.asarray(y_train, np.int64), x_test,
                                                 np.asarray(y_test, np.int64))]
    for a in arrays:
        a.flags.writeable = False
    return ArrayDataset(name, *arrays, info)


def check_fraction(test_fraction: float) -> None:
    if not 0 < test_fraction < 1:
        raise UsageError(f"test_fraction must be between 0 and 1, got {test_fraction}")


def data_dir() -> Path:
    """The data directory: `$CLBENCH_DATA`, or `~/.cache/clbench` when it is unset or empty."""
    return Path(os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR).expanduser()
