"""The `clbench` command line. Every command is thin: it parses, calls the library, prints.
Heavy modules (torch) are imported inside the commands that need them, so `--help` and
`list` start fast.
"""
from __future__ import annotations

import atexit
import gc
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import List, Optional

import typer

from clbench.errors import RunFailed, UsageError

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
        for prefix, family in registry.learner_families().items():
            names = family.names()
            if names:
                typer.echo(f"{family.title}:")
            for name, summary in names.items():
                summary = summary if len(summary) <= 90 else summary[:87] + "..."
                typer.echo(f"{prefix + ':' + name:<31} {summary}")
    elif kind == "scenarios":
        from clbench.scenario_names import NAMED_SCENARIOS, PROTOCOLS

        for name, config in NAMED_SCENARIOS.items():
            args = ", ".join(f"{k}={v}" for k, v in config.items() if k not in ("builder", "protocol"))
            typer.echo(f"{name:<18} {config['builder']}({args}), default protocol {config['protocol']}")
        typer.echo(f"protocols: {', '.join(PROTOCOLS)}")
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
    keep_checkpoints: bool = typer.Option(False, "--keep-checkpoints", help="keep the per-task checkpoints "
                                          "(RESULTS/.ckpt-<run id>) after the run is written"),
    tensorboard: Optional[Path] = typer.Option(None, "--tensorboard", help="also write a stream run's curves "
                                               "as TensorBoard scalars to this folder (needs tensorboard)"),
) -> None:
    """Run one learner on one scenario; print the accuracy matrix and metrics; write the run.
    Killed, it resumes from its last finished task when started again."""
    from clbench.configs import run_config
    from clbench.display import format_run
    from clbench.fields import parse_assignments
    from clbench.progress import Status, steps_to
    from clbench.suite_file import check_seed

    if threads < 1:
        fail(f"--threads must be at least 1, got {threads}")
    use_data_dir(data_dir)

    status = Status(quiet)
    training = {"task": 1, "of": 0}

    def progress(after_task: int, rows: list[dict]) -> None:
        training.update(task=after_task + 1, of=len(rows))
        if not quiet and after_task > 0:
            from clbench.metrics import get_measure
            from clbench.results import value_column

            measure = get_measure(value_column(rows))
            seen = [r[measure.column] for r in rows[:after_task]]
            status.clear()
            typer.echo(f"  task {after_task}/{len(rows)} trained in {rows[0]['train_seconds']:.2f} s; "
                       f"mean {measure.label} on tasks seen {measure.scale * sum(seen) / len(seen):.{measure.decimals}f} "
                       f"{measure.unit}", err=True)

    def step(done: int, total: int | None) -> None:  # the live line while a task trains (terminals only)
        of = f"/{training['of']}" if training["of"] else ""
        status.show(f"training task {training['task']}{of}: step {done}" + (f"/{total}" if total else ""),
                    every=0.0 if done == total else 0.2)

    try:
        check_seed(seed, "--seed")
        with steps_to(step) if status.live else nullcontext():
            try:
                stored = run_config(scenario, learner, seed, protocol=protocol, overrides=parse_assignments(overrides),
                                    results=results, force=force, threads=threads, progress=progress,
                                    keep_checkpoints=keep_checkpoints)
            finally:
                status.clear()
    except UsageError as err:
        fail(str(err))
    except RunFailed as err:
        fail(f"{err} (traceback in {err.traceback_path})", code=1)
    if stored.reused:
        typer.echo(f"reusing the finished run in {stored.path} (--force runs it again)", err=True)
    typer.echo(format_run(stored.record, stored.rows, stored.matrix))
    memory = [r["peak_memory_mb"] for r in stored.rows if "peak_memory_mb" in r]
    if memory:
        typer.echo(f"peak memory: {max(memory):.0f} MiB (the largest per-task peak; per task in rows.csv)")
    from clbench.anytime import read_anytime, summary

    anytime = read_anytime(stored.path)
    if anytime is not None:
        from clbench.display import format_anytime

        typer.echo(format_anytime(summary(anytime)))
    if tensorboard is not None:
        from clbench.loggers import to_tensorboard

        try:
            typer.echo(f"{to_tensorboard(stored.path, tensorboard)} scalars written to {tensorboard}")
        except UsageError as err:
            fail(str(err))
    typer.echo(f"written to {stored.path}")


