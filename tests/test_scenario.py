from __future__ import annotations

import numpy as np
import pytest
import torch

from clbench.data import digits, stratified_split
from clbench.errors import UsageError
from clbench.scenario import build_scenario, permuted, split

from conftest import small


def test_digits_split_is_fixed_stratified_and_disjoint():
    data = digits()
    assert data.x_train.shape[1:] == (1, 8, 8) and data.x_train.dtype == np.float32
    assert len(data.y_train) + len(data.y_test) == 1797
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    # every class loses ~25% to test
    for c in range(10):
        n_test, n_all = (data.y_test == c).sum(), (data.y_test == c).sum() + (data.y_train == c).sum()
        assert abs(n_test / n_all - 0.25) < 0.01
    train, test = stratified_split(np.repeat(np.arange(3), 10), 0.2, seed=1)
    assert set(train).isdisjoint(test) and len(train) + len(test) == 30
    assert np.array_equal(test, stratified_split(np.repeat(np.arange(3), 10), 0.2, seed=1)[1])


def test_split_class_il_units_are_blocks_in_class_order():
    sc = split(digits(), n_tasks=5, class_order=[9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    assert sc.n_outputs == 10 and len(sc) == 5
    assert sc[0].classes == (0, 1) and sc[0].source_classes == (9, 8)
    # task 0 holds the images of digits 9 and 8, labelled as units 0 and 1
    data = digits()
    assert len(sc[0].y_train) == int(np.isin(data.y_train, [9, 8]).sum())
    assert set(sc[0].y_train.tolist()) == {0, 1}
    nines = torch.from_numpy(data.x_train[data.y_train == 9])
    assert torch.equal(sc[0].x_train[sc[0].y_train == 0], nines)
    assert sc[0].known_task_id is None


def test_split_order_seed_and_protocols():
    a = split(digits(), 5, order_seed=3)
    b = split(digits(), 5, order_seed=3)
    assert a.config["class_order"] == b.config["class_order"] != list(range(10))
    t = split(digits(), 5, protocol="task_il")
    assert t[2].known_task_id == 2 and t[2].classes == (4, 5)
    d = split(digits(), 5, protocol="domain_il")
    assert d.n_outputs == 2 and all(task.classes == (0, 1) for task in d)
    assert set(d[3].y_test.tolist()) == {0, 1} and d[3].source_classes == (6, 7)


def test_permuted_tasks_share_labels_and_differ_by_pixel_order():
    sc = permuted(digits(), n_tasks=3, protocol="domain_il", perm_seed=0)
    data = digits()
    assert torch.equal(sc[0].x_train, torch.from_numpy(data.x_train))  # first task unpermuted
    flat0, flat1 = sc[0].x_train.flatten(1), sc[1].x_train.flatten(1)
    assert not torch.equal(flat0, flat1)
    assert torch.equal(flat0.sort(1).values, flat1.sort(1).values)  # same pixels, new places
    assert torch.equal(sc[1].y_train, sc[0].y_train) and sc.n_outputs == 10
    ci = permuted(digits(), n_tasks=3, protocol="class_il")
    assert ci.n_outputs == 30 and ci[2].classes == tuple(range(20, 30)) and int(ci[2].y_train.min()) == 20
    again = permuted(digits(), n_tasks=3, perm_seed=0)
    assert torch.equal(again[2].x_test, sc[2].x_test)


def test_scenario_is_sliceable_and_reiterable():
    sc = small()
    head = sc[:2]
    assert len(head) == 2 and head.n_outputs == 10 and head.spec.n_tasks == 2
    assert [t.task_id for t in sc] == [t.task_id for t in sc] == [0, 1, 2, 3, 4]


def test_training_view_has_no_test_data():
    task = small()[0].for_training()
    assert task.x_test is None and task.y_test is None and task.x_train is not None


def test_validation_split_never_touches_test_data():
    sc = build_scenario({"builder": "split", "dataset": "digits", "n_tasks": 5, "protocol": "class_il",
                         "eval_split": "val"})
    data = digits()
    n_train = sum(len(t.y_train) for t in sc)
    n_val = sum(len(t.y_test) for t in sc)
    assert n_train + n_val == len(data.y_train)
    test_rows = {r.tobytes() for r in data.x_test.reshape(len(data.x_test), -1)}
    val_rows = [r.numpy().tobytes() for t in sc for r in t.x_test.flatten(1)]
    assert sum(r in test_rows for r in val_rows) < 5  # digits has a few duplicate images at most


@pytest.mark.parametrize("config, message", [
    ({"builder": "split", "n_tasks": 11}, "n_tasks must be between 1 and 10"),
    ({"builder": "split", "n_tasks": 3, "protocol": "domain_il"}, "same number of classes"),
    ({"builder": "split", "n_tasks": 5, "class_order": [0, 1]}, "permutation"),
    ({"builder": "splt", "n_tasks": 5}, "did you mean 'split'"),
    ({"builder": "split", "n_tasks": 5, "protocol": "taskil"}, "unknown protocol"),
    ({"builder": "split", "n_tasks": 5, "bogus": 1}, "bad arguments"),
])
def test_bad_scenario_configs_are_usage_errors(config, message):
    with pytest.raises(UsageError, match=message):
        build_scenario(config)
