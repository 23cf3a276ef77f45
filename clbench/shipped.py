"""The baselines shipped with clbench: recorded runs of the built-in learners on the shipped suites
(`hope/`, ...) and the published numbers of papers (`published.csv`).

They live in the repository's `baselines/` folder, which `pip install .` installs as package data
at `clbench/baselines/`, so an installed clbench finds them as a source checkout does.
`clbench baselines` lists them; `clbench baselines NAME` prints a folder's path, for
`clbench compare results/mine --against "$(clbench baselines hope)"`.
"""
from __future__ import annotations

from pathlib import Path

from clbench.errors import UsageError, unknown_name_error

_PACKAGE = Path(__file__).resolve().parent


def baselines_dir() -> Path:
    """The shipped baselines: package data of an installed clbench, else `baselines/` of the source
    checkout this clbench runs from (an editable install)."""
    for folder in (_PACKAGE / "baselines", _PACKAGE.parent / "baselines"):
        if (folder / "published.csv").is_file():
            return folder
    raise UsageError(f"clbench's shipped baselines are missing (looked in {_PACKAGE / 'baselines'} and "
                     f"{_PACKAGE.parent / 'baselines'}); reinstall clbench")


def published_csv() -> Path:
    """The published numbers of papers (`clbench published` compares recorded runs with them)."""
    return baselines_dir() / "published.csv"


def recorded() -> dict[str, Path]:
    """Name -> folder of every shipped set of recorded runs (a folder with run directories)."""
    root = baselines_dir()
    return {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and any(p.glob("*/run.json"))}


def recorded_runs(name: str) -> Path:
    """The folder of the shipped recorded runs called `name` (e.g. "hope")."""
    found = recorded()
    if name not in found:
        raise unknown_name_error("shipped baseline", name, found)
    return found[name]
