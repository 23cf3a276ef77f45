"""From what a user names (a scenario, a learner reference, field overrides, a seed) to the
resolved config of a run, and from a resolved config to its rows. The resolved config is
what the run id hashes, so it holds everything that changes the result.
"""
from __future__ import annotations

from typing import Any

import clbench
from clbench.config import field_values, make_learner
from clbench.errors import UsageError
from clbench.registry import AVALANCHE_PREFIX, SEQUENCE_BACKBONES, load_object, resolve_reference, source_sha256


def resolve(scenario: dict[str, Any], learner: str, overrides: dict[str, Any], seed: int,
            where: str = "--set", name: str | None = None) -> dict[str, Any]:
    """The resolved config: scenario config, learner class and every field value, seed, version.

    `name` labels the learner in results and tables (default: the short name or `avalanche:Name`,
    or the class name in lower case for a `module:Class` or file reference).
    """
    canonical = resolve_reference(learner)
    cls = load_object(canonical)
    instance = make_learner(cls, overrides, learner, where)
    name = name or (learner if ":" not in learner or learner.startswith(AVALANCHE_PREFIX) else cls.__name__.lower())
    scenario = with_data_checksum(scenario)
    backbone = getattr(instance, "backbone", None)
    if scenario.get("measure") == "bpc" and isinstance(backbone, str) and backbone not in SEQUENCE_BACKBONES:
        raise UsageError(f"{where}: scenario {scenario.get('name')!r} is a text stream, which needs a sequence model, "
                         f"not backbone {backbone!r}: --learner transformer, or --set backbone=transformer "
                         f"--set widths=192,4,4 (width, depth, heads)")
    return {
        "clbench_version": clbench.__version__,
        "scenario": scenario,
        "learner": {"name": name, "class": canonical, "fields": field_values(instance),
                    "source_sha256": source_sha256(canonical)},
        "seed": int(seed),
    }


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
