"""Forgetting reports from stored runs: tables (Markdown, LaTeX, CSV), a self-contained HTML
report, and the comparison of a method against recorded runs with Welch's t-test.

A table covers one scenario (its full config, protocol included): one row per group of runs that
differ only by seed (`clbench.aggregate.group_runs`), one column per metric, mean ± spread over
seeds in percent with n, the best value per column marked, the metric conventions in the caption
and seeds that failed or are missing named. Numbers are computed here from the stored rows with
`clbench.metrics`; nothing is read back from an earlier report.

Library code: functions return data and strings; `write_report` is the one that writes files.
Figures are drawn by `clbench.plots` (matplotlib, imported only when figures are asked for).
"""
from __future__ import annotations

import base64
import csv
import datetime
import html
import io
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

import clbench
from clbench import metrics as M
from clbench.aggregate import Group, StoredRun, distinguishing_fields, failed_runs, group_runs, load_runs, mean_sem
from clbench.errors import UsageError

FORMATS = ("markdown", "latex", "csv")
SPREADS = ("sem", "std", "ci95")
SPREAD_WORDS = {"sem": "SEM (sample SD/\u221an)", "std": "sample SD", "ci95": "95% CI half-width (t distribution)"}
SPREAD_LATEX = {"sem": r"SEM (sample SD$/\sqrt{n}$)", "std": "sample SD", "ci95": r"95\% CI half-width ($t$ distribution)"}

# ----------------------------------------------------------------------------------------------
# Data: summaries, rows, tables


@dataclass
class Summary:
    """One metric of one group over its seeds. Values are fractions; tables render percent."""

    values: list[tuple[int, float]]  # (seed, value)
    mean: float
    sem: float
    std: float
    n: int

    @classmethod
    def of(cls, values: list[tuple[int, float]]) -> "Summary":
        finite = [v for _, v in values if not math.isnan(v)]
        mean, sem, n = mean_sem(finite)
        std = float(np.std(finite, ddof=1)) if n > 1 else math.nan
        return cls(values, mean, sem, std, n)

    def spread(self, kind: str) -> float:
        if kind == "sem":
            return self.sem
        if kind == "std":
            return self.std
        if self.n < 2:
            return math.nan
        from scipy import stats

        return float(stats.t.ppf(0.975, self.n - 1) * self.sem)


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
    omitted: list[str]  # asked for, but not defined under this protocol
    rows: list[Row]
    expected_seeds: list[int]
    spread: str = "sem"
    compared: bool = False  # has p-value columns (compare)
    scenario_title: str = ""  # the title before a comparison names its method

    @property
    def protocol(self) -> str:
        return self.scenario["protocol"]

    @property
    def slug(self) -> str:
        """For file names and anchors: the scenario title, and the method in a comparison."""
        base = slugify(self.scenario_title or self.title, limit=60)
        return base + "-vs-" + slugify(self.rows[0].label, limit=30) if self.compared else base


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
        raise UsageError(f"no such folder: {folder} (give a folder of runs, such as results/ or baselines/<name>)")
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


def build_tables(groups: list[Group], metric_names: Sequence[str], spread: str = "sem") -> list[Table]:
    """One table per scenario config, rows in the order of `groups`, best values marked."""
    check_choice("spread", spread, SPREADS)
    labels = distinguishing_fields(groups)
    blocks: dict[str, list[Group]] = {}
    for g in groups:
        blocks.setdefault(g.scenario_key, []).append(g)
    titles = _block_titles([b[0].config["scenario"] for b in blocks.values()])
    tables = []
    for (key, block), title in zip(blocks.items(), titles):
        scenario = block[0].config["scenario"]
        expected = sorted({r.seed for g in block for r in g.runs + g.failed})
        rows = []
        for g in block:
            cells = {m: Summary.of(g.values_by_seed(m)) for m in metric_names}
            failed = g.failed_seeds
            missing = sorted(set(expected) - set(g.seeds) - set(failed))
            rows.append(Row(labels[g.key], g, cells, failed, missing))
        undefined = {m for m in metric_names if not M.METRICS[m].defined(scenario["protocol"])}
        shown = [m for m in metric_names if m not in undefined]
        omitted = [m for m in metric_names if m in undefined]
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


