"""Shared test helpers."""
from __future__ import annotations

import torch

from clbench.scenario import build_scenario

# The models under test are tiny: one thread is faster than several and keeps parallel test
# workers from oversubscribing the cores.
torch.set_num_threads(1)


def small(protocol: str = "class_il", builder: str = "split", n_tasks: int = 5):
    """A small scenario on the embedded digits: `builder` over `n_tasks` tasks under `protocol`."""
    return build_scenario({"builder": builder, "dataset": "digits", "n_tasks": n_tasks, "protocol": protocol})


def fit_tasks(learner, scenario, n_tasks):
    """`learner` set up for `scenario` and trained on its first `n_tasks` tasks (seed 0)."""
    from clbench.runner import seed_everything

    seed_everything(0)
    learner.setup(scenario.spec, 0)
    for task in scenario[:n_tasks]:
        learner.fit_task(task.for_training())
    return learner
