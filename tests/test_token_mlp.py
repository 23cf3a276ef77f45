"""The architecture controls of Hope (`token-mlp`, `token-mlp-replay`, `token-mlp-ewc`): Hope's
own network without the memory, trained as fine-tuning, replay and EWC."""
from __future__ import annotations

import pytest
import torch

from clbench.learners.hope import Hope
from clbench.learners.token_mlp import TokenMLP
from clbench.registry import load_learner
from clbench.runner import run

from conftest import small


def test_token_mlp_is_hope_without_memory_fine_tuned_at_one_rate():
    """Same network (parameter names and shapes) as Hope(selfmod=False); from the same initial
    weights and data order, fine-tuning it equals Hope(selfmod=False, levels=(1, 1, 1, 1)) at
    one rate: the control differs from Hope by Hope's mechanisms only."""
    scenario = small("task_il")
    hope = Hope(selfmod=False, levels=(1, 1, 1, 1), level_lrs=(2e-3,) * 4, epochs=1, device="cpu")
    control = TokenMLP(lr=2e-3, epochs=1, device="cpu", reset_optimizer=False)   # Hope never resets
    hope.setup(scenario.spec, 0)
    control.setup(scenario.spec, 0)
    shapes = {n: p.shape for n, p in hope.model_.named_parameters()}
    assert shapes == {n: p.shape for n, p in control.model_.named_parameters()}
    control.model_.load_state_dict(hope.model_.state_dict())
    for task in list(scenario)[:2]:
        hope.fit_task(task.for_training())
        control.fit_task(task.for_training())
    params = dict(control.model_.named_parameters())
    for name, p in hope.model_.named_parameters():
        assert torch.allclose(p, params[name], atol=2e-5, rtol=0), name
    x = scenario[0].x_test[:16]
    assert torch.allclose(hope.predict(x), control.predict(x), atol=1e-4)


@pytest.mark.slow
def test_the_controls_run_by_name():
    """Three short runs (about 25 s on 2 CPUs)."""
    scenario = small("task_il", n_tasks=2)
    for name in ("token-mlp", "token-mlp-replay", "token-mlp-ewc"):
        learner = load_learner(name)(epochs=3, device="cpu")
        assert learner.backbone == "token-mlp"
        rows = run(scenario, learner, seed=0).rows
        final = [r["accuracy"] for r in rows if r["after_task"] == 2]
        assert len(final) == 2 and final[1] > 0.6, (name, final)        # it learns (chance: 0.2)