@app.command()
def check(
    learner: str = typer.Argument(..., help="short name, package.module:Class or path/to/file.py:Class"),
    overrides: List[str] = typer.Option([], "--set", help="learner field, key=value (repeatable)"),
    sequence: Optional[bool] = typer.Option(None, "--text/--images", help="check as a language model on a text "
                                            "stream, or on images (default: text for a transformer backbone)"),
) -> None:
    """Run the conformance battery on a learner and print a verdict per check."""
    from clbench.fields import make_learner, parse_assignments
    from clbench.registry import load_learner
    from clbench.testing import check_learner

    try:
        instance = make_learner(load_learner(learner), parse_assignments(overrides), learner)
    except UsageError as err:
        fail(str(err))
    results = check_learner(instance, raise_on_failure=False, sequence=sequence,
                            on_result=lambda r: typer.echo(f"{r.verdict}  {r.name:<38} {r.detail}"))
    failed = [r for r in results if not r.passed]
    warned = [r for r in results if r.warning]
    note = (f"; {len(warned)} learned little (WARN: below the learning threshold, not an interface fault)"
            if warned else "")
    if failed:
        typer.echo(f"{learner}: {len(failed)} of {len(results)} checks failed{note}")
        raise typer.Exit(1)
    typer.echo(f"{learner}: all {len(results)} checks passed{note}")


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
    learners: List[str] = typer.Option([], "--learner", "-l", help="run only this learner label of the suite "
                                       "(repeatable, or comma-separated); its runs keep their ids in the whole suite"),
    scenarios: List[str] = typer.Option([], "--scenario", "-s", help="run only this scenario name of the suite "
                                        "(repeatable, or comma-separated)"),
    results: Path = typer.Option(Path("results"), "--results", help="results root; runs go to RESULTS/<suite name>/"),
    force: bool = typer.Option(False, "--force", help="run every run again, finished or not"),
    threads: int = typer.Option(1, "--threads", help="torch threads per run (the same in every executor)"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP + "; local workers inherit it, "
                                            "Ray workers on other machines need $CLBENCH_DATA set there"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress display; only the table and the summary"),
) -> None:
    """Run a suite of scenarios × learners × seeds: what is not finished yet, in parallel if asked;
    end with the forgetting table. Safe to kill and start again."""
    from clbench.progress import SuiteProgress, format_seconds
    from clbench.suite import Finished, Note, Planned, Started, plan_suite, run_suite

    use_data_dir(data_dir)
    if dry_run:
        try:
            planned = plan_suite(file, results, overrides, seeds, force, learners, scenarios)
        except UsageError as err:
            fail(str(err))
        for run in planned.runs:
            typer.echo(f"{planned.state(run):<7} {run.run_id}  {run.label}")
        loaded, todo = planned.suite, planned.todo
        retry = len([r for r in todo if r.run_id in planned.failed_before])
        typer.echo(f"{loaded.name}: {len(planned.runs)} runs ({loaded.n_scenarios} scenarios × {loaded.n_learners} "
                   f"learners × {len(loaded.seeds)} seeds) in {planned.root}: {len(planned.done)} done, "
                   f"{len(todo)} to do" + (f" ({retry} failed before, to retry)" if retry else ""))
        if loaded.left_out:
            typer.echo(f"left out (the learner is not defined under that protocol): {', '.join(loaded.left_out)}")
        return

    display: list[SuiteProgress] = []

    def show(event) -> None:
        if isinstance(event, Planned):
            display.append(SuiteProgress(len(event.plan.runs), len(event.plan.done), len(event.plan.todo), quiet=quiet))
            return
        progress = display[0]
        if event is None:
            progress.tick()
        elif isinstance(event, Note) and event.warning:
            typer.echo(f"note: {event.text}", err=True)
        elif isinstance(event, Note):
            progress.note(event.text)
        elif isinstance(event, Started):
            progress.started(event.run.label)
        elif isinstance(event, Finished):
            progress.ended(event.run.label, event.outcome.status == "ok", event.outcome.seconds, event.outcome.error)

    try:
        result = run_suite(file, results, overrides=overrides, seeds=seeds, executor=executor, jobs=jobs,
                           threads=threads, address=address, force=force, learners=learners, scenarios=scenarios,
                           on_event=show)
    except UsageError as err:
        if display:
            display[0].close()
        fail(str(err))
    if display:
        display[0].close()
    failures = result.failed
    if result.interrupted:
        typer.echo(f"interrupted after {len(result.ran) - len(failures)} runs finished now (kept in {result.root}); "
                   f"run the same command to go on", err=True)
        _exit_now(130)

    from clbench.aggregate import format_table, group_runs, load_runs

    groups = group_runs(load_runs(result.finished_paths()))
    if groups:
        typer.echo(format_table(groups))
    typer.echo(f"{result.suite.name}: {len(result.plan.runs)} runs: {len(result.ran) - len(failures)} done now, "
               f"{len(result.plan.done)} skipped (already finished), {len(failures)} failed; "
               f"{format_seconds(result.seconds)}; results in {result.root}", err=True)
    for event in failures:
        typer.echo(f"failed: {event.run.label}: {event.outcome.error} (traceback in "
                   f"{event.path / 'traceback.txt'})", err=True)
    if failures:
        typer.echo("failed runs are run again the next time the suite starts", err=True)
        raise typer.Exit(1)


