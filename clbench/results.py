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
import io
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

ROW_FIELDS = ("after_task", "eval_task", "accuracy", "n_samples", "train_seconds", "eval_seconds",
              "peak_memory_mb")  # peak memory while training and evaluating that row (MiB; absent in older runs)
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


def check_output_folder(path: Path, what: str = "results folder") -> Path:
    """Make sure runs can be written under `path` before anything trains: create it if needed,
    else a UsageError saying why not (it is a file, a parent is a file, no permission)."""
    from clbench.errors import UsageError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what} {path} is a file, not a folder (give a folder to write into)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"{what} {path} cannot be created: {err.strerror or err}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path} is not writable")
    return path


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
            "cpu": cpu_model(), "hostname": platform.node()}


def cpu_model() -> str:
    """The processor's model name (floating-point kernels, and so the last bits of results, may
    differ between processors: `clbench verify` names it when a re-run differs; the benchmarks
    print it, since their ratios move with it)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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


class DamagedRun(ValueError):
    """A run directory whose files are missing, unreadable or inconsistent."""


def rows_digest(data: bytes) -> tuple[int, str]:
    """(number of data rows, sha256) of the bytes of a rows.csv: what the completion record of
    run.json holds."""
    return max(0, data.count(b"\n") - 1), hashlib.sha256(data).hexdigest()


def _read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads((path / RUN_FILE).read_text())
    except FileNotFoundError:
        raise DamagedRun(f"{RUN_FILE} is missing") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DamagedRun(f"{RUN_FILE} cannot be read ({err})") from None
    except ValueError as err:
        raise DamagedRun(f"{RUN_FILE} is not valid JSON ({err})") from None
    if not isinstance(record, dict):
        raise DamagedRun(f"{RUN_FILE} holds {type(record).__name__} {json.dumps(record)[:40]}, not a run record")
    return record


def check_run(path: Path) -> dict[str, Any]:
    """The run record of a complete, consistent run directory, or `DamagedRun` saying what is wrong.

    A run written by this version carries a completion record in run.json (`complete`: the row
    count and sha256 of rows.csv), so a rows.csv cut short or changed afterwards is found. A run
    recorded before that is accepted when its rows parse and fill the (T+1) × T matrix.
    """
    return _checked(Path(path))[0]


def _checked(path: Path) -> tuple[dict[str, Any], bytes]:
    """`check_run`'s record and the bytes of rows.csv it checked (read once, for `read_run` to parse)."""
    record = _read_record(path)
    if not (path / ROWS_FILE).is_file():
        raise DamagedRun(f"{ROWS_FILE} is missing")
    data = (path / ROWS_FILE).read_bytes()
    complete = record.get("complete")
    if isinstance(complete, dict):
        n_rows, sha256 = rows_digest(data)
        if sha256 != complete.get("rows_sha256"):
            raise DamagedRun(f"{ROWS_FILE} has changed since the run was written ({n_rows} rows, run.json "
                             f"records {complete.get('rows')}; cut short or edited)")
        return record, data
    if complete is not None:
        raise DamagedRun(f"{RUN_FILE} has a malformed completion record")
    if record.get("status", "ok") == "ok":
        _check_legacy_rows(data)
    return record, data


def csv_text(rows: list[dict], fields: tuple[str, ...], lineterminator: str = "\n") -> str:
    """`rows` as CSV text with a header of `fields` (keys not among them are left out)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore", lineterminator=lineterminator)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _csv_rows(data: bytes) -> csv.DictReader:
    return csv.DictReader(io.StringIO(data.decode(), newline=""))


def _check_legacy_rows(data: bytes) -> None:
    """The rows of a run recorded before completion records: they must parse and fill the matrix."""
    cells = set()
    try:
        for row in _csv_rows(data):
            value = row.get("accuracy") if row.get("accuracy") not in (None, "") else row.get("bpc")
            float(value)  # type: ignore[arg-type]
            cells.add((int(row["after_task"]), int(row["eval_task"])))
    except (KeyError, TypeError, ValueError, csv.Error, UnicodeDecodeError) as err:
        raise DamagedRun(f"{ROWS_FILE} cannot be parsed ({type(err).__name__}: {err})") from None
    n_tasks = max((j for _, j in cells), default=0)
    if not n_tasks or cells != {(i, j) for i in range(n_tasks + 1) for j in range(1, n_tasks + 1)}:
        raise DamagedRun(f"{ROWS_FILE} holds {len(cells)} rows that do not fill the ({n_tasks + 1}, {n_tasks}) "
                         f"matrix (cut short?)")


def run_problem(path: Path) -> str | None:
    """Why `path` holds no complete run (`check_run`), or None when it does."""
    try:
        check_run(path)
    except DamagedRun as err:
        return str(err)
    return None


def run_status(path: Path) -> str | None:
    """The status recorded in a run directory ("ok", "failed", ...), or None when it holds no
    complete run (a file missing, unreadable, cut short or inconsistent: `check_run`)."""
    try:
        return str(check_run(path).get("status", "ok"))
    except DamagedRun:
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
        column = value_column(rows)
        data = csv_text(rows, tuple(column if f == "accuracy" else f for f in ROW_FIELDS), "\r\n").encode()
        (tmp / ROWS_FILE).write_bytes(data)
        for name, text in (files or {}).items():
            (tmp / name).write_text(text)
        n_rows, sha256 = rows_digest(data)
        record = {"run_id": rid, "status": status, "config": config, "environment": environment(), **(extra or {}),
                  "complete": {"rows": n_rows, "rows_sha256": sha256}}  # written last: the run is complete
        (tmp / RUN_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
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
    """(the run record, its rows with numbers parsed) of a run directory; `DamagedRun` (a
    ValueError) when it holds no complete, consistent run."""
    record, data = _checked(Path(path))
    rows = []
    for row in _csv_rows(data):
        column = "bpc" if "bpc" in row else "accuracy"
        rows.append({"after_task": int(row["after_task"]), "eval_task": int(row["eval_task"]),
                     column: float(row[column]), "n_samples": int(row["n_samples"]),
                     "train_seconds": float(row["train_seconds"]), "eval_seconds": float(row["eval_seconds"]),
                     **({"peak_memory_mb": float(row["peak_memory_mb"])} if row.get("peak_memory_mb") else {})})
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

