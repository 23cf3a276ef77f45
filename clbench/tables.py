"""The table model of a forgetting report: one table per scenario config, one row per group of
runs that differ only by seed (`clbench.aggregate.group_runs`), one column per metric, each cell
a `clbench.stats.Summary` over seeds, the best value per column marked in the direction the
metric's record declares under the table's measure. The same table is printed after a suite and
written into reports; `clbench.render` turns it into Markdown, LaTeX or CSV.

Also here: the comparison of a method against recorded runs (Welch's t-test per metric), and the
plain-text pieces every format shares (cells, seeds, captions, definitions).
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from clbench import metrics as M
from clbench.aggregate import Group, StoredRun, distinguishing_fields, failed_runs, group_runs, load_runs
from clbench.errors import UsageError
from clbench.stats import SPREAD_WORDS, SPREADS, Summary, welch


@dataclass
class Row:
    label: str
    group: Group
    cells: dict[str, Summary]
    failed_seeds: list[int]
    missing_seeds: list[int]
    best: set[str] = field(default_factory=set)
    pvalues: dict[str, tuple[float | None, str]] = field(default_factory=dict)  # metric -> (p, why None)
    reference: bool = False  # the method the other rows are tested against (compare)

    @property
    def n(self) -> int:
        return len(self.group.runs)


@dataclass
class Table:
    title: str
    scenario: dict[str, Any]
    metrics: list[str]
    omitted: list[str]  # asked for, but not defined under this protocol or measure
    rows: list[Row]
    expected_seeds: list[int]
    spread: str = "sem"
    compared: bool = False  # has p-value columns (compare)
    scenario_title: str = ""  # the title before a comparison names its method
    slug_suffix: str = ""  # set by `unique_slugs` where two tables would share a file name

    @property
    def protocol(self) -> str:
        return self.scenario["protocol"]

    @property
    def measure(self) -> M.Measure:
        return M.measure_of({"scenario": self.scenario})

    @property
    def slug(self) -> str:
        """For file names and anchors: the scenario title, and the method in a comparison."""
        base = slugify(self.scenario_title or self.title, limit=60)
        return (base + "-vs-" + slugify(self.rows[0].label, limit=30) if self.compared else base) + self.slug_suffix


def unique_slugs(tables: Sequence[Table]) -> None:
    """Give every table its own file name: a table whose slug an earlier one took gets a short hash
    of its groups' configs appended (slugs are cut and lose characters, labels are not)."""
    taken: set[str] = set()
    for t in tables:
        if t.slug in taken:
            keys = "|".join(r.group.key for r in t.rows)
            t.slug_suffix = "-" + hashlib.sha256(keys.encode()).hexdigest()[:8]
        taken.add(t.slug)


def parse_metrics(spec: str | Sequence[str] | None) -> list[str]:
    """Metric names from 'acc,forgetting' or a list; the headline metrics when None. Unknown -> UsageError."""
    if spec is None:
        return list(M.HEADLINE)
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]
    if not names:
        raise UsageError(f"no metrics given (valid: {', '.join(M.METRICS)})")
    from clbench.registry import unknown_name_error

    for name in names:
        if name not in M.METRICS:
            raise unknown_name_error("metric", name, M.METRICS)
    return list(dict.fromkeys(names))


def check_choice(kind: str, value: str, valid: Sequence[str]) -> str:
    if value not in valid:
        raise UsageError(f"unknown {kind} {value!r} (valid: {', '.join(valid)})")
    return value


