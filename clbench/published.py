"""Published numbers and how recorded runs compare with them.

`baselines/published.csv` (shipped with clbench, `clbench.shipped`) holds results transcribed from papers, one row per (learner, scenario,
protocol, metric): `value` and `spread` in percent as printed, `spread_kind` SEM or SD, `n` runs,
and `source` naming the paper and table. Learner and scenario names are clbench's (the paper's
"None" is `finetune`, "ER" is `replay`). `match_published` puts recorded runs next to them: mean ± SEM
over seeds of the same metric (see `clbench.metrics`), the difference, and whether the difference
is within `k` combined standard errors.

A match of names is not a match of protocols: the comparison is meaningful only when the runs
followed the paper's protocol (network, iterations, optimiser, budget; see `scenarios/vandeven-*.toml`).
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from clbench.errors import UsageError

COLUMNS = ("learner", "scenario", "protocol", "metric", "value", "spread", "spread_kind", "n", "source")
SPREAD_KINDS = ("SEM", "SD")


@dataclass(frozen=True)
class Published:
    """One published number: `value` ± `spread` (percent) over `n` runs."""

    learner: str
    scenario: str
    protocol: str
    metric: str
    value: float
    spread: float
    spread_kind: str
    n: int
    source: str

    @property
    def sem(self) -> float:
        """The standard error of the mean in percent (an SD is divided by sqrt(n))."""
        return self.spread if self.spread_kind == "SEM" else self.spread / math.sqrt(self.n)


@dataclass(frozen=True)
class PublishedMatch:
    """Recorded runs of one (learner, scenario, protocol) next to the published number."""

    published: Published
    mean: float          # percent
    sem: float           # percent; NaN for a single run
    n: int
    seeds: tuple[int, ...]
    label: str = ""      # the learner with the fields that set its group apart, e.g. "ewc (lam=1e9)"

    @property
    def difference(self) -> float:
        """Recorded minus published, in percentage points."""
        return self.mean - self.published.value

    def within(self, k: float = 3.0) -> bool:
        """|difference| <= k combined standard errors (the run's SEM counts as 0 for a single run)."""
        own = 0.0 if math.isnan(self.sem) else self.sem
        return abs(self.difference) <= k * math.hypot(own, self.published.sem)


def read_published(path: str | Path | None = None) -> list[Published]:
    """The rows of a published-numbers CSV (default: the shipped `baselines/published.csv`), checked."""
    if path is None:
        from clbench.shipped import published_csv

        path = published_csv()
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"published numbers not found: {path}")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise UsageError(f"{path}: columns must be {', '.join(COLUMNS)}; found {', '.join(reader.fieldnames or [])}")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                item = Published(row["learner"], row["scenario"], row["protocol"], row["metric"],
                                 float(row["value"]), float(row["spread"]), row["spread_kind"], int(row["n"]),
                                 row["source"])
            except (TypeError, ValueError) as err:
                raise UsageError(f"{path}, line {line}: {err}") from None
            if item.spread_kind not in SPREAD_KINDS:
                raise UsageError(f"{path}, line {line}: spread_kind {item.spread_kind!r} is not one of "
                                 f"{', '.join(SPREAD_KINDS)}")
            if not item.source.strip():
                raise UsageError(f"{path}, line {line}: every number needs its source (paper and table)")
            rows.append(item)
    return rows


def match_published(groups: Iterable, published: Iterable[Published]) -> list[PublishedMatch]:
    """Every published number that recorded runs can be compared with.

    `groups` are `clbench.aggregate.Group`s (runs that differ only by seed); a group matches a
    published row when learner name, scenario name and protocol are equal. Groups and rows without a
    partner are left out. Groups that differ in a field (a sweep) are compared one by one and
    labelled by that field.
    """
    from clbench.aggregate import distinguishing_fields
    from clbench.stats import mean_sem

    groups = list(groups)
    labels = distinguishing_fields(groups)
    by_key = {(p.learner, p.scenario, p.protocol, p.metric): p for p in published}
    out = []
    for group in groups:
        for (learner, scenario, protocol, metric), row in by_key.items():
            if (learner, scenario, protocol) != (group.learner, group.scenario, group.protocol):
                continue
            by_seed = group.values_by_seed(metric)
            if not by_seed:
                continue
            mean, sem, n = mean_sem([100 * v for _, v in by_seed])
            seeds = tuple(s for s, _ in by_seed)
            out.append(PublishedMatch(row, mean, sem, n, seeds, labels.get(group.key, group.learner)))
    return out


def match_results(results: str | Path, published_csv: str | Path | None = None) -> list[PublishedMatch]:
    """`match_published` for the runs stored under a results directory."""
    from clbench.aggregate import group_runs, load_runs

    return match_published(group_runs(load_runs(Path(results))), read_published(published_csv))


def format_matches(comparisons: list[PublishedMatch], k: float = 3.0) -> str:
    """A Markdown table: published and recorded mean ± SEM (percent), the difference, and the verdict."""
    lines = ["| learner | scenario | protocol | metric | published | recorded | n | difference | within "
             f"{k:g} SE | source |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c in comparisons:
        p = c.published
        recorded = f"{c.mean:.2f}" + ("" if math.isnan(c.sem) else f" ± {c.sem:.2f}")
        lines.append(f"| {c.label or p.learner} | {p.scenario} | {p.protocol} | {p.metric} | {p.value:.2f} ± {p.spread:.2f} "
                     f"({p.spread_kind}, n={p.n}) | {recorded} | {c.n} | {c.difference:+.2f} | "
                     f"{'yes' if c.within(k) else 'no'} | {p.source} |")
    return "\n".join(lines)
