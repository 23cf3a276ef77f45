"""Writing a forgetting report: tables (Markdown, LaTeX, CSV), figures (PDF, PNG), `report.md`
and a self-contained `report.html` (from the Jinja2 template `clbench/templates/report.html`,
autoescaped). Numbers come from `clbench.tables` (the table model) and `clbench.render` (the
formats); figures from `clbench.plots` (matplotlib, imported only when figures are asked for).
Nothing is read back from an earlier report.

Library code: `write_report` is the one function here that writes files.
"""
from __future__ import annotations

import base64
import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import clbench
from clbench import metrics as M
from clbench.aggregate import StoredRun, failed_runs
from clbench.render import md_escape, table_csv, table_latex, table_markdown, table_rows, to_csv, run_records
from clbench.tables import (RunComparison, Table, build_tables, caption_parts, cell_parts, definitions,
                            p_text, parse_metrics, seeds_cell, unique_slugs, usable_groups)

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
                 comparison: RunComparison | None = None, name: str = "report",
                 progress: Callable[[str], None] | None = None) -> Written:
    """Write `<name>.md`, `<name>.html`, `tables/` and `figures/` (PDF and PNG) into `out`.

    With `comparison`, its tables (with p-values) lead and the figures show every group it covers.
    Files this function wrote into `out` before and does not write now are removed (and only those).
    `progress(text)` hears what is being done, for a live status line.
    """
    say = progress or (lambda text: None)
    say(f"tables of {len(runs)} runs")
    metric_names = parse_metrics(metric_names)
    out = Path(out)
    runs = list({r.path.resolve(): r for r in runs}.values())  # a folder given twice counts once
    if comparison is None:
        groups = usable_groups(runs, ", ".join(sources) or "the given runs")
        tables = build_tables(groups, metric_names, spread)
        unique_slugs(tables)
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
        say(f"figures of {len(plot_tables)} tables (PDF and PNG)")
        drawn = plots.write_figures(plot_tables, out / "figures")
        files += [f.pdf for f in drawn] + [f.png for f in drawn]

    from clbench import anytime_table  # runs along a stream: their anytime metrics

    along = anytime_table.rows(groups)
    anytime_md = anytime_table.markdown(along) if along else ""
    if along:
        put("tables/anytime.md", anytime_md)
        put("tables/anytime.csv", to_csv(anytime_table.csv_records(along)))
    say(f"{name}.md and {name}.html")
    generated = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    context = dict(tables=tables, figures=drawn, failed=failed, groups=groups, notes=notes, sources=sources,
                   generated=generated, out=out, title="clbench comparison" if comparison else "clbench report",
                   metric_names=metric_names)
    put(f"{name}.md", report_markdown(**context)
        + (f"\n## Along the stream\n\n{anytime_md}\n{anytime_table.CAPTION}\n" if along else ""))
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


def _measures(tables: Sequence[Table]) -> list[M.Measure]:
    """The measures of a report's tables, accuracy first; accuracy alone when there is no table."""
    found = {t.measure.name: t.measure for t in tables}
    return [m for m in M.MEASURES.values() if m.name in found] or [M.MEASURES["accuracy"]]


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
    measures = _measures(tables)
    lines += ["## Metric definitions", "", " ".join(m.stored for m in measures)
              + " docs/metrics.md in the clbench repository gives the formulas.", ""]
    lines += [f"- **{md_escape(m)}**: {md_escape(text)}" for m, text in definitions(metric_names, measures)]
    lines.append("")
    if failed:
        lines += ["## Failed or incomplete runs", "", "| run | learner | scenario | protocol | seed | problem |",
                  "|---|---|---|---|---|---|"]
        lines += ["| " + " | ".join(md_escape(x) for x in cells) + " |" for cells in _failed_cells(failed)]
        lines.append("")
    runs = [r for g in groups for r in g.runs]
    lines += ["## Versions", "", "| package | version | runs |", "|---|---|---:|"]
    lines += [f"| {md_escape(p)} | {md_escape(v)} | {n} |" for p, v, n in _versions(runs)]
    lines += ["", "The configs of every group are in the HTML report and in each run's run.json.", ""]
    return "\n".join(lines)


def _failed_cells(failed: Sequence[StoredRun]) -> list[tuple[str, ...]]:
    """run, learner, scenario, protocol, seed and problem of each unusable run, as text."""
    out = []
    for run in failed:
        c = run.config
        out.append(tuple(str(x) for x in (
            run.path.name, c.get("learner", {}).get("name", "?"), c.get("scenario", {}).get("name", "?"),
            c.get("scenario", {}).get("protocol", "?"), c.get("seed", "?"), run.problem)))
    return out


def _template():
    """The report page template (Jinja2, autoescaped), loaded from the package."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("clbench", "templates"), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.globals.update(
        caption=lambda t: " ".join(caption_parts(t)), seeds_cell=seeds_cell, p_text=p_text,
        arrow=lambda m, t: M.METRICS[m].arrow(t.measure), cell=lambda row, m, t: cell_parts(row.cells[m], t.spread, t.measure))
    return env.get_template("report.html")


def report_html(*, tables, figures, failed, groups, notes, sources, generated, out, title, metric_names) -> str:
    """One self-contained page: tables, figures embedded as base64 PNG, configs, versions, failed runs."""
    by_slug: dict[str, list[tuple[Any, str]]] = {t.slug: [] for t in tables}
    for fig in figures:
        by_slug.setdefault(fig.table_slug, []).append((fig, base64.b64encode(fig.png.read_bytes()).decode("ascii")))
    labels = {row.group.key: row.label for t in tables for row in t.rows}  # every group has a row
    group_views = [{
        "group": g, "label": labels[g.key], "version": str(g.config.get("clbench_version")),
        "runs": [(r, str((r.record.get("environment") or {}).get("git_revision")))
                 for r in sorted(g.runs, key=lambda r: r.seed)],
        "json": json.dumps(g.config, indent=2, sort_keys=True)} for g in groups]
    measures = _measures(tables)
    return _template().render(
        title=title, generated=generated, version=clbench.__version__, sources=[str(s) for s in sources],
        n_runs=sum(len(g.runs) for g in groups), n_groups=sum(1 for g in groups if g.runs), notes=notes,
        tables=tables, figures=by_slug, failed=_failed_cells(failed), groups=group_views,
        values_text=" ".join(m.stored for m in measures), definitions=definitions(metric_names, measures),
        versions=_versions([r for g in groups for r in g.runs]))