def load_folder(folder: Path | str) -> list[StoredRun]:
    """Every run under `folder`; UsageError when it is missing or holds no run at all."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "no such folder"
        raise UsageError(f"{folder}: {what} (give a folder of runs, such as results/ or baselines/<name>)")
    runs = load_runs(folder)
    if not runs:
        raise UsageError(f"no runs under {folder} (a run is a folder holding run.json; "
                         f"write some with `clbench run` or `clbench suite`)")
    return runs


def usable_groups(runs: list[StoredRun], where: str) -> list[Group]:
    """Groups of `runs` (failed-only groups kept); UsageError when no run finished."""
    groups = group_runs(runs, keep_failed=True)
    if not any(g.runs for g in groups):
        failed = failed_runs(runs)
        first = f"; first: {failed[0].path.name}: {failed[0].problem}" if failed else ""
        raise UsageError(f"no finished runs under {where}: {len(failed)} of {len(runs)} runs failed or are "
                         f"incomplete{first}")
    return groups


def build_tables(groups: list[Group], metric_names: Sequence[str], spread: str = "sem",
                 labels: dict[str, str] | None = None) -> list[Table]:
    """One table per scenario config, rows in the order of `groups`, best values marked. `labels`
    (group key -> row label) defaults to `distinguishing_fields(groups)`."""
    check_choice("spread", spread, SPREADS)
    labels = labels or distinguishing_fields(groups)
    blocks: dict[str, list[Group]] = {}
    for g in groups:
        blocks.setdefault(g.scenario_key, []).append(g)
    titles = _block_titles([b[0].config["scenario"] for b in blocks.values()])
    tables = []
    for block, title in zip(blocks.values(), titles):
        scenario = block[0].config["scenario"]
        measure = M.measure_of(block[0].config)
        expected = sorted({r.seed for g in block for r in g.runs + g.failed})
        shown = [m for m in metric_names if M.METRICS[m].defined(scenario["protocol"], measure)]
        rows = []
        for g in block:
            cells = {m: Summary.of(g.values_by_seed(m)) for m in shown}
            failed = g.failed_seeds
            missing = sorted(set(expected) - set(g.seeds) - set(failed))
            rows.append(Row(labels[g.key], g, cells, failed, missing))
        omitted = [m for m in metric_names if m not in shown]
        table = Table(title, scenario, shown, omitted, rows, expected, spread, scenario_title=title)
        mark_best(table)
        tables.append(table)
    return tables


def _block_titles(scenarios: list[dict[str, Any]]) -> list[str]:
    """'split-digits, class_il', plus the settings that tell apart scenarios sharing name and protocol."""
    titles = []
    for s in scenarios:
        same = [o for o in scenarios if o["name"] == s["name"] and o["protocol"] == s["protocol"]]
        keys = sorted({k for o in same for k in o if k not in ("name", "protocol")
                       and len({json.dumps(x.get(k), sort_keys=True) for x in same}) > 1})
        detail = "".join(f", {k}={s.get(k)}" for k in keys)
        titles.append(f"{s['name']}, {s['protocol']}{detail}")
    return titles


def mark_best(table: Table) -> None:
    """Mark, per column, the rows whose mean (as displayed) is best in the metric's direction under
    the table's measure; nothing when fewer than 2 rows have a value."""
    measure = table.measure
    for m in table.metrics:
        scored = [(r, round(measure.scale * r.cells[m].mean, measure.decimals)) for r in table.rows
                  if r.cells[m].n > 0 and not math.isnan(r.cells[m].mean)]
        if len(scored) < 2:
            continue
        best = (max if M.METRICS[m].better_high(measure) else min)(v for _, v in scored)
        for r, v in scored:
            if v == best:
                r.best.add(m)


# ----------------------------------------------------------------------------------------------
# Compare: a method next to recorded runs, Welch's t-test per metric


@dataclass
class RunComparison:
    tables: list[Table]
    notes: list[str]  # scenarios, protocols or versions that do not match


def compare_runs(method_runs: list[StoredRun], against_runs: list[StoredRun], metric_names: Sequence[str],
                 spread: str = "sem", method_where: str = "the method folder",
                 against_where: str = "the recorded runs") -> RunComparison:
    """Tables of each method group next to the recorded groups on the same scenario config, with a
    Welch's t-test per metric of every recorded row against the method row.

    UsageError when the two sides share no scenario (the message says what each side has).
    """
    method_groups = [g for g in usable_groups(method_runs, method_where) if g.runs]
    method_paths = {r.path.resolve() for r in method_runs}
    method_ids = {r.run_id for r in method_runs}
    # The method's own runs are never their own baseline, even when --against is a folder above them.
    against_runs = [r for r in against_runs if r.path.resolve() not in method_paths and r.run_id not in method_ids]
    against_groups = group_runs(against_runs, keep_failed=True)
    if not any(g.runs for g in against_groups):
        raise UsageError(f"no finished recorded runs under {against_where} besides the method's own")

    notes, tables = [], []
    labels = distinguishing_fields(method_groups + [g for g in against_groups if g not in method_groups])
    for mg in method_groups:
        same = [g for g in against_groups if g.scenario_key == mg.scenario_key]
        if not same:
            notes.append(_mismatch(mg, against_groups, against_where))
            continue
        versions = sorted({g.config.get("clbench_version") for g in same} - {mg.config.get("clbench_version")})
        if versions:
            notes.append(f"{mg.learner} on {mg.scenario} ({mg.protocol}) ran with clbench "
                         f"{mg.config.get('clbench_version')}; recorded runs include clbench {', '.join(map(str, versions))} "
                         f"(shown as separate rows, never averaged)")
        table = build_tables([mg] + same, metric_names, spread, labels)[0]
        table.title += f": {table.rows[0].label} against recorded runs"
        table.compared = True
        reference = table.rows[0]
        reference.reference = True
        for row in table.rows[1:]:
            for m in table.metrics:
                row.pvalues[m] = welch([v for _, v in reference.cells[m].values], [v for _, v in row.cells[m].values])
        tables.append(table)
    if not tables:
        raise UsageError("nothing to compare: " + "; ".join(notes))
    unique_slugs(tables)
    return RunComparison(tables, notes)


def _scenario_text(scenario: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(scenario.items()) if k not in ("name", "protocol"))