def _rounded(value: float) -> float:
    return round(100 * value, 1)


def mark_best(table: Table) -> None:
    """Mark, per column, the rows whose mean (as displayed) is best; nothing when fewer than 2 rows have a value."""
    for m in table.metrics:
        scored = [(r, _rounded(r.cells[m].mean)) for r in table.rows
                  if r.cells[m].n > 0 and not math.isnan(r.cells[m].mean)]
        if len(scored) < 2:
            continue
        best = (max if M.METRICS[m].better_high() else min)(v for _, v in scored)
        for r, v in scored:
            if v == best:
                r.best.add(m)


# ----------------------------------------------------------------------------------------------
# Compare: a method next to recorded runs, Welch's t-test per metric


@dataclass
class Comparison:
    tables: list[Table]
    notes: list[str]  # scenarios, protocols or versions that do not match


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float | None, str]:
    """Two-sided Welch's t-test p-value of two samples, or (None, why) where it is not defined."""
    a = [x for x in a if not math.isnan(x)]
    b = [x for x in b if not math.isnan(x)]
    if len(a) < 2 or len(b) < 2:
        return None, "n < 2"
    if np.std(a) == 0 and np.std(b) == 0:
        return None, "no variance"
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return (None, "undefined") if math.isnan(p) else (p, "")


def compare(method_runs: list[StoredRun], against_runs: list[StoredRun], metric_names: Sequence[str],
            spread: str = "sem", method_where: str = "the method folder",
            against_where: str = "the recorded runs") -> Comparison:
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
        table = build_tables([mg] + same, metric_names, spread)[0]
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
    return Comparison(tables, notes)


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
# Text: escaping, numbers, seeds, captions


def slugify(text: str, limit: int = 48) -> str:
    """A file-name-safe slug: lower-case letters, digits and dashes (user strings never reach a path raw)."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")
    return slug or "x"


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def md_escape(text: str) -> str:
    """User text made literal inside Markdown (and inside a Markdown table cell)."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}", "\u2026": r"\ldots{}",
                "\u2013": "--", "\u2014": "---", "\u00b1": r"$\pm$", "\u2212": "-"}


def tex_escape(text: str) -> str:
    """User text made literal in LaTeX (specials escaped; a newline becomes a space)."""
    return "".join(_TEX_SPECIAL.get(c, c) for c in str(text).replace("\n", " "))


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


def _pct(value: float) -> str:
    text = f"{100 * value:.1f}"
    return "0.0" if text == "-0.0" else text


def cell_parts(summary: Summary, spread: str) -> tuple[str, str] | None:
    """(mean, spread) in percent as text; spread '' for n = 1; None when there is no value."""
    if summary.n == 0 or math.isnan(summary.mean):
        return None
    s = summary.spread(spread)
    return _pct(summary.mean), ("" if math.isnan(s) else _pct(s))


def p_text(p: tuple[float | None, str]) -> str:
    value, why = p
    if value is None:
        return f"n/a ({why})"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def arrow(metric: str) -> str:
    return "\u2191" if M.METRICS[metric].better_high() else "\u2193"


def caption_parts(table: Table) -> list[str]:
    """The sentences of a table caption (plain text; each format escapes them)."""
    parts = [f"{table.title}. Mean \u00b1 {SPREAD_WORDS[table.spread]} over n seeds, in %; best mean per column "
             f"in bold (\u2191 higher, \u2193 lower is better).",
             "Conventions: " + "; ".join(f"{m}: {M.METRICS[m].short()}" for m in table.metrics) + "."]
    if table.omitted:
        parts.append(f"Not reported: {', '.join(table.omitted)} (not defined in {table.protocol}).")
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


def definitions(metric_names: Sequence[str]) -> list[tuple[str, str]]:
    """(metric, full definition with its paper and whether higher is better) for a report's glossary."""
    return [(m, f"{'higher' if M.METRICS[m].better_high() else 'lower'} is better; {M.METRICS[m].full()}")
            for m in metric_names]