@app.command()
def fetch(
    name: str = typer.Argument(..., help="mnist, fashion-mnist, cifar10, cifar100 or mnist10k, or a text domain: "
                               "shakespeare, kjv, austen, sotu, python-docs, spdx"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no download progress"),
) -> None:
    """Download a dataset's published files into the data directory and verify their checksums.
    Files already there and intact are kept; a CIFAR archive copied there is unpacked offline."""
    from clbench import data, text_data, text_fetch

    use_data_dir(data_dir)
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
        if name in text_fetch.TEXT_RECIPES:  # read it back as clbench will, checksums included
            text_data.load_domain(name)
        else:
            data.load(name)
    except UsageError as err:
        fail(str(err))
    typer.echo(f"{name}: verified, in {where}")


from clbench import cli_results  # noqa: E402,F401 (registers report, compare, published, baselines and verify)


def main() -> None:
    # Registered first, so it runs after every other exit handler (Ray's, the worker pool's). With
    # torch loaded, tearing the interpreter down spends most of a second collecting torch's objects;
    # frozen, they are skipped. Everything clbench writes is closed by then; an object that is only
    # reachable from a reference cycle is not finalized (a file a learner left open, unflushed).
    atexit.register(gc.freeze)
    abort, usage, done = _click_exceptions("Abort"), _click_exceptions("ClickException"), _click_exceptions("Exit")
    try:
        code = app(standalone_mode=False)
    except UsageError as err:  # raised outside a command's own handling
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except (KeyboardInterrupt, *abort):
        typer.echo("interrupted", err=True)
        _exit_now(130)
    except usage as err:  # a bad option or argument: click's message, on one line
        if type(err).__name__ == "NoArgsIsHelpError":
            err.show()  # the help text
        else:
            ctx = getattr(err, "ctx", None)
            hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            typer.echo(f"error: {' '.join(err.format_message().split())}{hint}", err=True)
        sys.exit(err.exit_code)
    except done as err:
        sys.exit(err.exit_code)
    except Exception as err:  # noqa: BLE001 - a bug, not a user's mistake: one line and the traceback in a file
        typer.echo(f"error: {type(err).__name__}: {' '.join(str(err).split())} (traceback in "
                   f"{_save_traceback()}; please report it)", err=True)
        sys.exit(1)
    if code == 130:  # typer turns Ctrl-C inside a command into exit code 130
        typer.echo("interrupted", err=True)
        _exit_now(130)
    sys.exit(code if isinstance(code, int) else 0)


def _click_exceptions(name: str) -> tuple[type, ...]:
    """click's exception class `name` from typer's vendored copy (typer >= 0.20), click and typer."""
    import importlib

    found = []
    for module in ("typer._click.exceptions", "click.exceptions", "typer"):
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if isinstance(cls, type) and cls not in found:
            found.append(cls)
    return tuple(found)


def _save_traceback() -> str:
    import tempfile
    import traceback

    with tempfile.NamedTemporaryFile("w", prefix="clbench-error-", suffix=".txt", delete=False) as fh:
        fh.write(traceback.format_exc())
    return fh.name


def _exit_now(code: int) -> None:
    """Exit without tearing the interpreter down: a run thread may still be inside torch, whose
    threads abort the process ("terminate called without an active exception") when the
    interpreter finalizes under them. Every finished run is already written atomically."""
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # python -m clbench.cli: the imported module's app, on which cli_results registers
    from clbench.cli import main as imported_main

    imported_main()
