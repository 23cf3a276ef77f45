"""The rotated builder, the named scenarios of the standard benchmarks under every protocol (on
small stand-in arrays, so no dataset file is needed), and a user's .npz through every builder."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from clbench import data
from clbench.data import ArrayDataset, digits
from clbench.errors import UsageError
from clbench.learners.finetune import Finetune
from clbench.scenario_names import NAMED_SCENARIOS, PROTOCOLS, scenario_config
from clbench.runner import run
from clbench.scenario import BUILDERS, DATALESS_BUILDERS, build_scenario, rotate_images, rotated


def test_rotate_images_turns_counter_clockwise_about_the_centre():
    image = np.zeros((1, 1, 5, 5), np.float32)
    image[0, 0, 0, 4] = 1.0  # top right
    assert np.argwhere(rotate_images(image, 90)[0, 0]).tolist() == [[0, 0]]  # to top left
    # the interpolating path agrees with the exact one at (almost) right angles
    x = np.random.default_rng(0).random((3, 2, 9, 9)).astype(np.float32)
    assert np.abs(rotate_images(x, 90.0001) - np.rot90(x, 1, axes=(2, 3))).max() < 1e-3
    assert np.abs(rotate_images(x, 180.0001) - x[:, :, ::-1, ::-1]).max() < 1e-3
    assert np.array_equal(rotate_images(x, 0), x) and np.array_equal(rotate_images(x, 360), x)
    turned = rotate_images(x, 45)
    assert turned.shape == x.shape and turned.dtype == np.float32 and 0 <= turned.min() and turned.max() <= 1
    assert turned[0, 0, 0, 0] == 0  # corners come from outside the frame


def test_rotated_digits_tasks_share_labels_and_differ_by_angle():
    sc = rotated(digits(), n_tasks=4, angle_step=90, protocol="domain_il")
    data_ = digits()
    assert sc.n_outputs == 10 and sc.config["angles"] == [0.0, 90.0, 180.0, 270.0]
    assert torch.equal(sc[0].x_train, torch.from_numpy(data_.x_train))
    assert torch.equal(sc[1].x_train, torch.rot90(sc[0].x_train, 1, dims=(2, 3)))
    assert torch.equal(sc[2].y_test, sc[0].y_test) and sc[3].classes == tuple(range(10))
    ci = rotated(digits(), n_tasks=3, angles=[0, 30, 60], protocol="class_il")
    assert ci.n_outputs == 30 and ci[2].classes == tuple(range(20, 30)) and int(ci[2].y_train.min()) == 20
    ti = rotated(digits(), n_tasks=3, protocol="task_il")
    assert ti[1].known_task_id == 1 and ti.config["angles"] == [0.0, 45.0, 90.0]


@pytest.mark.parametrize("kwargs, message", [
    ({"n_tasks": 3, "angles": [0, 90]}, "one angle per task"),
    ({"n_tasks": 0}, "at least 1"),
    ({"n_tasks": 2, "protocol": "class-il"}, "unknown protocol"),
])
def test_bad_rotated_arguments(kwargs, message):
    with pytest.raises(UsageError, match=message):
        rotated(digits(), **kwargs)


def stand_in(name: str, n_classes: int, shape: tuple[int, ...], per_class: int = 6, uint8: bool = False):
    """A tiny dataset with the shape and classes of a real one."""
    rng = np.random.default_rng(0)

    def make(n):
        x = rng.integers(0, 256, (n * n_classes, *shape), dtype=np.uint8)
        return (x if uint8 else x.astype(np.float32) / 255), np.repeat(np.arange(n_classes), n)

    (x_train, y_train), (x_test, y_test) = make(per_class), make(2)
    return lambda **_: ArrayDataset(name, x_train, y_train, x_test, y_test)


STANDARD = ("split-mnist", "permuted-mnist", "rotated-mnist", "split-fmnist", "permuted-fmnist", "rotated-fmnist",
            "split-cifar10", "split-cifar100", "rotated-digits")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_named_scenario_builds_under_every_protocol(monkeypatch, protocol):
    monkeypatch.setitem(data.SOURCES, "mnist", stand_in("mnist", 10, (1, 28, 28)))
    monkeypatch.setitem(data.SOURCES, "fashion-mnist", stand_in("fashion-mnist", 10, (1, 28, 28)))
    monkeypatch.setitem(data.SOURCES, "cifar10", stand_in("cifar10", 10, (3, 32, 32), uint8=True))
    monkeypatch.setitem(data.SOURCES, "cifar100", stand_in("cifar100", 100, (3, 32, 32), per_class=1, uint8=True))
    assert set(STANDARD) <= set(NAMED_SCENARIOS)
    for name in STANDARD:
        sc = build_scenario(scenario_config(name, protocol))
        assert sc.protocol == protocol and len(sc) == NAMED_SCENARIOS[name]["n_tasks"]
        task = sc[-1]
        assert task.x_train.dtype == torch.float32 and float(task.x_train.max()) <= 1.0
        assert int(task.y_train.max()) < sc.n_outputs and set(task.y_test.tolist()) <= set(task.classes)
        if protocol == "domain_il":
            assert sc.n_outputs == len(task.classes)
    sc = build_scenario(scenario_config("split-cifar100", protocol))
    assert sc.n_outputs == (10 if protocol == "domain_il" else 100)


@pytest.fixture
def user_npz(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "shapes.npz"
    y = np.repeat(np.arange(4), 15)
    x = (rng.random((60, 8, 8)) * 0.3 + y[:, None, None] * 0.15).astype(np.float32)  # separable by brightness
    np.savez(path, x_train=x, y_train=y)
    return path


@pytest.mark.parametrize("builder", sorted(set(BUILDERS) - set(DATALESS_BUILDERS)))  # text reads its own domains
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_user_npz_runs_through_every_builder(user_npz, builder, protocol):
    config = {"builder": builder, "dataset": f"npz:{user_npz}", "n_tasks": 2, "protocol": protocol,
              "split_seed": 3, "name": f"{builder}-npz"}
    sc = build_scenario(config)
    assert sc.config["dataset_info"]["split_seed"] == 3 and sc.config["dataset"] == f"npz:{user_npz}"
    result = run(sc, Finetune(epochs=1, batch_size=16, device="cpu"), seed=0)
    assert result.matrix.shape == (3, 2) and np.isfinite(result.matrix).all()


def test_dataset_options_reach_the_source(user_npz):
    a = build_scenario({"builder": "split", "dataset": f"npz:{user_npz}", "n_tasks": 2, "split_seed": 1})
    b = build_scenario({"builder": "split", "dataset": f"npz:{user_npz}", "n_tasks": 2, "split_seed": 2,
                        "test_fraction": 0.4})
    assert a.config["dataset_info"]["split_seed"] == 1 and sum(len(t.y_test) for t in b) == 24
    with pytest.raises(UsageError, match="has no option 'split_seed'"):
        build_scenario({"builder": "split", "dataset": "digits", "n_tasks": 5, "split_seed": 1})
