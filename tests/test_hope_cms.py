"""The CMS rule of the Hope learner (arXiv 2512.24695 Eq. 71): a level of period P steps its
optimiser with the accumulation of exactly its last P gradients, summed or averaged
(`cms_reduce`), and nothing else reaches its optimiser."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from clbench.learners.hope import Hope

from conftest import small

TINY = dict(d=8, heads=2, n_blocks=1, cms_expansion=2, n_tokens=16, chunk_mem=2, chunk_other=4)


def _record_optimiser_steps(learner: Hope) -> list[list[tuple[int, list[torch.Tensor]]]]:
    """Wrap each level's optimiser so that every step records (stream step, the gradients it saw)."""
    seen: list[list[tuple[int, list[torch.Tensor]]]] = [[] for _ in learner.levels]
    for level, opt in enumerate(learner.optimizers_):
        step = opt.step

        def recording(*args, _level=level, _step=step, **kwargs):
            grads = [p.grad.detach().clone() for p in learner.level_params_[_level]]
            seen[_level].append((learner.step_, grads))
            return _step(*args, **kwargs)
        opt.step = recording
    return seen


@pytest.mark.parametrize("reduce", ["mean", "sum"])
def test_a_level_steps_with_exactly_its_last_period_gradients(reduce):
    """Each step's gradient is recomputed independently on a copy of the model at that step; a
    level of period P must step at steps P, 2P, ... with the sum (or mean) of the gradients of
    steps kP−P+1 .. kP — not the last one only, not with one skipped, not P ± 1 of them."""
    scenario = small("domain_il")
    periods = (1, 2, 3, 5)
    learner = Hope(**TINY, cms_levels=3, levels=periods, level_lrs=(1e-3,) * 4, backbone_level=4,
                   cms_reduce=reduce)
    learner.setup(scenario.spec, 0)
    seen = _record_optimiser_steps(learner)
    task = scenario[0]
    index = {id(p): i for i, p in enumerate(learner.model_.parameters())}
    history = []                                         # per step: every parameter's gradient
    n_steps = 16
    for step in range(n_steps):
        idx = torch.arange(step * 8, step * 8 + 8) % len(task.y_train)
        x, y = task.x_train[idx], task.y_train[idx]
        reference = copy.deepcopy(learner.model_)
        grads = torch.autograd.grad(F.cross_entropy(reference(x), y), list(reference.parameters()))
        history.append(grads)
        learner.train_step(x, y, None)
    for level, period in enumerate(periods):
        steps = [s for s, _ in seen[level]]
        assert steps == list(range(period, n_steps + 1, period)), (level, steps)
        for at, grads in seen[level]:
            window = history[at - period:at]             # gradients of steps at−P+1 .. at
            for p, got in zip(learner.level_params_[level], grads):
                i = index[id(p)]
                expected = sum(g[i] for g in window)
                if reduce == "mean":
                    expected = expected / period
                assert torch.allclose(got, expected, rtol=1e-4, atol=1e-7), (level, at)
    # the window's gradients differ from step to step, so a rule that dropped one would be caught
    assert not torch.allclose(history[0][0], history[1][0])


def test_sum_scales_the_level_learning_rate_by_its_period():
    """With Adam (scale-invariant in its gradient), Eq. 71's sum of P errors moves a level P times
    further than the mean: the sum is applied as the mean's direction at P times the level rate."""
    scenario = small("domain_il")
    runs = {}
    for reduce in ("mean", "sum"):
        learner = Hope(**TINY, cms_levels=2, levels=(1, 4, 4), level_lrs=(1e-3, 1e-3, 1e-3), backbone_level=3,
                       cms_reduce=reduce)
        learner.setup(scenario.spec, 0)
        lrs = []
        for opt in learner.optimizers_:
            step = opt.step

            def recording(*args, _opt=opt, _step=step, **kwargs):
                lrs.append(_opt.param_groups[0]["lr"])
                return _step(*args, **kwargs)
            opt.step = recording
        start = [p.detach().clone() for p in learner.level_params_[1]]
        for step in range(4):
            idx = torch.arange(step * 8, step * 8 + 8)
            learner.train_step(scenario[0].x_train[idx], scenario[0].y_train[idx], None)
        runs[reduce] = (lrs, [(p - q).norm().item() for p, q in zip(learner.level_params_[1], start)])
    assert runs["mean"][0] == [1e-3] * 4 + [1e-3, 1e-3]
    assert runs["sum"][0] == [1e-3] * 4 + [4e-3, 4e-3]
    # Adam's first step moves each weight by ≈ its rate: the period-4 level moves ≈ 4 times further
    for moved_mean, moved_sum in zip(runs["mean"][1], runs["sum"][1]):
        assert moved_sum == pytest.approx(4 * moved_mean, rel=0.05)


def test_periods_in_examples_are_whole_batches_and_may_outlast_a_task():
    from clbench.errors import UsageError

    learner = Hope(**TINY, levels=(32, 128, 4096, 32768), period_unit="examples", batch_size=32)
    assert learner.periods == (1, 4, 128, 1024)
    with pytest.raises(UsageError, match="batch_size"):
        Hope(**TINY, levels=(32, 100, 128, 256), period_unit="examples")
    for bad in ((1, 2.5, 4, 8), (1, 0, 4, 8)):
        with pytest.raises(UsageError, match="levels"):
            Hope(**TINY, levels=bad)
    with pytest.raises(UsageError, match="cms_reduce"):
        Hope(**TINY, cms_reduce="median")
    scenario = small("class_il")
    learner = Hope(**{**TINY, "cms_levels": 3}, levels=(32, 64, 10 ** 6, 64), period_unit="examples",
                   epochs=1)
    learner.setup(scenario.spec, 0)
    with pytest.warns(UserWarning, match=r"level 3 \(period 31250 steps\)"):
        learner.fit_task(scenario[0].for_training())