# ----------------------------------------------------------------------------------------------
# Formats


def table_markdown(table: Table) -> str:
    head = ["learner", "n", "seeds"]
    for m in table.metrics:
        head.append(f"{md_escape(m)} {arrow(m)}")
        if table.compared:
            head.append("p")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * (len(head) - 3)]
    for row in table.rows:
        cells = [md_escape(row.label) + (" (method)" if row.reference else ""), str(row.n), md_escape(seeds_cell(row))]
        for m in table.metrics:
            parts = cell_parts(row.cells[m], table.spread)
            if parts is None:
                cells.append("n/a")
            else:
                mean = f"**{parts[0]}**" if m in row.best else parts[0]
                cells.append(f"{mean} \u00b1 {parts[1]}" if parts[1] else mean)
            if table.compared:
                cells.append("\u2014" if row.reference else p_text(row.pvalues[m]))
        lines.append("| " + " | ".join(cells) + " |")
    caption = md_escape(" ".join(caption_parts(table)))
    return f"**Table: {md_escape(table.title)}**\n\n" + "\n".join(lines) + f"\n\n{caption}\n"


def _latex_layout(widths: list[int]) -> tuple[str, str]:
    """(environment, font size) so the table fits: one column of a two-column paper (about 50
    characters of small text), else the full text width (table*, which is also fine in one-column
    documents), with smaller type as a last resort. Needs no package beyond booktabs."""
    chars = sum(widths) + 2 * len(widths)
    for limit, env, size in ((50, "table", r"\small"), (58, "table", r"\footnotesize"), (110, "table*", r"\small"),
                             (125, "table*", r"\footnotesize")):
        if chars <= limit:
            return env, size
    return "table*", r"\scriptsize"


def table_latex(table: Table) -> str:
    """A booktabs table that compiles as-is (needs \\usepackage{booktabs}; nothing else)."""
    n_cols = 2 + len(table.metrics) * (2 if table.compared else 1)
    head = ["learner", "$n$"]
    plain = [["learner", "n"]]  # the visible text, to size the table
    for m in table.metrics:
        head.append(tex_escape(m) + (r" $\uparrow$" if M.METRICS[m].better_high() else r" $\downarrow$"))
        plain[0].append(m + " x")
        if table.compared:
            head.append("$p$")
            plain[0].append("p")
    body = []
    for row in table.rows:
        gap = r"\textsuperscript{$\dagger$}" if row.failed_seeds or row.missing_seeds else ""
        label = row.label + (" (method)" if row.reference else "")
        cells, seen = [tex_escape(label), f"{row.n}{gap}"], [label, f"{row.n}+"]
        for m in table.metrics:
            parts = cell_parts(row.cells[m], table.spread)
            if parts is None:
                cells.append("n/a")
                seen.append("n/a")
            else:
                mean = parts[0].replace("-", "$-$")
                mean = f"\\textbf{{{mean}}}" if m in row.best else mean
                cells.append(f"{mean} $\\pm$ {parts[1]}" if parts[1] else mean)
                seen.append(f"{parts[0]} + {parts[1]}")
            if table.compared:
                p = "---" if row.reference else p_text(row.pvalues[m])
                cells.append("$<$" + p[1:] if p.startswith("<") else tex_escape(p))
                seen.append(p)
        body.append(" & ".join(cells) + r" \\")
        if row.reference:
            body.append(r"\midrule")
        plain.append(seen)
    env, size = _latex_layout([max(len(r[i]) for r in plain) for i in range(n_cols)])
    caption = " ".join(tex_escape(p) for p in caption_parts(table))
    caption = (caption.replace("\u2191", r"$\uparrow$").replace("\u2193", r"$\downarrow$")
               .replace("\u221an", r"$\sqrt{n}$"))
    caption = caption.replace(tex_escape(SPREAD_WORDS[table.spread]), SPREAD_LATEX[table.spread])
    if any(r.failed_seeds or r.missing_seeds for r in table.rows):
        caption += r" $\dagger$: seeds failed or missing."
    label = "tab:clbench-" + table.slug
    return "\n".join([
        "% clbench " + clbench.__version__ + r"; needs \usepackage{booktabs}",
        f"\\begin{{{env}}}[t]",
        r"\centering",
        size,
        r"\setlength{\tabcolsep}{%dpt}" % (3 if size == r"\scriptsize" else 4),
        f"\\caption{{{caption}}}",
        f"\\label{{{label}}}",
        r"\begin{tabular}{l" + "r" * (n_cols - 1) + "}",
        r"\toprule",
        " & ".join(head) + r" \\",
        r"\midrule",
        *body,
        r"\bottomrule",
        r"\end{tabular}",
        f"\\end{{{env}}}",
        "",
    ])


