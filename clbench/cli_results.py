"""The commands that read recorded runs: `report`, `compare`, `published`, `baselines` and `verify`
(registered on `clbench.cli.app`, which imports this module; the CLI only parses and prints).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from clbench.cli import app, fail
from clbench.errors import UsageError

# the options `report` and `compare` share
METRICS_OPTION = typer.Option(None, "--metrics", "-m", help="comma-separated metric names (clbench list metrics); "
                              "default: acc,bwt,fwt,forgetting,learning_acc")
FORMAT_OPTION = typer.Option("markdown", "--format", "-f", help="tables printed to stdout: markdown, latex or csv")
SPREAD_OPTION = typer.Option("sem", "--spread", help="the ± in tables: sem, std or ci95")
QUIET_OPTION = typer.Option(False, "--quiet", "-q", help="no progress line on the terminal")


def _start(metric_names: Optional[str], fmt: str, out: Optional[Path], quiet: bool):
    """The metric names of --metrics, once --format and --out are checked, and the progress line."""
    from clbench.progress import Status
    from clbench.render import FORMATS
    from clbench.results import check_output_folder
    from clbench.tables import check_choice, parse_metrics

    names = parse_metrics(metric_names)
    check_choice("format", fmt, FORMATS)
    if out is not None:
        check_output_folder(out, "--out")
    return names, Status(quiet)


@app.command()
def report(
    folder: Path = typer.Argument(..., help="a folder of runs, searched recursively (e.g. results/hope)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="where to write the report (default: FOLDER)"),
    metric_names: Optional[str] = METRICS_OPTION,
    fmt: str = FORMAT_OPTION,
    spread: str = SPREAD_OPTION,
    figures: bool = typer.Option(True, "--figures/--no-figures", help="draw the figures (PDF and PNG)"),
    quiet: bool = QUIET_OPTION,
) -> None:
    """Tables, figures and a self-contained HTML report of the runs in FOLDER."""
    from clbench.render import render_tables
    from clbench.report import write_report
    from clbench.tables import load_folder

    try:
        names, status = _start(metric_names, fmt, out, quiet)
        status.show(f"reading the runs under {folder}")
        runs = load_folder(folder)
        written = write_report(runs, out or folder, names, spread=spread, figures=figures, sources=[str(folder)],
                               progress=lambda text: status.show(f"writing {text}"))
        status.clear()
    except UsageError as err:
        fail(str(err))
    typer.echo(render_tables(written.tables, fmt), nl=False)
    for run in written.failed:
        typer.echo(f"warning: skipped {run.path}: {run.problem}", err=True)
    typer.echo(f"wrote report.md, report.html, {len(written.tables)} tables (md, tex, csv) and "
               f"{len(written.figures)} figures (pdf, png) to {written.folder}", err=True)


@app.command()
def compare(
    folder: Path = typer.Argument(..., help="a folder with the runs of your method"),
    against: List[Path] = typer.Option(..., "--against", "-a", help="a folder of recorded runs, e.g. baselines/hope "
                                       "or results (repeatable)"),
    metric_names: Optional[str] = METRICS_OPTION,
    fmt: str = FORMAT_OPTION,
    spread: str = SPREAD_OPTION,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="also write compare.md, compare.html, tables "
                                       "and figures here"),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="with --out: draw the figures"),
    quiet: bool = QUIET_OPTION,
) -> None:
    """Your method's runs next to recorded runs on the same scenarios, Welch's t-test per metric."""
    from clbench.aggregate import failed_runs
    from clbench.render import render_tables
    from clbench.report import write_report
    from clbench.tables import compare_runs, load_folder

    try:
        names, status = _start(metric_names, fmt, out, quiet)
        status.show(f"reading the runs under {folder} and {', '.join(map(str, against))}")
        method_runs = load_folder(folder)
        recorded = [run for where in against for run in load_folder(where)]
        status.show("comparing")
        result = compare_runs(method_runs, recorded, names, spread, method_where=str(folder),
                              against_where=", ".join(map(str, against)))
        if out is not None:
            write_report(method_runs + recorded, out, names, spread=spread, figures=figures, comparison=result,
                         sources=[str(folder), *map(str, against)], name="compare",
                         progress=lambda text: status.show(f"writing {text}"))
        status.clear()
    except UsageError as err:
        fail(str(err))
    for run in failed_runs(method_runs + recorded):
        typer.echo(f"warning: skipped {run.path}: {run.problem}", err=True)
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(render_tables(result.tables, fmt), nl=False)
    if out is not None:
        typer.echo(f"wrote compare.md, compare.html, tables and figures to {out}", err=True)


@app.command()
def published(
    folder: Path = typer.Argument(..., help="a folder of recorded runs, e.g. results/vandeven-split-fmnist"),
    csv: Optional[Path] = typer.Option(None, "--csv", help="published numbers (default: the shipped "
                                       "baselines/published.csv)"),
    k: float = typer.Option(3.0, "--k", help="a difference within k combined standard errors counts as a match"),
) -> None:
    """Recorded runs next to the published numbers of the same learner, scenario and protocol."""
    from clbench.published import format_matches, match_results
    from clbench.shipped import published_csv

    if not folder.is_dir():
        fail(f"{folder} is not a folder of runs")
    try:
        comparisons = match_results(folder, csv)
    except UsageError as err:
        fail(str(err))
    if not comparisons:
        fail(f"no run under {folder} matches a published number (same learner, scenario and protocol; "
             f"the published rows are in {csv or published_csv()})")
    typer.echo(format_matches(comparisons, k))


@app.command()
def baselines(name: Optional[str] = typer.Argument(None, help="a shipped set of recorded runs, e.g. hope")) -> None:
    """The baselines shipped with clbench: without NAME, each set of recorded runs and where it is;
    with NAME, its folder (for compare --against)."""
    from clbench import shipped

    try:
        if name is not None:
            typer.echo(shipped.recorded_runs(name))
            return
        recorded = shipped.recorded()
        width = max(len(label) for label in [*recorded, "published"])
        for label, folder in recorded.items():
            typer.echo(f"{label:<{width}} {sum(1 for _ in folder.glob('*/run.json')):>4} runs  {folder}")
        typer.echo(f"{'published':<{width}} {'':>9} {shipped.published_csv()}")
    except UsageError as err:
        fail(str(err))


@app.command()
def verify(
    folders: List[Path] = typer.Argument(..., help="folders of recorded runs, e.g. baselines/native-digits or "
                                         "\"$(clbench baselines hope)\""),
    max_seconds: Optional[float] = typer.Option(None, "--max-seconds", help="skip groups whose recorded run took "
                                                "longer than this"),
    learners: List[str] = typer.Option([], "--learner", "-l", help="only groups of this learner name (repeatable)"),
    threads: int = typer.Option(1, "--threads", help="torch threads for the re-runs"),
    all_seeds: bool = typer.Option(False, "--all-seeds", help="re-run every seed, not only the lowest; a group "
                                   "that differs also gets its final acc recorded and now, with Welch's p"),
) -> None:
    """Re-run the lowest seed of every recorded group with the code as it is now and require the
    stored matrix back exactly; name each group to re-record, and each that differs but was
    recorded on another processor or with other package versions. Exit 1 if any."""
    from clbench.verify import summary, verify as verify_groups

    if threads < 1:
        fail(f"--threads must be at least 1, got {threads}")
    if max_seconds is not None and not max_seconds >= 0:
        fail(f"--max-seconds must be a number of seconds ≥ 0, got {max_seconds}")
    try:
        verdicts = verify_groups(folders, max_seconds=max_seconds, learners=learners, threads=threads,
                                 all_seeds=all_seeds, on_verdict=lambda v: typer.echo(v.line()))
    except UsageError as err:
        fail(str(err))
    typer.echo(summary(verdicts))
    if not all(v.reproduced for v in verdicts):
        raise typer.Exit(1)
