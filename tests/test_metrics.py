"""Tests for clbench.metrics against the worked example in docs/metrics.md and hand-computed cases."""
from __future__ import annotations

import math

import numpy as np
import pytest

from clbench import metrics as m

from report_fixtures import BPC_EXAMPLE, EXAMPLE  # worked matrices: accuracy, bits per character

# Every task keeps its accuracy once learned.
PERFECT_RETENTION = np.array(
    [
        [0.10, 0.10, 0.10],
        [0.90, 0.20, 0.10],
        [0.90, 0.80, 0.10],
        [0.90, 0.80, 0.70],
    ]
)


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (m.acc, 0.8325),
        (m.bwt, -0.1233),
        (lambda R: m.bwt(R, divisor="T"), -0.0925),
        (m.fwt, 0.0033),
        (lambda R: m.fwt(R, divisor="T"), 0.0025),
        (m.forgetting, 0.1300),
        (lambda R: m.forgetting(R, variant="max_all_clipped"), 0.1400),
        (lambda R: m.forgetting(R, variant="first_minus_last"), 0.1233),
        (m.learning_acc, 0.9250),
        (m.avg_inc_acc, 0.8594),
        (m.dr_a, 0.8520),
        (m.dr_bwt, -0.1167),
    ],
    ids=[
        "acc", "bwt", "bwt_gem_code", "fwt", "fwt_gem_code", "forgetting_chaudhry",
        "forgetting_max_clipped", "forgetting_avalanche", "learning_acc", "avg_inc_acc",
        "dr_a", "dr_bwt",
    ],
)
def test_worked_example(fn, expected):
    assert fn(EXAMPLE) == pytest.approx(expected, abs=1e-4)


def test_registry_names_match_worked_example():
    expected = {
        "bwt_gem_code": -0.0925,
        "fwt_gem_code": 0.0025,
        "forgetting_max_clipped": 0.1400,
        "forgetting_avalanche": 0.1233,
    }
    got = m.compute(EXAMPLE, expected)
    assert got == pytest.approx(expected, abs=1e-4)


def test_metric_records_declare_direction_and_unit():
    assert set(m.HEADLINE) <= set(m.METRICS)
    assert all(name == record.name for name, record in m.METRICS.items())
    assert not m.METRICS["forgetting"].better_high() and not m.METRICS["forgetting_avalanche"].better_high()
    assert m.METRICS["bwt"].better_high() and m.METRICS["acc"].better_high()
    assert m.METRICS["acc"].unit() == "%" and m.METRICS["bwt"].unit() == "pp"
    # Under bits per character a level metric turns lower-is-better; a change metric keeps its direction.
    assert not m.METRICS["acc"].better_high("bpc") and not m.METRICS["learning_acc"].better_high("bpc")
    assert m.METRICS["bwt"].better_high("bpc") and not m.METRICS["forgetting"].better_high("bpc")
    assert m.METRICS["acc"].unit("bpc") == m.METRICS["forgetting"].unit("bpc") == "bits/char"
    assert m.METRICS["acc"].short("bpc") == "final average bits per character (Lopez-Paz & Ranzato 2017)"
    assert m.METRICS["fwt"].undefined_in == {"class_il"}


def test_measures_and_the_config_that_declares_them():
    assert m.measure_of({"scenario": {"name": "split-digits"}}) is m.MEASURES["accuracy"]
    assert m.measure_of({"scenario": {"name": "text", "measure": "bpc"}}) is m.MEASURES["bpc"]
    assert m.MEASURES["accuracy"].show(0.12345) == "12.3" and m.MEASURES["accuracy"].show(-0.0001) == "0.0"
    assert m.MEASURES["bpc"].show(1.23456) == "1.235"
    with pytest.raises(ValueError, match="unknown measure 'loss'"):
        m.compute(EXAMPLE, ["acc"], measure="loss")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("acc", 6.7 / 3),  # mean final bpc: (3.0 + 2.2 + 1.5) / 3
        ("learning_acc", 5.3 / 3),  # (2.0 + 1.8 + 1.5) / 3
        ("avg_inc_acc", (2.0 + 1.85 + 6.7 / 3) / 3),
        ("dr_a", 12.4 / 6),
        ("bwt", -0.7),  # ((2.0 - 3.0) + (1.8 - 2.2)) / 2: bpc rose, so bwt < 0
        ("forgetting", 0.75),  # task 1: 3.0 - min(2.0, 1.9) = 1.1; task 2: 2.2 - 1.8 = 0.4
        ("forgetting_avalanche", 0.7),  # from just-learned: 1.0 and 0.4
        ("forgetting_max_clipped", 0.75),
        ("fwt", 1.75),  # (8.0 - 6.0) + (8.0 - 6.5), divided by T-1 = 2: lower bpc than untrained
        ("dr_bwt", -1.3 / 3),  # pairs: +0.1 (task 1 improved), -1.0, -0.4
        ("bwt_plus", 0.0),
    ],
)
def test_bits_per_character_worked_example(name, expected):
    """Lower is better: change metrics run on S = -R, so forgetting > 0 means the bpc rose."""
    assert m.compute(BPC_EXAMPLE, [name], "task_il", measure="bpc")[name] == pytest.approx(expected, abs=1e-9)


