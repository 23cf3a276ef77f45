"""Run configs: from what a user names (a scenario, a learner reference, field overrides, a
seed) to the resolved config of a run, from a resolved config to its rows, and `run_config`,
which does both and stores the run (the library behind `clbench run`). The resolved config is
what the run id hashes, so it holds everything that changes the result.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import clbench
from clbench.fields import field_values, make_learner
from clbench.registry import learner_label, load_object, resolve_reference, source_sha256


def resolve(scenario: dict[str, Any], learner: str, overrides: dict[str, Any], seed: int,
            where: str = "--set", name: str | None = None) -> dict[str, Any]:
    """The resolved config: scenario config, learner class and every field value, seed, version.

    `name` labels the learner in results and tables (default: `clbench.registry.learner_label`).
    """
    canonical = resolve_reference(learner)
    cls = load_object(canonical)
    instance = make_learner(cls, overrides, learner, where)
    name = name or learner_label(learner, cls)
    return {
        "clbench_version": clbench.__version__,
        "scenario": with_data_checksum(scenario),
        "learner": {"name": name, "class": canonical, "fields": field_values(instance),
                    "source_sha256": source_sha256(canonical)},
        "seed": int(seed),
    }


def with_data_checksum(scenario: dict[str, Any]) -> dict[str, Any]:
    """The scenario config, plus the sha256 of a user's `npz:` file: the run id then changes when
    the file's content does, and a run never reuses results computed on other data. (The standard
    releases are checked against their published checksums when loaded.)"""
    scenario = dict(scenario)
    dataset = scenario.get("dataset")
    if isinstance(dataset, str) and dataset.startswith("npz:"):
        from clbench.data import file_sha256

        scenario["dataset_sha256"] = file_sha256(dataset[4:])
    return scenario


def instantiate(config: dict[str, Any]):
    """The learner a resolved config describes, built from its recorded field values."""
    cls = load_object(config["learner"]["class"])
    return make_learner(cls, config["learner"]["fields"], config["learner"]["name"], "config")


def execute(config: dict[str, Any], progress=None):
    """Run a resolved config and return its `RunResult` (no I/O)."""
    from clbench.runner import run
    from clbench.scenario import build_scenario

    scenario = build_scenario(config["scenario"])
    return run(scenario, instantiate(config), config["seed"], progress=progress)


@dataclass
class StoredRun:
    """A run as stored under a results folder: its directory, its record (run.json: the resolved
    config, run id, status, environment) and its rows; `reused` when `run_config` found the
    identical finished run instead of running it."""

    path: Path
    record: dict[str, Any]
    rows: list[dict]
    reused: bool = False

    @property
    def run_id(self) -> str:
        return self.record["run_id"]

    @property
    def config(self) -> dict[str, Any]:
        """The resolved config: scenario, learner (name, class, fields), seed, clbench version."""
        return self.record["config"]

    @property
    def matrix(self):
        """The accuracy matrix R, shape (T+1, T): row 0 untrained, row i after training task i."""
        from clbench.results import matrix_from_rows

        return matrix_from_rows(self.rows)


def run_config(scenario: str | dict[str, Any] = "split-digits", learner: str = "finetune", seed: int = 0, *,
               protocol: str | None = None, overrides: dict[str, Any] | None = None,
               results: str | Path = "results", force: bool = False, threads: int | None = None,
               progress: Callable[[int, list[dict]], None] | None = None) -> StoredRun:
    """Run one learner on one scenario and store the run under `results`, or reuse the identical
    finished run there (unless `force`).

    `scenario` is a named scenario (`clbench list scenarios`) or a builder config (a dict with
    `builder`, `dataset`, its arguments, `name` and `protocol`); `learner` a short name,
    `module:Class`, `file.py:Class` or `PREFIX:NAME`; `overrides` set learner fields (strings are
    coerced to the field's type, as `--set` does); `threads` sets torch's threads for the run;
    `progress(after_task, rows)` is called after row 0 and after each task.
    """
    from clbench.results import find_run, read_run, run_id, write_run
    from clbench.scenario_names import check_protocol, scenario_config

    if isinstance(scenario, str):
        scenario = scenario_config(scenario, protocol)
    elif protocol is not None:
        scenario = {**scenario, "protocol": check_protocol(protocol)}
    config = resolve(scenario, learner, dict(overrides or {}), seed)
    existing = None if force else find_run(Path(results), run_id(config))
    if existing is None:
        if threads is not None:
            from clbench.executors import use_threads

            use_threads(threads)
        result = execute(config, progress=progress)
        existing = write_run(Path(results), config, result.rows, files=result.files)
        record, rows = read_run(existing)
        return StoredRun(existing, record, rows)
    record, rows = read_run(existing)
    return StoredRun(existing, record, rows, reused=True)
