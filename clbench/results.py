"""Runs on disk. A run directory holds `run.json` (the resolved config, its id, the environment
and the status) and `rows.csv` (one tidy row per after_task × eval_task). The run id is a short
hash of the resolved config, so a finished run is found and reused, never overwritten. A run is
written into a temporary directory and renamed into place, so a crash never leaves a
half-written run that looks finished.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

ROW_FIELDS = ("after_task", "eval_task", "accuracy", "n_samples", "train_seconds", "eval_seconds")
VALUE_COLUMNS = ("accuracy", "bpc")  # a run's rows carry one of these (its scenario's measure)
RUN_FILE = "run.json"
ROWS_FILE = "rows.csv"


def value_column(rows: list[dict]) -> str:
    """The value column of a run's rows: `bpc` for text streams, else `accuracy`."""
    return "bpc" if rows and "bpc" in rows[0] else "accuracy"


def run_id(config: dict[str, Any]) -> str:
    """A 12-hex-digit hash of the resolved config (canonical JSON)."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def run_dir_name(config: dict[str, Any], rid: str) -> str:
    """A readable directory name that ends in the run id: learner-scenario-protocol-seed-id."""
    scenario = config["scenario"]
    label = f"{config['learner']['name']}-{scenario['name']}-{scenario['protocol']}-s{config['seed']}"
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', label)[:120]}-{rid}"


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    """Versions and git revision recorded with every run (not part of the run id)."""
    versions = {"python": platform.python_version()}
    for package in ("clbench", "torch", "numpy", "scikit-learn"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {"versions": versions, "git_revision": _git_revision(), "platform": platform.platform(),
            "hostname": platform.node()}


def _git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def run_status(path: Path) -> str | None:
    """The status recorded in a run directory ("ok", "failed", ...), or None when it holds no
    complete run (no run.json or rows.csv, or a run.json that cannot be read)."""
    path = Path(path)
    if not (path / ROWS_FILE).is_file():
        return None
    try:
        return str(json.loads((path / RUN_FILE).read_text()).get("status", "ok"))
    except (OSError, ValueError, AttributeError):
        return None


def scan_runs(root: Path) -> dict[str, tuple[Path, str]]:
    """Every complete run directory directly under `root`: run id -> (directory, status).

    Temporary and replaced directories (`.tmp-*`, `.old-*`) are never listed; when a run id is
    found twice, a finished copy wins over a failed one.
    """
    root = Path(root)
    found: dict[str, tuple[Path, str]] = {}
    if not root.is_dir():
        return found
    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or not path.is_dir():
            continue
        rid = path.name.rpartition("-")[2]
        status = run_status(path)
        if status is None:
            continue
        if rid not in found or (status == "ok" and found[rid][1] != "ok"):
            found[rid] = (path, status)
    return found


def find_run(root: Path, rid: str) -> Path | None:
    """The finished run directory with this id under `root`, or None. A failed run, or a
    directory without a complete run, is not finished."""
    root = Path(root)
    if not root.is_dir():
        return None
    for path in root.glob(f"*-{rid}"):
        if not path.name.startswith(".") and run_status(path) == "ok":
            return path
    return None


def write_run(root: Path, config: dict[str, Any], rows: list[dict], status: str = "ok",
              extra: dict[str, Any] | None = None, files: dict[str, str] | None = None) -> Path:
    """Write a run atomically under `root` and return its directory (replacing an earlier one
    with the same id, e.g. a failed run). `extra` adds keys to run.json; `files` adds text files
    (e.g. a failed run's traceback.txt).

    The run is written into `.tmp-<id>-<pid>-*`, flushed to disk, and renamed into place, so a
    crash at any moment leaves either no run or a complete one; `clean_stale` removes what a
    killed writer left behind.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rid = run_id(config)
    final = root / run_dir_name(config, rid)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{rid}-{os.getpid()}-", dir=root))
    try:
        record = {"run_id": rid, "status": status, "config": config, "environment": environment(), **(extra or {})}
        (tmp / RUN_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        with open(tmp / ROWS_FILE, "w", newline="") as fh:
            column = value_column(rows)
            fields = tuple(column if f == "accuracy" else f for f in ROW_FIELDS)
            writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        for name, text in (files or {}).items():
            (tmp / name).write_text(text)
        for path in tmp.iterdir():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            old = final.with_name(f".old-{final.name}-{os.getpid()}")
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


def clean_stale(root: Path) -> list[Path]:
    """Remove what writers killed mid-way left under `root`; return the paths removed.

    `.tmp-<id>-<pid>-*` of a process that no longer runs is deleted. `.old-<name>-<pid>` (a run
    being replaced when its writer died) is renamed back to `<name>` if no new `<name>` made it
    into place, else deleted. Directories of live processes are left alone, so two suites may
    share a results folder.
    """
    root = Path(root)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for path in sorted(root.iterdir()):
        if path.name.startswith(".tmp-"):
            parts = path.name.split("-")
            pid = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None
            if pid is None or not _pid_alive(pid):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        elif path.name.startswith(".old-"):
            name, _, pid = path.name[len(".old-"):].rpartition("-")
            if pid.isdigit() and _pid_alive(int(pid)):
                continue
            final = path.with_name(name)
            if name and not final.exists() and run_status(path) is not None:
                path.rename(final)
            else:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def read_run(path: Path) -> tuple[dict[str, Any], list[dict]]:
    """(the run record, its rows with numbers parsed) of a run directory."""
    path = Path(path)
    record = json.loads((path / RUN_FILE).read_text())
    rows = []
    with open(path / ROWS_FILE, newline="") as fh:
        for row in csv.DictReader(fh):
            column = "bpc" if "bpc" in row else "accuracy"
            rows.append({"after_task": int(row["after_task"]), "eval_task": int(row["eval_task"]),
                         column: float(row[column]), "n_samples": int(row["n_samples"]),
                         "train_seconds": float(row["train_seconds"]), "eval_seconds": float(row["eval_seconds"])})
    return record, rows


def matrix_from_rows(rows: list[dict]) -> np.ndarray:
    """The matrix R of shape (T+1, T): R[i, j-1] = the value (accuracy, or bpc for text streams) on
    task j after task i."""
    column = value_column(rows)
    n_tasks = max(r["eval_task"] for r in rows)
    if max(r["after_task"] for r in rows) != n_tasks:
        raise ValueError(f"rows do not fill the ({n_tasks + 1}, {n_tasks}) accuracy matrix")
    matrix = np.full((n_tasks + 1, n_tasks), np.nan)
    for r in rows:
        matrix[r["after_task"], r["eval_task"] - 1] = r[column]
    if np.isnan(matrix).any():
        raise ValueError(f"rows do not fill the ({n_tasks + 1}, {n_tasks}) accuracy matrix")
    return matrix