def _mismatch(mg: Group, against: list[Group], where: str) -> str:
    """Why no recorded run matches the method group's scenario: name, protocol or settings."""
    head = f"{mg.learner} ran {mg.scenario} in {mg.protocol}"
    by_name = [g for g in against if g.scenario == mg.scenario]
    if not by_name:
        have = sorted({f"{g.scenario} ({g.protocol})" for g in against})
        return f"{head}; {where} has no runs on {mg.scenario} (it has: {', '.join(have)})"
    same_protocol = [g for g in by_name if g.protocol == mg.protocol]
    if not same_protocol:
        protocols = sorted({g.protocol for g in by_name})
        return (f"{head}; {where} has {mg.scenario} only in {', '.join(protocols)}: protocols do not match, "
                f"so nothing is compared")
    theirs = sorted({_scenario_text(g.config["scenario"]) for g in same_protocol})
    return (f"{head} with {_scenario_text(mg.config['scenario'])}; {where} ran it with "
            f"{' or '.join(theirs)}: scenario settings do not match, so nothing is compared")


# ----------------------------------------------------------------------------------------------
# Text every format shares: cells, seeds, captions, definitions (plain; each format escapes it)


def slugify(text: str, limit: int = 48) -> str:
    """A file-name-safe slug: lower-case letters, digits and dashes (user strings never reach a path raw)."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")
    return slug or "x"


def seed_text(seeds: Sequence[int]) -> str:
    """'0-2, 5' style list of seeds (runs of consecutive seeds collapsed)."""
    seeds = sorted(set(seeds))
    parts, i = [], 0
    while i < len(seeds):
        j = i
        while j + 1 < len(seeds) and seeds[j + 1] == seeds[j] + 1:
            j += 1
        parts.append(str(seeds[i]) if j == i else f"{seeds[i]}-{seeds[j]}" if j > i + 1 else f"{seeds[i]}, {seeds[j]}")
        i = j + 1
    return ", ".join(parts)


def seeds_cell(row: Row) -> str:
    text = seed_text(row.group.seeds) or "none"
    extra = [f"failed {seed_text(row.failed_seeds)}"] if row.failed_seeds else []
    extra += [f"missing {seed_text(row.missing_seeds)}"] if row.missing_seeds else []
    return text + (f" ({'; '.join(extra)})" if extra else "")


def cell_parts(summary: Summary, spread: str, measure: M.Measure = M.MEASURES["accuracy"]) -> tuple[str, str] | None:
    """(mean, spread) in the measure's unit as text; spread '' for n = 1; None when there is no value."""
    if summary.n == 0 or math.isnan(summary.mean):
        return None
    s = summary.spread(spread)
    return measure.show(summary.mean), ("" if math.isnan(s) else measure.show(s))


def p_text(p: tuple[float | None, str]) -> str:
    value, why = p
    if value is None:
        return f"n/a ({why})"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def caption_parts(table: Table) -> list[str]:
    """The sentences of a table caption (plain text; each format escapes them)."""
    measure = table.measure
    parts = [f"{table.title}. Mean \u00b1 {SPREAD_WORDS[table.spread]} over n seeds, in {measure.unit}; best mean "
             f"per column in bold (\u2191 higher, \u2193 lower is better).",
             "Conventions: " + "; ".join(f"{m}: {M.METRICS[m].short(measure)}" for m in table.metrics) + "."]
    if table.omitted:
        parts.append(f"Not reported: {', '.join(table.omitted)} (not defined in {table.protocol}"
                     + ("" if measure.name == "accuracy" else f" or for {measure.label}") + ").")
    if table.compared:
        parts.append(f"p: two-sided Welch's t-test over seeds against {table.rows[0].label}, "
                     f"not corrected for multiple comparisons.")
    gaps = [f"{r.label}: " + "; ".join(([f"seed {seed_text(r.failed_seeds)} failed"] if r.failed_seeds else [])
                                        + ([f"seed {seed_text(r.missing_seeds)} not run"] if r.missing_seeds else []))
            for r in table.rows if r.failed_seeds or r.missing_seeds]
    if gaps:
        parts.append(f"Seeds {seed_text(table.expected_seeds)} were run in this scenario; not every row has all: "
                     + "; ".join(gaps) + ".")
    if len({r.group.config.get("clbench_version") for r in table.rows}) > 1:
        parts.append("Rows from different clbench versions are kept apart, never averaged.")
    return parts


def definitions(metric_names: Sequence[str], measures: Sequence[M.Measure] = (M.MEASURES["accuracy"],)
                ) -> list[tuple[str, str]]:
    """(metric, full definition with its paper and direction) for a report's glossary; a metric
    gets one entry per measure of the report, labelled with the measure where there are several."""
    out = []
    for measure in measures:
        for m in metric_names:
            record = M.METRICS[m]
            if record.defined(None, measure):
                name = m if len(measures) == 1 else f"{m} ({measure.label})"
                out.append((name, f"{'higher' if record.better_high(measure) else 'lower'} is better; "
                                  f"{record.full(measure)}"))
    return out