def test_rem_is_undefined_for_bits_per_character_and_fwt_in_class_il():
    assert m.compute(BPC_EXAMPLE, ["rem", "fwt", "acc"], "class_il", measure="bpc") == {
        "rem": None, "fwt": None, "acc": pytest.approx(6.7 / 3)}
    assert m.headline(BPC_EXAMPLE, "task_il", measure="bpc")["forgetting"] == pytest.approx(0.75)


def test_rem_and_bwt_plus_on_worked_example():
    # dr_bwt = -0.7 / 6: rem = 1 - 0.7/6, bwt_plus clipped to 0.
    assert m.rem(EXAMPLE) == pytest.approx(1 - 0.7 / 6, abs=1e-4)
    assert m.bwt_plus(EXAMPLE) == 0.0


def test_rem_and_bwt_plus_with_positive_backward_transfer():
    R = [[0.1, 0.1], [0.8, 0.1], [0.9, 0.85]]  # task 1 improves from 0.8 to 0.9
    assert m.dr_bwt(R) == pytest.approx(0.1)
    assert m.bwt_plus(R) == pytest.approx(0.1)
    assert m.rem(R) == 1.0


def test_intransigence_hand_computed():
    joint = [0.95, 0.96, 0.94, 0.97]  # minus diagonal [0.90, 0.95, 0.92, 0.93]
    assert m.intransigence(EXAMPLE, joint) == pytest.approx((0.05 + 0.01 + 0.02 + 0.04) / 4)


def test_intransigence_rejects_wrong_length():
    with pytest.raises(ValueError, match="4 entries"):
        m.intransigence(EXAMPLE, [0.9, 0.9])


def test_headline_fwt_is_none_in_class_il():
    result = m.headline(EXAMPLE, "class_il")
    assert tuple(result) == m.HEADLINE
    assert result["fwt"] is None
    assert result["acc"] == pytest.approx(0.8325, abs=1e-4)
    assert m.compute(EXAMPLE, ["fwt_gem_code"], protocol="class_il") == {"fwt_gem_code": None}


def test_headline_reports_fwt_in_task_il():
    result = m.headline(EXAMPLE, "task_il")
    assert result["fwt"] == pytest.approx(0.0033, abs=1e-4)
    assert result["forgetting"] == pytest.approx(0.1300, abs=1e-4)


def test_single_task_gives_nan_for_transfer_metrics():
    R = [[0.1], [0.9]]
    for name in ["bwt", "bwt_gem_code", "fwt", "fwt_gem_code", "forgetting",
                 "forgetting_max_clipped", "forgetting_avalanche", "dr_bwt", "rem", "bwt_plus"]:
        assert math.isnan(m.METRICS[name](R)), name
    assert m.acc(R) == pytest.approx(0.9)
    assert m.learning_acc(R) == pytest.approx(0.9)
    assert m.dr_a(R) == pytest.approx(0.9)


@pytest.mark.parametrize("shape", [(3, 3), (4, 2), (5,), (1, 0)])
def test_shape_validation(shape):
    with pytest.raises(ValueError, match=r"must have shape \(T\+1, T\)"):
        m.acc(np.zeros(shape))


def test_shape_error_names_the_bad_shape():
    with pytest.raises(ValueError, match=r"got \(3, 3\)"):
        m.bwt(np.zeros((3, 3)))


def test_unknown_metric_suggests_close_name_and_lists_valid_ones():
    with pytest.raises(ValueError) as info:
        m.compute(EXAMPLE, ["acc", "forgeting"])
    message = str(info.value)
    assert "'forgeting'" in message
    assert "Did you mean 'forgetting'?" in message
    assert "learning_acc" in message and "bwt_plus" in message


def test_bad_divisor_and_variant_are_rejected():
    with pytest.raises(ValueError, match="divisor"):
        m.bwt(EXAMPLE, divisor="T+1")
    with pytest.raises(ValueError, match="variant"):
        m.forgetting(EXAMPLE, variant="max")


def test_perfect_retention_has_no_forgetting():
    for variant in ["chaudhry", "max_all_clipped", "first_minus_last"]:
        assert m.forgetting(PERFECT_RETENTION, variant=variant) == pytest.approx(0.0, abs=1e-12)
    assert m.bwt(PERFECT_RETENTION) == pytest.approx(0.0, abs=1e-12)
    assert m.dr_bwt(PERFECT_RETENTION) == pytest.approx(0.0, abs=1e-12)
    assert m.rem(PERFECT_RETENTION) == 1.0
    assert m.acc(PERFECT_RETENTION) == pytest.approx(0.8)
