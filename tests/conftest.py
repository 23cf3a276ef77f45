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