def table_rows(table: Table) -> list[dict[str, Any]]:
    """The table as flat records (fractions, not percent) for CSV."""
    records = []
    for row in table.rows:
        record: dict[str, Any] = {
            "scenario": table.scenario["name"], "protocol": table.protocol, "learner": row.label,
            "clbench_version": row.group.config.get("clbench_version"), "n": row.n,
            "seeds": " ".join(map(str, row.group.seeds)), "failed_seeds": " ".join(map(str, row.failed_seeds)),
            "missing_seeds": " ".join(map(str, row.missing_seeds)), "reference": row.reference if table.compared else "",
        }
        for m in table.metrics:
            s = row.cells[m]
            record[f"{m}_mean"] = "" if s.n == 0 else s.mean
            record[f"{m}_{table.spread}"] = "" if math.isnan(s.spread(table.spread)) else s.spread(table.spread)
            record[f"{m}_n"] = s.n
            record[f"{m}_best"] = m in row.best
            if table.compared:
                p = row.pvalues.get(m, (None, "reference"))
                record[f"{m}_p_welch"] = "" if p[0] is None else p[0]
        if not table.compared:
            record.pop("reference")
        records.append(record)
    return records


def to_csv(records: list[dict[str, Any]]) -> str:
    fields = list(dict.fromkeys(k for r in records for k in r))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue()


def table_csv(table: Table) -> str:
    return to_csv(table_rows(table))


def run_records(runs: Iterable[StoredRun], metric_names: Sequence[str]) -> list[dict[str, Any]]:
    """One record per run (failed ones too): its config essentials, status and metric values."""
    records = []
    for run in runs:
        config = run.config
        record: dict[str, Any] = {
            "run_id": run.run_id, "path": str(run.path), "status": "ok" if run.ok else run.problem,
            "scenario": config.get("scenario", {}).get("name"), "protocol": config.get("scenario", {}).get("protocol"),
            "learner": config.get("learner", {}).get("name"), "seed": config.get("seed"),
            "clbench_version": config.get("clbench_version"),
        }
        values = M.compute(run.matrix, metric_names, record["protocol"]) if run.ok else {}
        for m in metric_names:
            record[m] = "" if values.get(m) is None else values[m]
        records.append(record)
    return records


def render_tables(tables: list[Table], fmt: str) -> str:
    check_choice("format", fmt, FORMATS)
    if fmt == "csv":
        return to_csv([r for t in tables for r in table_rows(t)])
    render = table_markdown if fmt == "markdown" else table_latex
    return "\n".join(render(t) for t in tables)


# ----------------------------------------------------------------------------------------------
# Writing a report: tables, figures, report.md, report.html


@dataclass
class Written:
    folder: Path
    files: list[Path]
    tables: list[Table]
    figures: list[Any]  # clbench.plots.FigureFile
    failed: list[StoredRun]
    notes: list[str]


MANIFEST = ".clbench-report-files"


