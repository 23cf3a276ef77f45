"""clbench: a continual-learning benchmark harness.

The public API is re-exported here lazily, so that `import clbench` (and the CLI's
`--help` and `list`) stay fast and never import torch.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Task": "clbench.scenario",
    "Scenario": "clbench.scenario",
    "ScenarioSpec": "clbench.scenario",
    "split": "clbench.scenario",
    "permuted": "clbench.scenario",
    "rotated": "clbench.scenario",
    "text": "clbench.scenario",
    "build_scenario": "clbench.scenario",
    "Learner": "clbench.learner",
    "SGDLearner": "clbench.learner",
    "run_config": "clbench.configs",
    "StoredRun": "clbench.aggregate",
    "run_suite": "clbench.suite",
    "plan_suite": "clbench.suite",
    "SuiteResult": "clbench.suite",
    "run": "clbench.runner",
    "RunResult": "clbench.runner",
    "check_learner": "clbench.testing",
    "load_learner": "clbench.registry",
    "metrics": "clbench.metrics",
    "results_frame": "clbench.aggregate",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(_EXPORTS[name])
        return module if module.__name__.endswith(name) else getattr(module, name)
    raise AttributeError(f"module 'clbench' has no attribute {name!r}")
