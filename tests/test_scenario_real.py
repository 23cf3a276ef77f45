"""Slow tests on the real Fashion-MNIST (Debian package `dataset-fashion-mnist`, or the four IDX files
in $CLBENCH_DATA/fashion-mnist): checksums, sizes, the three builders, and the van de Ven Split
protocol at reduced scale. Skipped with a message when the data is absent; never replaced by other data.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from clbench import data, metrics
from clbench.learners.finetune import Finetune
from clbench.learners.replay import Replay
from clbench.scenario_names import scenario_config
from clbench.runner import run
from clbench.scenario import build_scenario, permuted, rotated, split

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fmnist():
    try:
        return data.fashion_mnist()
    except data.MissingDataError as err:
        pytest.skip(f"Fashion-MNIST is not installed: apt-get install dataset-fashion-mnist (Debian package "
                    f"dataset-fashion-mnist), or put the four IDX files in $CLBENCH_DATA/fashion-mnist ({err})")


@pytest.fixture
def one_thread():
    """One intra-op thread: on a busy 2-core machine torch's thread pool slows small MLPs 20-fold."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_fashion_mnist_is_the_official_release(fmnist):
    assert set(fmnist.info["verified"].values()) == {"sha256"}, fmnist.info
    assert fmnist.x_train.shape == (60000, 1, 28, 28) and fmnist.x_test.shape == (10000, 1, 28, 28)
    assert fmnist.x_train.dtype == np.float32 and fmnist.x_train.min() == 0 and fmnist.x_train.max() == 1
    assert np.bincount(fmnist.y_train).tolist() == [6000] * 10
    assert np.bincount(fmnist.y_test).tolist() == [1000] * 10


def test_builders_on_fashion_mnist(fmnist):
    s = split(fmnist, 5, protocol="task_il")
    assert [len(t.y_train) for t in s] == [12000] * 5 and [len(t.y_test) for t in s] == [2000] * 5
    assert s[4].source_classes == (8, 9) and s[4].classes == (8, 9)
    p = permuted(fmnist, 3, protocol="domain_il")
    assert p.n_outputs == 10 and len(p[2].y_train) == 60000
    assert torch.equal(p[1].x_test.flatten(1).sort(1).values, p[0].x_test.flatten(1).sort(1).values)
    r = rotated(fmnist, 3, angle_step=90, protocol="class_il")
    assert r.n_outputs == 30 and torch.equal(r[1].x_test, torch.rot90(r[0].x_test, 1, dims=(2, 3)))
    assert r.config["dataset_info"]["verified"]["t10k-images-idx3-ubyte.gz"] == "sha256"


def test_vandeven_split_protocol_at_reduced_scale(fmnist, one_thread):
    """van de Ven et al. 2022 Split protocol (2x400 MLP, Adam 0.001, batch 128) with 100 instead of
    2,000 iterations per task: class-IL fine-tuning forgets all but the last task, replay does not,
    and task-IL fine-tuning stays far above its class-IL value."""
    common = dict(backbone="mlp400", optimizer="adam", lr=0.001, batch_size=128, iterations=100, device="cpu")
    class_il = build_scenario(scenario_config("split-fmnist", "class_il"))
    finetune = metrics.acc(run(class_il, Finetune(**common), seed=0).matrix)
    replay = metrics.acc(run(class_il, Replay(**common, buffer_size=1000, class_balanced=True), seed=0).matrix)
    task_il = build_scenario(scenario_config("split-fmnist", "task_il"))
    finetune_task = metrics.acc(run(task_il, Finetune(**common), seed=0).matrix)
    assert finetune < 0.25  # about 1/5: only the last task's two classes are predicted
    assert replay > finetune + 0.35
    assert finetune_task > finetune + 0.3
