"""A learner's declared code version is part of its runs' config, so runs of older code are not reused."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from clbench.configs import code_version, resolve
from clbench.results import run_id
from clbench.scenario_names import scenario_config


@dataclass
class Old:
    lr: float = 0.1


@dataclass
class New(Old):
    code_version: ClassVar[int] = 2


def test_a_declared_code_version_is_recorded_and_absent_otherwise():
    assert code_version(Old) == {} and code_version(New) == {"code_version": 2}


def test_hope_runs_of_the_dual_form_get_new_run_ids():
    config = resolve(scenario_config("split-digits"), "hope", {}, 0)
    assert config["learner"]["code_version"] == 2
    finetune = resolve(scenario_config("split-digits"), "finetune", {}, 0)
    assert "code_version" not in finetune["learner"]
    legacy = {**config, "learner": {k: v for k, v in config["learner"].items() if k != "code_version"}}
    assert run_id(legacy) != run_id(config)
