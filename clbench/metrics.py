"""Continual-learning metrics: pure functions of the accuracy matrix (numpy only).

``R`` has shape (T+1, T). Row 0 is the learner before any training (b_j = R[0, j]); row i is
measured right after training on task i. Columns are tasks 1..T, so in the formulas below
``R[i, j]`` means row i, task j (array column j-1). Values are fractions in [0, 1]. The
conventions and a worked example are in METRICS.md; metrics that need T >= 2 return NaN when
T == 1.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence

import numpy as np

__all__ = [
    "HEADLINE",
    "HIGHER_IS_BETTER",
    "METRICS",
    "acc",
    "avg_inc_acc",
    "bwt",
    "bwt_plus",
    "compute",
    "dr_a",
    "dr_bwt",
    "forgetting",
    "fwt",
    "headline",
    "intransigence",
    "learning_acc",
    "rem",
]

_DIVISORS = ("T-1", "T")
_FORGETTING_VARIANTS = ("chaudhry", "max_all_clipped", "first_minus_last")


def _matrix(R) -> tuple[np.ndarray, int]:
    """Return R as a float array and T, checking the shape is (T+1, T) with T >= 1."""
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[1] < 1 or R.shape[0] != R.shape[1] + 1:
        raise ValueError(f"accuracy matrix must have shape (T+1, T), got {R.shape}")
    return R, R.shape[1]


def _divide(total: float, T: int, divisor: str) -> float:
    if divisor not in _DIVISORS:
        raise ValueError(f"divisor must be one of {_DIVISORS}, got {divisor!r}")
    return float(total / (T - 1 if divisor == "T-1" else T))


def _diag(R: np.ndarray, T: int) -> np.ndarray:
    """R[j, j] for j = 1..T: accuracy on each task right after learning it."""
    return R[np.arange(1, T + 1), np.arange(T)]


def acc(R) -> float:
    """Final average accuracy: (1/T) * sum_j R[T, j].

    Range [0, 1], higher is better. Lopez-Paz & Ranzato 2017 (GEM).
    """
    R, _ = _matrix(R)
    return float(R[-1].mean())


def bwt(R, divisor: str = "T-1") -> float:
    """Backward transfer: (1/(T-1)) * sum_{j<T} (R[T, j] - R[j, j]).

    Negative means forgetting. Range [-1, 1], higher is better. Lopez-Paz & Ranzato 2017 (GEM
    paper). ``divisor="T"`` divides by T instead, as the GEM reference code does. NaN if T == 1.
    """
    R, T = _matrix(R)
    if T == 1:
        return float("nan")
    return _divide((R[-1, :-1] - _diag(R, T)[:-1]).sum(), T, divisor)


def fwt(R, divisor: str = "T-1") -> float:
    """Forward transfer: (1/(T-1)) * sum_{j>=2} (R[j-1, j] - b_j), with b_j = R[0, j].

    Range [-1, 1], higher is better. Lopez-Paz & Ranzato 2017 (GEM paper). ``divisor="T"``
    divides by T, as the GEM reference code does. Only meaningful in task-IL and domain-IL
    (structurally ~0 in class-IL, reported n/a there). NaN if T == 1.
    """
    R, T = _matrix(R)
    if T == 1:
        return float("nan")
    j = np.arange(1, T)  # 0-based columns of tasks 2..T
    return _divide((R[j, j] - R[0, j]).sum(), T, divisor)


def forgetting(R, variant: str = "chaudhry") -> float:
    """Average forgetting over tasks 1..T-1. Range [-1, 1], lower is better.

    Variants, each (1/(T-1)) * sum_{j<T} of:

    - ``"chaudhry"`` (default, Chaudhry et al. 2018, RWalk): max_{j <= l < T} R[l, j] - R[T, j],
      the best accuracy after learning and before the last step minus the final one; not
      clipped, so a task that improves at the end counts negatively.
    - ``"max_all_clipped"`` (mammoth, PyCIL, CL-Gym): max_{j <= l <= T} R[l, j] - R[T, j]; the
      maximum includes the final row, so each term is clipped at 0 and the range is [0, 1].
    - ``"first_minus_last"`` (Avalanche): R[j, j] - R[T, j].

    NaN if T == 1.
    """
    R, T = _matrix(R)
    if variant not in _FORGETTING_VARIANTS:
        raise ValueError(f"forgetting variant must be one of {_FORGETTING_VARIANTS}, got {variant!r}")
    if T == 1:
        return float("nan")
    final = R[-1, :-1]
    if variant == "first_minus_last":
        best = _diag(R, T)[:-1]
    else:
        last_row = T if variant == "max_all_clipped" else T - 1
        best = np.array([R[j + 1 : last_row + 1, j].max() for j in range(T - 1)])
    return float((best - final).mean())


def learning_acc(R) -> float:
    """Learning accuracy (plasticity): (1/T) * sum_j R[j, j].

    Range [0, 1], higher is better. Riemer et al. 2019; Mirzadeh et al. 2020.
    """
    R, T = _matrix(R)
    return float(_diag(R, T).mean())


def avg_inc_acc(R) -> float:
    """Average incremental accuracy: (1/T) * sum_k (1/k) * sum_{j<=k} R[k, j].

    Range [0, 1], higher is better. Rebuffi et al. 2017 (iCaRL).
    """
    R, T = _matrix(R)
    return float(np.mean([R[k, :k].mean() for k in range(1, T + 1)]))


def intransigence(R, joint_diagonal: Sequence[float]) -> float:
    """Intransigence: (1/T) * sum_k (a*_k - R[k, k]).

    ``joint_diagonal`` holds a*_k, k = 1..T: the accuracy on task k of a joint model trained on
    tasks 1..k. Range [-1, 1], lower is better. Chaudhry et al. 2018 (RWalk).
    """
    R, T = _matrix(R)
    joint = np.asarray(joint_diagonal, dtype=float)
    if joint.shape != (T,):
        raise ValueError(f"joint_diagonal must have {T} entries (one per task), got shape {joint.shape}")
    return float((joint - _diag(R, T)).mean())


def dr_a(R) -> float:
    """Díaz-Rodríguez accuracy A: mean of R[i, j] over all pairs i >= j (lower triangle with the diagonal).

    That is sum_{i>=j} R[i, j] / (T(T+1)/2). Range [0, 1], higher is better.
    Díaz-Rodríguez et al. 2018, "Don't forget, there is more than forgetting".
    """
    R, T = _matrix(R)
    return float(R[1:][np.tril_indices(T)].mean())


def dr_bwt(R) -> float:
    """Díaz-Rodríguez BWT: sum_{i=2..T} sum_{j<i} (R[i, j] - R[j, j]) / (T(T-1)/2).

    Averages over every (later, earlier) pair, not only the final row. Range [-1, 1], higher is
    better. Díaz-Rodríguez et al. 2018. NaN if T == 1.
    """
    R, T = _matrix(R)
    if T == 1:
        return float("nan")
    i, j = np.tril_indices(T, k=-1)  # 0-based rows of R[1:] and columns, i > j
    return float((R[1:][i, j] - _diag(R, T)[j]).mean())


def rem(R) -> float:
    """Remembering: 1 - |min(dr_bwt, 0)|.

    Range [0, 1], higher is better (1 = no forgetting). Díaz-Rodríguez et al. 2018. NaN if T == 1.
    """
    return float(1.0 - abs(np.minimum(dr_bwt(R), 0.0)))


def bwt_plus(R) -> float:
    """Positive backward transfer: max(dr_bwt, 0).

    Range [0, 1], higher is better. Díaz-Rodríguez et al. 2018. NaN if T == 1.
    """
    return float(np.maximum(dr_bwt(R), 0.0))


METRICS: dict[str, Callable[[np.ndarray], float]] = {
    "acc": acc,
    "bwt": bwt,
    "fwt": fwt,
    "forgetting": forgetting,
    "learning_acc": learning_acc,
    "avg_inc_acc": avg_inc_acc,
    "dr_a": dr_a,
    "dr_bwt": dr_bwt,
    "rem": rem,
    "bwt_plus": bwt_plus,
    # Compatibility variants, to reproduce a peer framework exactly.
    "bwt_gem_code": lambda R: bwt(R, divisor="T"),
    "fwt_gem_code": lambda R: fwt(R, divisor="T"),
    "forgetting_max_clipped": lambda R: forgetting(R, variant="max_all_clipped"),
    "forgetting_avalanche": lambda R: forgetting(R, variant="first_minus_last"),
}

_LOWER_IS_BETTER = {"forgetting", "forgetting_max_clipped", "forgetting_avalanche"}
HIGHER_IS_BETTER: dict[str, bool] = {name: name not in _LOWER_IS_BETTER for name in METRICS}

HEADLINE = ("acc", "bwt", "fwt", "forgetting", "learning_acc")

# Forward transfer is structurally ~0 in class-IL (unseen output units), so it is reported n/a.
_NOT_DEFINED_IN = {"class_il": {"fwt", "fwt_gem_code"}}


def compute(R, names: Iterable[str], protocol: str | None = None) -> dict[str, float | None]:
    """Evaluate the named metrics of ``METRICS`` on R; None for a metric undefined under ``protocol``."""
    names = list(names)
    for name in names:
        if name not in METRICS:
            close = difflib.get_close_matches(name, METRICS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown metric {name!r}.{hint} Valid names: {', '.join(METRICS)}")
    undefined = _NOT_DEFINED_IN.get(protocol, set())
    return {name: None if name in undefined else METRICS[name](R) for name in names}


def headline(R, protocol: str) -> dict[str, float | None]:
    """The HEADLINE metrics of R; ``fwt`` is None when protocol == "class_il"."""
    return compute(R, HEADLINE, protocol)
