"""Continual-learning metrics: pure functions of the evaluation matrix, and one record per metric.

``R`` has shape (T+1, T). Row 0 is the learner before any training (b_j = R[0, j]); row i is
measured right after training on task i. Columns are tasks 1..T, so in the formulas below
``R[i, j]`` means row i, task j (array column j-1). The formulas are written for accuracy
(fractions in [0, 1], higher is better); metrics that need T >= 2 return NaN when T == 1.

A matrix declares its `Measure` (accuracy, or bits per character where lower is better). *Level*
metrics (a mean of matrix entries) are in the measure's unit and direction; *change* metrics
(differences between entries) are computed on the score matrix S = R, or S = -R when lower is
better, so that forgetting > 0 and bwt < 0 always mean forgetting. Everything that shows a metric
(tables, bold-best, figures, `clbench list metrics`, captions) reads its `Metric` record.
The conventions and a worked example are in docs/metrics.md.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "HEADLINE",
    "MEASURES",
    "METRICS",
    "Measure",
    "Metric",
    "acc",
    "avg_inc_acc",
    "bwt",
    "bwt_plus",
    "compute",
    "dr_a",
    "dr_bwt",
    "forgetting",
    "fwt",
    "get_measure",
    "headline",
    "intransigence",
    "learning_acc",
    "measure_of",
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



# ----------------------------------------------------------------------------------------------
# Measures: what the entries of a matrix are


@dataclass(frozen=True)
class Measure:
    """What the entries of an evaluation matrix measure, and how they are shown."""

    name: str  # as declared in a scenario config ("measure"); absent means accuracy
    column: str  # the value column of a run's rows
    higher_is_better: bool
    unit: str  # of values shown: level metrics, matrix cells
    change_unit: str  # of differences shown: change metrics
    scale: float  # shown value = scale * stored value
    decimals: int
    label: str  # the measure in words, for captions and axis labels
    stored: str  # how stored values (rows, CSV) relate to shown ones
    change_words: str  # change_unit in words, for figure captions
    short: str  # the measure on a figure axis
    bounds: tuple[float, float] | None  # the range of stored values, where there is one (axes, colour scales)

    def show(self, value: float) -> str:
        """A stored value as shown in tables, in `unit` (never "-0.0")."""
        text = f"{self.scale * value:.{self.decimals}f}"
        return text[1:] if text.startswith("-") and float(text) == 0 else text


MEASURES: dict[str, Measure] = {
    "accuracy": Measure("accuracy", "accuracy", True, "%", "pp", 100.0, 1, "accuracy",
                        "Values are fractions of 1 in the stored rows and in CSV files, percent (or percentage "
                        "points) in tables and figures.", "percentage points", "accuracy", (0.0, 1.0)),
    "bpc": Measure("bpc", "bpc", False, "bits/char", "bits/char", 1.0, 3, "bits per character",
                   "Bits per character are shown as stored, in tables, figures and CSV files.", "bits per character",
                   "bpc", None),
}


def get_measure(measure: str | Measure) -> Measure:
    """The `Measure` record for a name (or the record itself); ValueError naming the valid ones."""
    if isinstance(measure, Measure):
        return measure
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r} (valid: {', '.join(MEASURES)})")
    return MEASURES[measure]


def measure_of(config: dict[str, Any]) -> Measure:
    """The measure a run's resolved config declares in its scenario; absent means accuracy."""
    return get_measure((config.get("scenario") or {}).get("measure", "accuracy"))


# ----------------------------------------------------------------------------------------------
# Metric records: one per name; everything that shows a metric reads its record


@dataclass(frozen=True)
class Metric:
    """A metric's facts. Captions and definitions say "{m}" where the measure's label goes."""

    name: str
    function: Callable[[np.ndarray], float]
    kind: str  # "level" (a mean of entries, R as is) or "change" (differences, on the score matrix)
    caption: str  # short form for table captions
    definition: str  # full definition for a report's glossary
    citation: str
    higher_is_better: bool = True  # of a change metric; a level metric follows its measure
    undefined_in: frozenset[str] = frozenset()  # protocols where it is reported n/a
    measures: tuple[str, ...] = tuple(MEASURES)  # measures where it means something
    aggregate: str = "mean"  # over seeds: the mean of the per-run values, with its spread
    axis: str = ""  # its name on a figure axis ("{m}" as in captions); the metric's name when empty

    def __post_init__(self) -> None:
        if self.kind not in ("level", "change") or self.aggregate != "mean":
            raise ValueError(f"metric {self.name!r}: kind must be level or change, aggregate mean")

    def __call__(self, R, measure: str | Measure = "accuracy") -> float:
        """The metric of R: a level metric on R, a change metric on S = R or -R (see the module doc)."""
        m = get_measure(measure)
        if self.kind == "change" and not m.higher_is_better:
            R = -np.asarray(R, dtype=float)
        return self.function(R)

    def better_high(self, measure: str | Measure = "accuracy") -> bool:
        """Whether a higher value is better, under this measure."""
        return get_measure(measure).higher_is_better if self.kind == "level" else self.higher_is_better

    def unit(self, measure: str | Measure = "accuracy") -> str:
        m = get_measure(measure)
        return m.unit if self.kind == "level" else m.change_unit

    def arrow(self, measure: str | Measure = "accuracy") -> str:
        return "\u2191" if self.better_high(measure) else "\u2193"

    def defined(self, protocol: str | None = None, measure: str | Measure = "accuracy") -> bool:
        return protocol not in self.undefined_in and get_measure(measure).name in self.measures

    def short(self, measure: str | Measure = "accuracy") -> str:
        return self.caption.format(m=get_measure(measure).label)

    def full(self, measure: str | Measure = "accuracy") -> str:
        return self.definition.format(m=get_measure(measure).label)

    def axis_label(self, measure: str | Measure = "accuracy") -> str:
        """'learning accuracy (%) ↑': name, unit and direction, for a figure axis."""
        m = get_measure(measure)
        return f"{(self.axis or self.name).format(m=m.short)} ({self.unit(m)}) {self.arrow(m)}"


