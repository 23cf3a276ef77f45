"""The where-forgetting diagnostic (clbench.rollback): replay with snapshots, roll groups back."""
from __future__ import annotations

import pytest

from clbench.configs import execute, resolve
from clbench.rollback import group_of, max_difference, replay_with_snapshots, rollback_table

SCENARIO = {"builder": "split", "dataset": "digits", "n_tasks": 3, "protocol": "task_il"}
TINY = dict(d=8, heads=2, n_blocks=1, cms_levels=2, cms_expansion=2, n_tokens=16, chunk_mem=2, chunk_other=4,
            epochs=1, device="cpu")


def test_group_names():
    assert group_of("blocks.1.cms.2.mlp.0.weight") == "cms level 3"
    assert group_of("blocks.0.mixer.mem_in0") == "memory initial states"
    assert group_of("blocks.0.mixer.conv.q.weight") == "mixer (other)"
    assert group_of("encoder.stem.0.bias") == "encoder" and group_of("head.weight") == "head"
    assert group_of("norm.weight") == "norms" and group_of("3.weight") == "3"


@pytest.mark.slow
def test_replay_reproduces_the_run_and_rollbacks_are_exact():
    """Two tiny Hope runs (about 20 s on 2 CPUs)."""
    # the backbone level (encoder, memories) never steps: rolling it back changes nothing
    config = resolve(SCENARIO, "hope", {**TINY, "levels": (1, 2, 10 ** 6), "level_lrs": (3e-3,) * 3,
                                        "backbone_level": 3}, seed=0)
    with pytest.warns(UserWarning, match="never update"):
        stored = execute(config).rows
    with pytest.warns(UserWarning, match="never update"):
        replayed = replay_with_snapshots(config)
    assert max_difference(replayed.rows, stored) == 0
    table = rollback_table(replayed)
    matrix = {(r["after_task"], r["eval_task"]): r["accuracy"] for r in stored}
    by = {(r["group"], r["task"]): r for r in table}
    assert {t for _, t in by} == {1, 2}                               # every task but the last
    for j in (1, 2):
        assert by["all", j]["rolled_back"] == matrix[j, j]           # everything back = just after learning j
        assert by["all", j]["final"] == matrix[3, j]
        for group in ("encoder", "memory initial states"):
            assert by[group, j]["moved"] == 0 and by[group, j]["gain"] == 0
    assert by["head", 1]["moved"] > 0
    final = replayed.learner.predict(replayed.scenario[0].x_test[:8])  # the learner is left at its end state
    for name, p in replayed.learner.model_.named_parameters():
        assert (p == replayed.snapshots[-1][name]).all(), name
    assert final.shape[0] == 8