def write_report(runs: list[StoredRun], out: Path, metric_names: Sequence[str] | None = None, *,
                 spread: str = "sem", figures: bool = True, sources: Sequence[str] = (),
                 comparison: Comparison | None = None, name: str = "report") -> Written:
    """Write `<name>.md`, `<name>.html`, `tables/` and `figures/` (PDF and PNG) into `out`.

    With `comparison`, its tables (with p-values) lead and the figures show every group it covers.
    Files this function wrote into `out` before and does not write now are removed (and only those).
    """
    metric_names = parse_metrics(metric_names)
    out = Path(out)
    runs = list({r.path.resolve(): r for r in runs}.values())  # a folder given twice counts once
    if comparison is None:
        groups = usable_groups(runs, ", ".join(sources) or "the given runs")
        tables = build_tables(groups, metric_names, spread)
        notes: list[str] = []
    else:
        groups = []
        for t in comparison.tables:
            groups += [r.group for r in t.rows if r.group not in groups]
        tables = comparison.tables
        notes = list(comparison.notes)
    failed = failed_runs(runs)
    files: list[Path] = []

    def put(rel: str, data: str | bytes) -> None:
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        files.append(path)

    for t in tables:
        stem = f"tables/{name}-{t.slug}" if comparison else f"tables/{t.slug}"
        put(f"{stem}.md", table_markdown(t))
        put(f"{stem}.tex", table_latex(t))
        put(f"{stem}.csv", table_csv(t))
    put(f"tables/{name}-summary.csv" if comparison else "tables/summary.csv",
        to_csv([r for t in tables for r in table_rows(t)]))
    put(f"tables/{name}-runs.csv" if comparison else "tables/runs.csv", to_csv(run_records(runs, metric_names)))

    drawn: list[Any] = []
    if figures:
        from clbench import plots

        plot_tables = [(t.title, t.slug, [(r.label, r.group) for r in t.rows if r.group.runs]) for t in tables]
        drawn = plots.write_figures(plot_tables, out / "figures")
        files += [f.pdf for f in drawn] + [f.png for f in drawn]

    generated = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    context = dict(tables=tables, figures=drawn, failed=failed, groups=groups, notes=notes, sources=sources,
                   generated=generated, out=out, title="clbench comparison" if comparison else "clbench report",
                   metric_names=metric_names)
    put(f"{name}.md", report_markdown(**context))
    put(f"{name}.html", report_html(**context))
    _prune(out, files)
    return Written(out, files, tables, drawn, failed, notes)


def _prune(out: Path, files: list[Path]) -> None:
    """Remove what the previous report in `out` wrote and this one did not; remember what this one wrote."""
    manifest = out / MANIFEST
    now = {str(p.relative_to(out)) for p in files}
    if manifest.is_file():
        for rel in manifest.read_text().splitlines():
            path = out / rel
            if rel and rel not in now and ".." not in Path(rel).parts and path.is_file():
                path.unlink()
                for parent in path.parents:
                    if parent == out or any(parent.iterdir()):
                        break
                    parent.rmdir()
    manifest.write_text("\n".join(sorted(now)) + "\n")


def _versions(runs: list[StoredRun]) -> list[tuple[str, str, int]]:
    """(package, version, number of runs) over the runs' recorded environments."""
    counts: dict[tuple[str, str], int] = {}
    for run in runs:
        env = run.record.get("environment") or {}
        items = dict(env.get("versions") or {})
        items["git revision"] = env.get("git_revision")
        for package, ver in items.items():
            counts[(package, str(ver))] = counts.get((package, str(ver)), 0) + 1
    return sorted((p, v, n) for (p, v), n in counts.items())