_GEM = "Lopez-Paz & Ranzato 2017 (GEM)"
_CHAUDHRY = "Chaudhry et al. 2018 (RWalk)"
_DR = "Diaz-Rodriguez et al. 2018"
_CLASS_IL = frozenset({"class_il"})  # forward transfer is structurally ~0 there (unseen output units)

METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("acc", acc, "level", "final average {m} (Lopez-Paz & Ranzato 2017)",
           "mean over tasks of the {m} after the last task (Lopez-Paz & Ranzato 2017, GEM).", _GEM),
    Metric("bwt", bwt, "change", "backward transfer divided by T-1 (GEM paper)",
           "mean over tasks 1..T-1 of final minus just-learned {m}, divided by T-1 as in the GEM paper "
           "(Lopez-Paz & Ranzato 2017); negative means forgetting.", _GEM, axis="BWT"),
    Metric("fwt", fwt, "change", "forward transfer divided by T-1 (GEM paper)",
           "{m} on a task just before training on it minus the untrained model's, tasks 2..T, divided by "
           "T-1 (GEM paper); not defined in class_il.", _GEM, undefined_in=_CLASS_IL),
    Metric("forgetting", forgetting, "change", "Chaudhry et al. 2018, not clipped",
           "mean over tasks 1..T-1 of the best {m} after learning the task and before the last "
           "step minus the final {m}, not clipped at 0 (Chaudhry et al. 2018, RWalk).", _CHAUDHRY,
           higher_is_better=False),
    Metric("learning_acc", learning_acc, "level", "{m} right after learning each task (Riemer et al. 2019)",
           "mean over tasks of the {m} right after learning the task (plasticity; Riemer et al. "
           "2019, Mirzadeh et al. 2020).", "Riemer et al. 2019; Mirzadeh et al. 2020", axis="learning {m}"),
    Metric("avg_inc_acc", avg_inc_acc, "level", "average incremental {m} (Rebuffi et al. 2017)",
           "mean over steps of the mean {m} on the tasks seen so far (Rebuffi et al. 2017, iCaRL).",
           "Rebuffi et al. 2017 (iCaRL)"),
    Metric("dr_a", dr_a, "level", "Diaz-Rodriguez et al. 2018 accuracy",
           "mean of the lower triangle of the matrix with the diagonal (Diaz-Rodriguez et al. 2018).", _DR),
    Metric("dr_bwt", dr_bwt, "change", "Diaz-Rodriguez et al. 2018 BWT",
           "backward transfer averaged over every (later, earlier) pair of tasks (Diaz-Rodriguez et al. 2018).", _DR),
    Metric("rem", rem, "change", "remembering, Diaz-Rodriguez et al. 2018",
           "1 - |min(dr_bwt, 0)| (Diaz-Rodriguez et al. 2018).", _DR, measures=("accuracy",)),
    Metric("bwt_plus", bwt_plus, "change", "positive BWT, Diaz-Rodriguez et al. 2018",
           "max(dr_bwt, 0) (Diaz-Rodriguez et al. 2018).", _DR),
    # Compatibility variants, to reproduce a peer framework exactly.
    Metric("bwt_gem_code", lambda R: bwt(R, divisor="T"), "change", "BWT divided by T (GEM reference code)",
           "backward transfer divided by T, as the GEM reference code does.", "GEM reference code"),
    Metric("fwt_gem_code", lambda R: fwt(R, divisor="T"), "change", "FWT divided by T (GEM reference code)",
           "forward transfer divided by T, as the GEM reference code does.", "GEM reference code",
           undefined_in=_CLASS_IL),
    Metric("forgetting_max_clipped", lambda R: forgetting(R, variant="max_all_clipped"), "change",
           "max over all rows, clipped at 0 (mammoth, PyCIL)",
           "forgetting with the maximum taken over all rows including the last, so each "
           "term is clipped at 0 (mammoth, PyCIL, CL-Gym).", "mammoth, PyCIL, CL-Gym", higher_is_better=False),
    Metric("forgetting_avalanche", lambda R: forgetting(R, variant="first_minus_last"), "change",
           "first minus last (Avalanche)", "forgetting as just-learned minus final {m} (Avalanche).", "Avalanche",
           higher_is_better=False),
]}

HEADLINE = ("acc", "bwt", "fwt", "forgetting", "learning_acc")


def check_names(names: Iterable[str]) -> list[str]:
    """The names as a list; ValueError for an unknown one, with the closest valid name."""
    names = list(names)
    for name in names:
        if name not in METRICS:
            close = difflib.get_close_matches(name, METRICS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown metric {name!r}.{hint} Valid names: {', '.join(METRICS)}")
    return names


def compute(R, names: Iterable[str], protocol: str | None = None,
            measure: str | Measure = "accuracy") -> dict[str, float | None]:
    """The named metrics of R (a matrix of `measure`); None for one undefined under the protocol or measure."""
    m = get_measure(measure)
    return {name: METRICS[name](R, m) if METRICS[name].defined(protocol, m) else None for name in check_names(names)}


def headline(R, protocol: str, measure: str | Measure = "accuracy") -> dict[str, float | None]:
    """The HEADLINE metrics of R; ``fwt`` is None when protocol == "class_il"."""
    return compute(R, HEADLINE, protocol, measure)
