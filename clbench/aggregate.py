"""Runs on disk grouped honestly: by resolved config minus the seed, so that runs of different
clbench versions, learners, fields or scenarios (measure included) are never averaged together.
Metrics are computed per run from its matrix, in the run's measure; `clbench.stats` summarises
them over seeds. `results_frame` gives the same stored runs as one tidy pandas DataFrame for
users' own analysis.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from clbench import metrics
from clbench.anytime import Anytime, read_anytime
from clbench.results import RUN_FILE, DamagedRun, matrix_from_rows, read_run

if TYPE_CHECKING:
    import pandas


@dataclass
class StoredRun:
    """A run as stored under a results folder: its directory, its record (run.json: the resolved
    config, run id, status, environment) and its rows; `reused` when `clbench.run_config` found the
    identical finished run instead of running it."""

    path: Path
    record: dict[str, Any]
    rows: list[dict]
    reused: bool = False

    @property
    def config(self) -> dict[str, Any]:
        return self.record.get("config") or {}

    @property
    def run_id(self) -> str:
        return self.record.get("run_id", self.path.name)

    @property
    def seed(self) -> int:
        return self.config["seed"]

    @cached_property
    def problem(self) -> str | None:
        """Why this run cannot be used (failed, or rows that do not fill the matrix), or None."""
        status = self.record.get("status", "ok")
        if status == "damaged":
            return f"damaged: {self.record.get('error')}"
        if status != "ok":
            error = str(self.record.get("error") or "").strip().splitlines()
            return f"status {status}" + (f": {error[-1]}" if error else "")
        if not _groupable(self.config):
            return "run.json lacks the scenario, learner or seed"
        if not self.rows:
            return "no rows"
        try:
            metrics.measure_of(self.config)
            matrix_from_rows(self.rows)
        except (ValueError, IndexError, KeyError) as err:
            return f"rows do not form an evaluation matrix ({err})"
        return None

    @property
    def ok(self) -> bool:
        return self.problem is None

    @cached_property
    def matrix(self) -> np.ndarray:
        return matrix_from_rows(self.rows)

    @cached_property
    def anytime(self) -> Anytime | None:
        """The run's evaluations along its stream (`anytime.csv`), read once; None for a boundary-only run."""
        return read_anytime(self.path)


@dataclass
class Group:
    """Runs that differ only by seed, with per-metric values over those seeds."""

    key: str
    config: dict[str, Any]
    runs: list[StoredRun] = field(default_factory=list)
    failed: list[StoredRun] = field(default_factory=list)  # same config, unusable (see StoredRun.problem)
    duplicates: list[StoredRun] = field(default_factory=list)  # same run id found twice, counted once

    @property
    def learner(self) -> str:
        return self.config["learner"]["name"]

    @property
    def scenario(self) -> str:
        """The scenario's name, marked "(val)" where runs were evaluated on a validation split."""
        name = self.config["scenario"]["name"]
        return f"{name} (val)" if self.config["scenario"].get("eval_split") == "val" else name

    @property
    def protocol(self) -> str:
        return self.config["scenario"]["protocol"]

    @property
    def measure(self) -> metrics.Measure:
        """What the runs' matrices measure (part of the scenario config, so one per group)."""
        return metrics.measure_of(self.config)

    @property
    def scenario_key(self) -> str:
        """The full scenario config: groups are comparable only when these are equal."""
        return json.dumps(self.config["scenario"], sort_keys=True)

    @property
    def seeds(self) -> list[int]:
        return sorted(r.config["seed"] for r in self.runs)

    @property
    def failed_seeds(self) -> list[int]:
        """Seeds with only failed runs (a seed that failed and later finished counts as finished)."""
        return sorted({r.config["seed"] for r in self.failed} - set(self.seeds))

    def values(self, metric: str) -> list[float]:
        """The metric of every run in the group, in seed order (empty if undefined in this protocol)."""
        return [value for _, value in self.values_by_seed(metric)]

    def values_by_seed(self, metric: str) -> list[tuple[int, float]]:
        """(seed, value) of every run in the group, in seed order (empty if undefined in this protocol)."""
        out = []
        for run in sorted(self.runs, key=lambda r: r.seed):
            value = metrics.compute(run.matrix, [metric], self.protocol, self.measure)[metric]
            if value is not None:
                out.append((run.seed, value))
        return out

    def matrices(self) -> np.ndarray:
        """The evaluation matrices of the runs, in seed order: shape (n_runs, T+1, T)."""
        return np.stack([r.matrix for r in sorted(self.runs, key=lambda r: r.seed)])


def load_runs(root: Path | Iterable[Path]) -> list[StoredRun]:
    """Every run directory (a folder holding run.json) under `root`, finished or failed."""
    roots = [Path(root)] if isinstance(root, (str, Path)) else [Path(r) for r in root]
    runs = []
    for base in roots:
        for run_file in sorted(base.rglob(RUN_FILE)):
            if any(part.startswith(".tmp-") or part.startswith(".old-") for part in run_file.parts):
                continue
            try:
                record, rows = read_run(run_file.parent)
            except DamagedRun as err:  # listed with its reason, never used; the rest go on
                record, rows = {**_readable_record(run_file), "status": "damaged", "error": str(err)}, []
            except (OSError, ValueError, KeyError) as err:
                record, rows = {"status": "damaged", "error": f"{type(err).__name__}: {err}"}, []
            runs.append(StoredRun(run_file.parent, record, rows))
    return runs


