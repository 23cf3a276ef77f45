"""Renderers of the table model (`clbench.tables`): Markdown, LaTeX (booktabs) and CSV, with the
escaping each needs. `format_table` is the forgetting table printed after a suite: the same table,
default metrics and captions as in a report.
"""
from __future__ import annotations

import csv
import io
import math
import re
from typing import Any, Iterable, Sequence

import clbench
from clbench import metrics as M
from clbench.aggregate import Group, StoredRun
from clbench.stats import SPREAD_WORDS
from clbench.tables import Table, build_tables, caption_parts, cell_parts, check_choice, p_text, parse_metrics, seeds_cell

FORMATS = ("markdown", "latex", "csv")
SPREAD_LATEX = {"sem": r"SEM (sample SD$/\sqrt{n}$)", "std": "sample SD", "ci95": r"95\% CI half-width ($t$ distribution)"}

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


def table_markdown(table: Table) -> str:
    measure = table.measure
    head = ["learner", "n", "seeds"]
    for m in table.metrics:
        head.append(f"{md_escape(m)} {M.METRICS[m].arrow(measure)}")
        if table.compared:
            head.append("p")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * (len(head) - 3)]
    for row in table.rows:
        cells = [md_escape(row.label) + (" (method)" if row.reference else ""), str(row.n), md_escape(seeds_cell(row))]
        for m in table.metrics:
            parts = cell_parts(row.cells[m], table.spread, measure)
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
    measure = table.measure
    n_cols = 2 + len(table.metrics) * (2 if table.compared else 1)
    head = ["learner", "$n$"]
    plain = [["learner", "n"]]  # the visible text, to size the table
    for m in table.metrics:
        head.append(tex_escape(m) + (r" $\uparrow$" if M.METRICS[m].better_high(measure) else r" $\downarrow$"))
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
            parts = cell_parts(row.cells[m], table.spread, measure)
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
    """The table as flat records (stored units: fractions for accuracy, not percent) for CSV."""
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
        values = M.compute(run.matrix, metric_names, record["protocol"], M.measure_of(config)) if run.ok else {}
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


def format_table(groups: list[Group], metric_names: Sequence[str] | None = None, fmt: str = "markdown") -> str:
    """The forgetting table of a suite's groups, as in a report (headline metrics by default)."""
    return render_tables(build_tables(groups, parse_metrics(metric_names)), fmt).rstrip("\n")