def report_markdown(*, tables, figures, failed, groups, notes, sources, generated, out, title, metric_names) -> str:
    lines = [f"# {title}", "", f"Generated {generated} by clbench {clbench.__version__} from "
             + (", ".join(f"`{md_escape(s)}`" for s in sources) or "the given runs") + ".", ""]
    n_runs = sum(len(g.runs) for g in groups)
    lines += [f"{n_runs} finished runs in {sum(1 for g in groups if g.runs)} groups (runs that differ only by seed); "
              f"{len(failed)} failed or incomplete runs.", ""]
    for note in notes:
        lines.append(f"> **Note:** {md_escape(note)}")
        lines.append("")
    for t in tables:
        lines += [f"## {md_escape(t.title)}", "", table_markdown(t)]
        for fig in (f for f in figures if f.table_slug == t.slug):
            rel = fig.png.relative_to(out).as_posix()
            lines += [f"![{md_escape(fig.title)}]({rel})", "", f"*{md_escape(fig.caption)}* "
                      f"([PDF]({fig.pdf.relative_to(out).as_posix()}))", ""]
    lines += ["## Metric definitions", "", "Values are fractions of 1 in the stored rows and in CSV files, percent "
              "(or percentage points) in tables and figures. METRICS.md gives the formulas.", ""]
    lines += [f"- **{md_escape(m)}**: {md_escape(text)}" for m, text in definitions(metric_names)]
    lines.append("")
    if failed:
        lines += ["## Failed or incomplete runs", "", "| run | learner | scenario | protocol | seed | problem |",
                  "|---|---|---|---|---|---|"]
        for run in failed:
            c = run.config
            lines.append("| " + " | ".join(md_escape(x) for x in (
                run.path.name, c.get("learner", {}).get("name", "?"), c.get("scenario", {}).get("name", "?"),
                c.get("scenario", {}).get("protocol", "?"), c.get("seed", "?"), run.problem)) + " |")
        lines.append("")
    runs = [r for g in groups for r in g.runs]
    lines += ["## Versions", "", "| package | version | runs |", "|---|---|---:|"]
    lines += [f"| {md_escape(p)} | {md_escape(v)} | {n} |" for p, v, n in _versions(runs)]
    lines += ["", "The configs of every group are in the HTML report and in each run's run.json.", ""]
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}
th,td{padding:.3em .7em;border-bottom:1px solid #e3e3e3;text-align:right;vertical-align:top}
th{border-bottom:2px solid #444;background:#fafafa}
td{white-space:nowrap}td:first-child,th:first-child,td.text,th.text{text-align:left;white-space:normal}
tr.method td{background:#eef5fb}
caption{caption-side:bottom;text-align:left;font-size:.85em;color:#444;padding-top:.5em;max-width:1000px}
.figs{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0;width:480px}figure img{width:100%;border:1px solid #eee}
figcaption{font-size:.82em;color:#444}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.82em}
.note{background:#fff6e0;border-left:4px solid #e69f00;padding:.4em .8em}
.muted{color:#666}details{margin:.4em 0}summary{cursor:pointer}
"""


def report_html(*, tables, figures, failed, groups, notes, sources, generated, out, title, metric_names) -> str:
    """One self-contained page: tables, figures embedded as base64 PNG, configs, versions, failed runs."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f'<p class="muted">Generated {e(generated)} by clbench {e(clbench.__version__)} from '
        + (", ".join(f"<code>{e(str(s))}</code>" for s in sources) or "the given runs") + ".</p>",
    ]
    n_runs = sum(len(g.runs) for g in groups)
    parts.append(f"<p>{n_runs} finished runs in {sum(1 for g in groups if g.runs)} groups (runs that differ only "
                 f"by seed); {len(failed)} failed or incomplete runs"
                 + (' (<a href="#failed">listed below</a>)' if failed else "") + ".</p>")
    for note in notes:
        parts.append(f'<p class="note">{e(note)}</p>')
    if len(tables) > 1:
        parts.append("<ul>" + "".join(f'<li><a href="#{e(t.slug)}">{e(t.title)}</a></li>' for t in tables) + "</ul>")
    for t in tables:
        parts.append(f'<h2 id="{e(t.slug)}">{e(t.title)}</h2>')
        parts.append(_html_table(t))
        figs = [f for f in figures if f.table_slug == t.slug]
        if figs:
            parts.append('<div class="figs">')
            for fig in figs:
                data = base64.b64encode(fig.png.read_bytes()).decode("ascii")
                parts.append(f'<figure><img alt="{e(fig.title)}" src="data:image/png;base64,{data}">'
                             f"<figcaption>{e(fig.caption)}</figcaption></figure>")
            parts.append("</div>")
    parts.append("<h2>Metric definitions</h2><p class=\"muted\">Values are fractions of 1 in the stored rows and "
                 "in CSV files, percent (or percentage points) in tables and figures.</p><dl>")
    parts += [f"<dt><b>{e(m)}</b></dt><dd>{e(text)}</dd>" for m, text in definitions(metric_names)]
    parts.append("</dl>")
    if failed:
        parts.append('<h2 id="failed">Failed or incomplete runs</h2><table><tr>'
                     + "".join(f'<th class="text">{h}</th>' for h in ("run", "learner", "scenario", "protocol", "seed",
                                                                       "problem")) + "</tr>")
        for run in failed:
            c = run.config
            cells = (run.path.name, c.get("learner", {}).get("name", "?"), c.get("scenario", {}).get("name", "?"),
                     c.get("scenario", {}).get("protocol", "?"), c.get("seed", "?"), run.problem)
            parts.append("<tr>" + "".join(f'<td class="text">{e(str(x))}</td>' for x in cells) + "</tr>")
        parts.append("</table>")
    parts.append("<h2>Runs and configs</h2>")
    parts.append('<p class="muted">Each group is one resolved config (without the seed); its runs differ only by seed.</p>')
    labels = distinguishing_fields([g for g in groups])
    for g in groups:
        rows = "".join(
            f'<tr><td class="text"><code>{e(r.run_id)}</code></td><td>{e(str(r.seed))}</td>'
            f'<td class="text">{e(str((r.record.get("environment") or {}).get("git_revision")))}</td>'
            f'<td class="text">{e(str(r.path))}</td></tr>' for r in sorted(g.runs, key=lambda r: r.seed))
        parts.append(
            f"<details><summary>{e(labels[g.key])} on {e(g.scenario)} ({e(g.protocol)}), "
            f"{len(g.runs)} runs, clbench {e(str(g.config.get('clbench_version')))}</summary>"
            f'<table><tr><th class="text">run id</th><th>seed</th><th class="text">git revision</th>'
            f'<th class="text">path</th></tr>{rows}</table>'
            f"<pre>{e(json.dumps(g.config, indent=2, sort_keys=True))}</pre></details>")
    parts.append("<h2>Versions</h2><table><tr><th class=\"text\">package</th><th class=\"text\">version</th>"
                 "<th>runs</th></tr>")
    runs = [r for g in groups for r in g.runs]
    parts += [f'<tr><td class="text">{e(p)}</td><td class="text">{e(v)}</td><td>{n}</td></tr>'
              for p, v, n in _versions(runs)]
    parts.append("</table></body></html>")
    return "\n".join(parts) + "\n"


def _html_table(table: Table) -> str:
    e = html.escape
    head = ['<th class="text">learner</th>', "<th>n</th>", '<th class="text">seeds</th>']
    for m in table.metrics:
        head.append(f"<th>{e(m)} {arrow(m)}</th>")
        if table.compared:
            head.append("<th><i>p</i></th>")
    body = []
    for row in table.rows:
        cells = [f'<td class="text">{e(row.label)}{" (method)" if row.reference else ""}</td>', f"<td>{row.n}</td>",
                 f'<td class="text">{e(seeds_cell(row))}</td>']
        for m in table.metrics:
            parts = cell_parts(row.cells[m], table.spread)
            if parts is None:
                text = "n/a"
            else:
                mean = f"<strong>{parts[0]}</strong>" if m in row.best else parts[0]
                text = f"{mean} \u00b1 {parts[1]}" if parts[1] else mean
            cells.append(f"<td>{text}</td>")
            if table.compared:
                cells.append(f"<td>{'&mdash;' if row.reference else e(p_text(row.pvalues[m]))}</td>")
        body.append(('<tr class="method">' if row.reference else "<tr>") + "".join(cells) + "</tr>")
    caption = e(" ".join(caption_parts(table)))
    return (f"<table><caption>{caption}</caption><thead><tr>{''.join(head)}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")
