"""Run configs: from what a user names (a scenario, a learner reference, field overrides, a
seed) to the resolved config of a run, from a resolved config to its rows, and `run_config`,
which does both and stores the run (the library behind `clbench run`). The resolved config is
what the run id hashes, so it holds everything that changes the result.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import clbench
from clbench.aggregate import StoredRun
from clbench.errors import UsageError
from clbench.fields import field_values, make_learner
from clbench.learner import check_learner_protocol
from clbench.registry import SEQUENCE_BACKBONES, learner_label, load_object, resolve_reference, source_sha256


def resolve(scenario: dict[str, Any], learner: str, overrides: dict[str, Any], seed: int,
            where: str = "--set", name: str | None = None) -> dict[str, Any]:
    """The resolved config: scenario config, learner class and every field value, seed, version.

    `name` labels the learner in results and tables (default: `clbench.registry.learner_label`).
    """
    from clbench.suite_file import check_seed

    check_seed(seed, "seed")
    canonical = resolve_reference(learner)
    cls = load_object(canonical)
    instance = make_learner(cls, overrides, learner, where)
    name = name or learner_label(learner, cls)
    if "protocol" in scenario:
        check_learner_protocol(cls, scenario["protocol"], name)
    scenario = with_data_checksum(scenario)
    backbone = getattr(instance, "backbone", None)
    if scenario.get("measure") == "bpc" and isinstance(backbone, str) and backbone not in SEQUENCE_BACKBONES:
        raise UsageError(f"{where}: scenario {scenario.get('name')!r} is a text stream, which needs a sequence model, "
                         f"not backbone {backbone!r}: --learner transformer, or --set backbone=transformer "
                         f"--set widths=192,4,4 (width, depth, heads)")
    return {
        "clbench_version": clbench.__version__,
        "scenario": scenario,
        "learner": {"name": name, "class": canonical, "fields": field_values(instance), **code_identity(canonical, cls)},
        "seed": int(seed),
    }


def code_identity(canonical: str, cls: type | None = None) -> dict[str, Any]:
    """What a run's config records of the learner's code: a learner file's source hash (None for a
    built-in) and the `code_version` its class (`cls`, loaded if not given) declares, so that changed
    code gets new run ids."""
    return {"source_sha256": source_sha256(canonical), **code_version(cls or load_object(canonical))}


def code_version(cls: type) -> dict[str, int]:
    """`{"code_version": N}` for a learner class that declares `code_version = N` (bumped when a
    change alters what its runs compute), else nothing: runs recorded by older code then get new
    run ids and are never reused or grouped with the new ones."""
    version = getattr(cls, "code_version", None)
    return {} if version is None else {"code_version": int(version)}


def with_data_checksum(scenario: dict[str, Any]) -> dict[str, Any]:
    """The scenario config, plus the sha256 of a user's `npz:` file, or of each text domain's text
    (which varies with the Python and scikit-learn versions for the embedded domains): the run id
    then changes when the data does, and a run never reuses results computed on other data. (The
    standard releases are checked against their published checksums when loaded.) A text stream
    also declares its measure, bits per character."""
    scenario = dict(scenario)
    if scenario.get("builder") == "text":
        from clbench.text_data import stream_checksums

        domains = scenario.get("domains", [])
        scenario["measure"] = "bpc"
        scenario["text_sha256"] = stream_checksums([domains] if isinstance(domains, str) else domains)
        return scenario
    dataset = scenario.get("dataset")
    if isinstance(dataset, str) and dataset.startswith("npz:"):
        from clbench.data import check_npz

        options = {k: scenario[k] for k in ("test_fraction", "split_seed") if k in scenario}
        scenario["dataset_sha256"] = check_npz(dataset[4:], **options)
    return scenario


def instantiate(config: dict[str, Any]):
    """The learner a resolved config describes, built from its recorded field values."""
    cls = load_object(config["learner"]["class"])
    return make_learner(cls, config["learner"]["fields"], config["learner"]["name"], "config")


def execute(config: dict[str, Any], progress=None, checkpoint=None):
    """Run a resolved config and return its `RunResult`; with a `clbench.checkpoint.Checkpoint`,
    save per-task checkpoints there and resume from the last one."""
    from clbench.runner import run
    from clbench.scenario import build_scenario

    scenario = build_scenario(config["scenario"])
    return run(scenario, instantiate(config), config["seed"], progress=progress, checkpoint=checkpoint)


def run_config(scenario: str | dict[str, Any] = "split-digits", learner: str = "finetune", seed: int = 0, *,
               protocol: str | None = None, overrides: dict[str, Any] | None = None,
               results: str | Path = "results", force: bool = False, threads: int | None = None,
               progress: Callable[[int, list[dict]], None] | None = None,
               keep_checkpoints: bool = False) -> StoredRun:
    """Run one learner on one scenario and store the run under `results`, or reuse the identical
    finished run there (unless `force`).

    `scenario` is a named scenario (`clbench list scenarios`) or a builder config (a dict with
    `builder`, `dataset`, its arguments, `name` and `protocol`); `learner` a short name,
    `module:Class`, `file.py:Class` or `PREFIX:NAME`; `overrides` set learner fields (strings are
    coerced to the field's type, as `--set` does); `threads` sets torch's threads for the run;
    `progress(after_task, rows)` is called after row 0 and after each task. The run saves a
    checkpoint after each task under RESULTS/.ckpt-<run id> and, started again after being killed,
    resumes from it; the checkpoints are removed once the run is written, unless `keep_checkpoints`.
    """
    from clbench.results import check_output_folder, find_run, read_run, run_id, write_run
    from clbench.scenario_names import check_protocol, scenario_config

    if isinstance(scenario, str):
        scenario = scenario_config(scenario, protocol)
    elif protocol is not None:
        scenario = {**scenario, "protocol": check_protocol(protocol)}
    config = resolve(scenario, learner, dict(overrides or {}), seed)
    results = check_output_folder(Path(results))
    rid = run_id(config)
    existing = None if force else find_run(results, rid)
    if existing is not None:
        return StoredRun(existing, *read_run(existing), reused=True)
    if threads is not None:
        from clbench.executors import use_threads

        use_threads(threads)
    from clbench.checkpoint import Checkpoint

    checkpoint = Checkpoint.for_run(results, rid)
    if force:
        checkpoint.remove()
    result = _execute_or_record(config, results, progress, checkpoint)
    path = write_run(results, config, result.rows, files=result.files)
    if not keep_checkpoints:
        checkpoint.remove()
    return StoredRun(path, *read_run(path))  # the record write_run made; rows as a reused run gives them


def _execute_or_record(config: dict[str, Any], results: Path, progress, checkpoint=None):
    """The `RunResult` of a run; when it fails, the failed run (rows so far, reason, traceback) is
    written under `results` as a suite writes it, and `RunFailed` names its traceback file."""
    import traceback

    from clbench.errors import RunFailed, one_line
    from clbench.results import write_run

    rows: list[dict] = []

    def collect(after_task: int, new: list[dict]) -> None:
        rows.extend(new)
        if progress is not None:
            progress(after_task, new)

    try:
        return execute(config, progress=collect, checkpoint=checkpoint)
    except UsageError:  # a mistake in the config found only when the run starts: exit 2, nothing recorded
        raise
    except Exception as err:  # noqa: BLE001 - recorded as a failed run, reported in one line
        message = one_line(err)
        text = traceback.format_exc()
        path = write_run(results, config, rows, status="failed", extra={"error": message, "traceback": text},
                         files={"traceback.txt": text})
        raise RunFailed(f"the run failed: {message}", path / "traceback.txt") from None
