"""Where forgetting sits: for a finished run, how much of an old task's accuracy returns when one
group of parameters (a CMS level, the encoder, the memories' initial states, the head, ...) is
rolled back to its values right after that task was learned, the rest kept at the end of the run.

The runner keeps no per-task weights, so `replay_with_snapshots` runs the config again through the
runner itself and copies the model after every task; the rows it returns are checked against the
stored ones before the snapshots are trusted (`max_difference`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from clbench.lazy import lazy_import
from clbench.results import value_column

torch = lazy_import("torch")  # see clbench.lazy

MEMORY_STATES = ("proj_in0", "proj_out0", "mem_in0", "mem_out0")


def group_of(name: str) -> str:
    """The group of a parameter of Hope's network (or of the token-mlp control). Names outside
    that network are grouped by their first component (e.g. `0.weight` -> `0`)."""
    if name.startswith("encoder."):
        return "encoder"
    if name.startswith("head."):
        return "head"
    match = re.match(r"blocks\.\d+\.cms\.(\d+)\.", name)
    if match:
        return f"cms level {int(match.group(1)) + 1}"
    match = re.match(r"blocks\.\d+\.mixer\.([^.]+)", name)
    if match:
        return "memory initial states" if match.group(1) in MEMORY_STATES else "mixer (other)"
    if re.match(r"(blocks\.\d+\.mixer_norm|norm)\.", name):
        return "norms"
    return name.split(".")[0]


@dataclass
class Replayed:
    """A run replayed with the model copied after every task: rows as the runner gives them, and
    `snapshots[i]` the parameters after task i (0: before training)."""

    learner: Any
    scenario: Any
    rows: list[dict]
    snapshots: list[dict[str, torch.Tensor]]


def replay_with_snapshots(config: dict[str, Any]) -> Replayed:
    """Run a resolved config (a run.json's `config`) again through `clbench.runner.run`, copying
    the learner's model parameters after every row. Evaluation does not change a learner, so
    the copies are the states the stored run passed through."""
    from clbench.configs import instantiate
    from clbench.runner import run
    from clbench.scenario import build_scenario

    scenario = build_scenario(config["scenario"])
    learner = instantiate(config)
    snapshots: list[dict[str, torch.Tensor]] = []

    def snapshot(after_task: int, rows: list[dict]) -> None:
        snapshots.append({n: p.detach().clone() for n, p in learner.model_.named_parameters()})

    result = run(scenario, learner, config["seed"], progress=snapshot)
    return Replayed(learner, scenario, result.rows, snapshots)


def max_difference(rows: list[dict], stored: list[dict]) -> float:
    """The largest absolute difference of the measure (accuracy, or bpc on a text stream) between
    two runs' rows (same cells)."""
    key = lambda r: (r["after_task"], r["eval_task"])
    column = value_column(stored)
    theirs = {key(r): r[column] for r in stored}
    return max(abs(r[column] - theirs[key(r)]) for r in rows)


def rollback_table(replayed: Replayed) -> list[dict]:
    """Per group and old task j (every task but the last): the final accuracy on task j, the
    accuracy with that group rolled back to its values after task j, and the group's relative
    movement over the whole run (||θ_end − θ_0|| / ||θ_0||). Group "all" rolls back every
    parameter (the accuracy just after learning j); the learner is left at its final state."""
    from clbench.runner import accuracy

    model, final = replayed.learner.model_, replayed.snapshots[-1]
    params = dict(model.named_parameters())
    groups: dict[str, list[str]] = {}
    for name in params:
        groups.setdefault(group_of(name), []).append(name)
    groups["all"] = list(params)
    n_tasks = len(replayed.snapshots) - 1
    table = []
    try:
        for group, names in groups.items():
            start = torch.cat([replayed.snapshots[0][n].flatten() for n in names])
            end = torch.cat([final[n].flatten() for n in names])
            moved = float((end - start).norm() / start.norm().clamp_min(1e-12))
            for j in range(1, n_tasks):
                task = replayed.scenario[j - 1]
                with torch.no_grad():
                    for n in params:
                        params[n].copy_(replayed.snapshots[j][n] if n in names else final[n])
                rolled, _ = accuracy(replayed.learner, task)
                table.append({"group": group, "task": j, "n_parameters": sum(params[n].numel() for n in names),
                              "moved": moved, "rolled_back": rolled})
    finally:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(final[n])
    finals = {r["eval_task"]: r["accuracy"] for r in replayed.rows if r["after_task"] == n_tasks}
    for row in table:
        row["final"] = finals[row["task"]]
        row["gain"] = row["rolled_back"] - row["final"]
    return table
