"""The `clbench` command line. Every command is thin: it parses, calls the library, prints.
Heavy modules (torch) are imported inside the commands that need them, so `--help` and
`list` start fast.
"""
from __future__ import annotations

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


@app.command("list")
def list_command(kind: str = typer.Argument("learners", help="learners, scenarios or metrics")) -> None:
    """List the learners, named scenarios or metrics clbench knows."""
    from clbench import registry

    if kind == "learners":
        for name, ref in registry.learner_names().items():
            typer.echo(f"{name:<12} {ref:<40} {registry.describe(ref)}")
    elif kind == "scenarios":
        for name, config in registry.NAMED_SCENARIOS.items():
            args = ", ".join(f"{k}={v}" for k, v in config.items() if k not in ("builder", "protocol"))
            typer.echo(f"{name:<18} {config['builder']}({args}), default protocol {config['protocol']}")
        typer.echo(f"protocols: {', '.join(registry.PROTOCOLS)}")
    elif kind == "metrics":
        from clbench import metrics

        for name, fn in metrics.METRICS.items():
            doc = (fn.__doc__ or "").strip().splitlines()
            typer.echo(f"{name:<24} {'higher' if metrics.HIGHER_IS_BETTER[name] else 'lower'} is better  {doc[0] if doc else ''}")
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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines"),
) -> None:
    """Run one learner on one scenario; print the accuracy matrix and metrics; write the run."""
    from clbench.config import parse_assignments
    from clbench.experiment import execute, resolve
    from clbench.registry import scenario_config
    from clbench.results import find_run, read_run, run_id, write_run

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
                seen = [r["accuracy"] for r in rows[:after_task]]
                typer.echo(f"  task {after_task}/{len(rows)} trained in {rows[0]['train_seconds']:.2f} s; "
                           f"mean accuracy on tasks seen {100 * sum(seen) / len(seen):.1f}%", err=True)

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
) -> None:
    """Run the conformance battery on a learner and print a verdict per check."""
    from clbench.config import make_learner, parse_assignments
    from clbench.registry import load_learner
    from clbench.testing import check_learner

    try:
        instance = make_learner(load_learner(learner), parse_assignments(overrides), learner)
    except UsageError as err:
        fail(str(err))
    results = check_learner(instance, raise_on_failure=False)
    for r in results:
        typer.echo(f"{'PASS' if r.passed else 'FAIL'}  {r.name:<38} {r.detail}")
    failed = [r for r in results if not r.passed]
    if failed:
        typer.echo(f"{learner}: {len(failed)} of {len(results)} checks failed")
        raise typer.Exit(1)
    typer.echo(f"{learner}: all {len(results)} checks passed")


def main() -> None:
    try:
        app()
    except UsageError as err:  # raised outside a command's own handling
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
