"""Tests for clbench.stats: the one statistics module of tables and figures (hand-computed values)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from clbench.stats import Summary, ci95, mean_sem, mean_sem_along, welch


def test_mean_sem_hand_computed():
    mean, sem, n = mean_sem([1.0, 2.0, 3.0, 4.0])
    # sample SD = sqrt(((1.5^2 + 0.5^2) * 2) / 3) = sqrt(5/3); SEM = SD / 2
    assert (mean, n) == (2.5, 4) and sem == pytest.approx(math.sqrt(5 / 3) / 2)


def test_one_rule_for_a_single_seed_and_none():
    mean, sem, n = mean_sem([0.7])
    assert (mean, n) == (0.7, 1) and math.isnan(sem)
    assert all(math.isnan(x) for x in mean_sem([])[:2]) and mean_sem([])[2] == 0
    one = Summary.of([(0, 0.7)])
    assert one.mean == 0.7 and all(math.isnan(one.spread(k)) for k in ("sem", "std", "ci95"))
    _, band = mean_sem_along(np.array([[0.1, 0.2]]))
    assert np.isnan(band).all()  # figures draw no band for n = 1
    assert welch([0.5], [0.1, 0.2]) == (None, "n < 2")


def test_summary_spreads_and_nan_values_left_out():
    s = Summary.of([(0, 0.1), (1, 0.2), (2, float("nan")), (3, 0.4)])
    values = [0.1, 0.2, 0.4]
    assert s.n == 3 and s.mean == pytest.approx(np.mean(values))
    assert s.spread("std") == pytest.approx(np.std(values, ddof=1))
    assert s.spread("ci95") == pytest.approx(scipy_stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / math.sqrt(3))
    assert ci95(0.1, 4) == pytest.approx(3.182446 * 0.1, rel=1e-6)  # t(0.975, 3 dof) = 3.182446


def test_mean_sem_along_seeds_matches_per_cell():
    values = np.array([[1.0, 4.0], [3.0, 4.0], [5.0, 7.0]])
    mean, sem = mean_sem_along(values)
    assert mean.tolist() == [3.0, 5.0]
    assert sem == pytest.approx([2 / math.sqrt(3), math.sqrt(3) / math.sqrt(3)])


def test_welch_matches_scipy_and_says_why_not():
    a, b = [0.1, 0.2, 0.25], [0.3, 0.45, 0.5, 0.6]
    p, why = welch(a, b)
    assert why == "" and p == pytest.approx(scipy_stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert welch([0.2, 0.2], [0.2, 0.2]) == (None, "no variance")
