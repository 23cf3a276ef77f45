"""Statistics over seeds, for every table and figure: mean, SEM, standard deviation, the 95%
confidence interval and Welch's t-test.

One rule for a single seed: with n = 1 there is no spread, so the SEM, the standard deviation and
the interval are NaN ("not defined"); tables then show the mean without "±", figures draw no
band or error bar, and Welch's test is not run (it needs n >= 2 on both sides). With n = 0 the
mean is NaN too. NaN values (a metric undefined for a run) are left out before counting n.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

SPREADS = ("sem", "std", "ci95")
SPREAD_WORDS = {"sem": "SEM (sample SD/\u221an)", "std": "sample SD", "ci95": "95% CI half-width (t distribution)"}


def finite(values: Sequence[float]) -> list[float]:
    """The values that are numbers (NaN left out)."""
    return [float(v) for v in values if not math.isnan(v)]


def std(values: Sequence[float]) -> float:
    """Sample standard deviation (ddof = 1); NaN for n < 2."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def mean_sem(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, standard error of the mean (sample SD / sqrt(n); NaN for n < 2) and n."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan, 0
    return float(np.mean(values)), std(values) / math.sqrt(n), n


def ci95(sem: float, n: int) -> float:
    """Half-width of the 95% confidence interval of the mean (t distribution, n - 1 dof); NaN for n < 2."""
    if n < 2 or math.isnan(sem):
        return math.nan
    from scipy import stats

    return float(stats.t.ppf(0.975, n - 1) * sem)


def mean_sem_along(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Element-wise mean and SEM over `axis` (seeds) of an array; the SEM is NaN where n = 1."""
    n = values.shape[axis]
    mean = values.mean(axis=axis)
    sem = values.std(axis=axis, ddof=1) / math.sqrt(n) if n > 1 else np.full_like(mean, np.nan)
    return mean, sem


@dataclass
class Summary:
    """One metric of one group over its seeds, in stored units (fractions for accuracy)."""

    values: list[tuple[int, float]]  # (seed, value)
    mean: float
    sem: float
    std: float
    n: int

    @classmethod
    def of(cls, values: list[tuple[int, float]]) -> "Summary":
        numbers = finite([v for _, v in values])
        mean, sem, n = mean_sem(numbers)
        return cls(values, mean, sem, std(numbers), n)

    def spread(self, kind: str) -> float:
        """The spread named by `kind` (one of SPREADS); NaN for n < 2."""
        if kind == "sem":
            return self.sem
        if kind == "std":
            return self.std
        return ci95(self.sem, self.n)


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float | None, str]:
    """Two-sided Welch's t-test p-value of two samples, or (None, why) where it is not defined."""
    a, b = finite(a), finite(b)
    if len(a) < 2 or len(b) < 2:
        return None, "n < 2"
    if np.std(a) == 0 and np.std(b) == 0:
        return None, "no variance"
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return (None, "undefined") if math.isnan(p) else (p, "")