def _readable_record(run_file: Path) -> dict[str, Any]:
    """What can still be read of a damaged run's record (its config names the run in a report)."""
    try:
        record = json.loads(run_file.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _groupable(config: dict[str, Any]) -> bool:
    try:
        return bool(config["scenario"]["name"] and config["scenario"]["protocol"] and config["learner"]["name"]
                    and "seed" in config)
    except (KeyError, TypeError):
        return False


def group_key(config: dict[str, Any]) -> str:
    without_seed = {k: v for k, v in config.items() if k != "seed"}
    return json.dumps(without_seed, sort_keys=True)


def group_runs(runs: Iterable[StoredRun], keep_failed: bool = False) -> list[Group]:
    """Finished runs grouped by config minus seed, in order of scenario, protocol, learner.

    Unusable runs (`StoredRun.problem`) go to `Group.failed` of the group their config belongs
    to; a group with no usable run at all is returned only with `keep_failed=True`. A run id
    seen twice (the same run copied into two folders) counts once; the copy goes to
    `Group.duplicates`.
    """
    groups: dict[str, Group] = {}
    for run in runs:
        if not _groupable(run.config):  # listed by failed_runs, never grouped
            continue
        key = group_key(run.config)
        group = groups.setdefault(key, Group(key, {k: v for k, v in run.config.items() if k != "seed"}))
        if not run.ok:
            group.failed.append(run)
        elif any(r.run_id == run.run_id for r in group.runs):
            group.duplicates.append(run)
        else:
            group.runs.append(run)
    kept = [g for g in groups.values() if g.runs or keep_failed]
    return sorted(kept, key=lambda g: (g.scenario, g.protocol, g.scenario_key, g.learner, g.key))


def failed_runs(runs: Iterable[StoredRun]) -> list[StoredRun]:
    """The runs that cannot be used, with the reason in `StoredRun.problem`."""
    return [r for r in runs if not r.ok]


def distinguishing_fields(groups: list[Group]) -> dict[str, str]:
    """A label per group, unique among the groups of a scenario config: the learner name plus the
    fields that differ between groups sharing that learner name, so sweeps of one learner stay
    apart in a table. Long strings are shortened only where the shortened labels stay unique;
    groups that still read alike get a short hash of their config."""
    by_name: dict[tuple[str, str], list[Group]] = {}
    for g in groups:
        by_name.setdefault((g.scenario_key, g.learner), []).append(g)
    labels = {}
    for same in by_name.values():
        if len(same) == 1:
            labels[same[0].key] = same[0].learner
            continue
        flat = [flatten_config(g.config) for g in same]
        differing = sorted(k for k in set().union(*flat) if len({json.dumps(f.get(k)) for f in flat}) > 1)
        for shorten in (True, False):
            found = {}
            for g, f in zip(same, flat):
                detail = ", ".join(f"{k.split('.')[-1]}={_short(f.get(k), shorten)}" for k in differing)
                found[g.key] = f"{g.learner} ({detail})" if detail else g.learner
            if len(set(found.values())) == len(found):
                break
        labels.update(found)
    by_label: dict[tuple[str, str], list[Group]] = {}
    for g in groups:
        by_label.setdefault((g.scenario_key, labels[g.key]), []).append(g)
    for (_, label), alike in by_label.items():
        if len(alike) > 1:  # different configs that print alike (1 and 1.0, a name shared by two classes)
            for g in alike:
                labels[g.key] = f"{label} #{hashlib.sha256(g.key.encode()).hexdigest()[:6]}"
    return labels


def _short(value: Any, shorten: bool = True) -> str:
    """A value for a label: long strings (hashes, paths) cut to their first 8 characters when `shorten`."""
    text = json.dumps(value) if isinstance(value, list) else str(value)
    return text[:8] + "…" if shorten and isinstance(value, str) and len(text) > 16 else text


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as one level of dotted keys: {"learner.fields.lr": 0.001, ...}."""
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(flatten_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def format_table(groups: list[Group]) -> str:
    """The forgetting table printed after a suite: the report's table (`clbench.render.format_table`),
    with the same default metrics and captions. Kept under this name for the CLI's suite command."""
    from clbench.render import format_table as report_table

    return report_table(groups)


def results_frame(root: Path | Iterable[Path], include_failed: bool = False) -> "pandas.DataFrame":
    """Every stored run under `root` as one tidy DataFrame: a row per run × after_task × eval_task.

    Columns: `run_id`, `status`, `path`, `measure`, the run's config flattened with dots
    (`seed`, `clbench_version`, `scenario.name`, `scenario.protocol`, `learner.name`,
    `learner.fields.lr`, ...), then its rows (`after_task`, `eval_task`, the value column
    `accuracy` or `bpc`, `n_samples`, `train_seconds`, `eval_seconds`). Failed and unreadable runs
    are left out unless `include_failed`, which gives each of them one row with `status` saying why
    and no cell values. Needs pandas (the `report` extra).
    """
    import pandas as pd

    records = []
    for run in load_runs(root):
        if not run.ok and not include_failed:
            continue
        head = {"run_id": run.run_id, "status": "ok" if run.ok else run.problem, "path": str(run.path),
                "measure": metrics.measure_of(run.config).name if _groupable(run.config) else None,
                **flatten_config(run.config)}
        records += [{**head, **row} for row in run.rows] if run.ok else [head]
    return pd.DataFrame.from_records(records)
