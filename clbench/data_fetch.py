"""Fetching datasets: explicit, never implicit. `fetch(name)` downloads a dataset's published files
into the data directory and checks them against their checksums. What can be fetched is the table
`RECIPES` (name -> recipe): one entry per standard release (`clbench.data_releases.RELEASES`) and
mnist10k; another data module adds its datasets with `@recipe("name")` (the text domains:
`clbench.text_fetch`, imported at the end of this module so that the table is whole).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from clbench.data_arrays import ChecksumError, DataError, data_dir
from clbench.data_releases import MNIST10K_SHA256, MNIST10K_TARBALL, MNIST10K_URL, RELEASES, Release, _check, _md5
from clbench.errors import UsageError, unknown_name_error

Progress = Callable[[str, int, "int | None"], None]  # (file name, bytes done, total bytes or None)
Recipe = Callable[[Path, "Progress | None"], Path]   # (data directory, progress) -> what the loader reads
RECIPES: dict[str, Recipe] = {}


def recipe(name: str) -> Callable[[Recipe], Recipe]:
    """Register `fn(root, progress) -> path` as the way to fetch dataset `name`."""
    def register(fn: Recipe) -> Recipe:
        RECIPES[name] = fn
        return fn
    return register


def fetch(name: str, root: str | Path | None = None, progress: Progress | None = None) -> Path:
    """Download a dataset's published files into `root` (default: the data directory) and check them.

    Returns the folder (or, for mnist10k, the tarball) the loaders will read. Files already present
    and intact are kept. For CIFAR an archive already in `root` is unpacked without downloading, so a
    copied archive works offline. `progress(file name, bytes done, total bytes or None)` is called
    while downloading. Raises DataError when every mirror fails or a checksum does not match.
    """
    if name == "digits":
        raise UsageError("digits ships with scikit-learn; there is nothing to fetch")
    if name not in RECIPES:
        raise unknown_name_error("dataset", name, RECIPES, " to fetch")
    root = Path(root).expanduser() if root is not None else data_dir()
    root.mkdir(parents=True, exist_ok=True)
    return RECIPES[name](root, progress)


@recipe("mnist10k")
def _fetch_mnist10k(root: Path, progress: Progress | None) -> Path:
    target = root / MNIST10K_TARBALL
    if not (target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == MNIST10K_SHA256):
        _download([MNIST10K_URL], target, progress, sha256=MNIST10K_SHA256)
    return target


def _fetch_release(release_name: str) -> Recipe:
    """The recipe of a standard release: its IDX files one by one, or its CIFAR archive, unpacked."""
    def fetch_release(root: Path, progress: Progress | None) -> Path:
        release = RELEASES[release_name]  # looked up when fetching, so a replaced entry is used
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
            _download([base + release.archive for base in release.mirrors], archive, progress,
                      md5=release.archive_md5)
        _unpack(archive, root, release)
        return root / release.folder
    return fetch_release


for _name in RELEASES:
    RECIPES[_name] = _fetch_release(_name)


def _download(urls: list[str], target: Path, progress, md5: str = "", sha256: str = "") -> None:
    """Fetch the first URL that works into `target` (via a temporary file) and check its checksum."""
    import urllib.request  # here: suite planning and the CLI read data without torch, and http + ssl cost them ~30 ms

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


import clbench.text_fetch  # noqa: E402,F401 (registers the text domains' recipes)
