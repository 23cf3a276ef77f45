"""Running suites: skipping finished runs, --force, failure isolation, local worker processes, Ray,
the same rows whichever executor ran them, resume after SIGKILL, and the progress display."""
from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clbench.cli import app
from clbench.executors import run_one
from clbench.progress import SuiteProgress, format_seconds
from clbench.results import clean_stale, find_run, read_run, run_status, scan_runs, write_run
from clbench.suite_file import load_suite

from suite_fixtures import clbench_command, write_suite

FAILING = """
[learner.finetune]
epochs = 1
[learner.boom]
class = "learners.py:Boom"
epochs = 1
[learner.nan]
class = "learners.py:NaNLoss"
epochs = 1
"""

MIXED = """
[learner.finetune]
epochs = 1
[learner.ewc]
epochs = 1
lam = [1.0, 100.0]
[learner.replay]
epochs = 1
"""


def invoke(*args: str):
    return CliRunner().invoke(app, ["suite", *map(str, args)])


def accuracies(root: Path) -> dict[str, list[float]]:
    """Run id -> accuracies of every finished run under root."""
    return {rid: [r["accuracy"] for r in read_run(path)[1]]
            for rid, (path, status) in scan_runs(root).items() if status == "ok"}


def statuses(root: Path) -> dict[str, str]:
    return {path.name.rsplit("-", 1)[0]: status for path, status in scan_runs(root).values()}


# -- one run ------------------------------------------------------------------------------------------

def test_run_one_returns_a_failure_with_reason_traceback_and_rows_so_far(tmp_path):
    suite = load_suite(write_suite(tmp_path, '[learner.boom]\nclass = "learners.py:Boom"\nepochs = 1\n', seeds="[1]"))
    run = suite.runs[0]
    outcome = run_one(run.run_id, run.config)
    assert outcome.status == "failed"
    assert outcome.error == "RuntimeError: boom on purpose"
    assert "Traceback" in outcome.traceback and "fit_task" in outcome.traceback
    assert sorted({r["after_task"] for r in outcome.rows}) == [0, 1]  # rows before task 2 failed


# -- skip, force, failures ------------------------------------------------------------------------------

def test_finished_runs_are_skipped_and_force_runs_them_again(tmp_path):
    path = write_suite(tmp_path, "[learner.finetune]\nepochs = 1\n")
    results = tmp_path / "results"
    first = invoke(path, "--results", results)
    assert first.exit_code == 0, first.output
    assert "2 done now, 0 skipped" in first.stderr
    assert "| finetune | 2 |" in first.stdout  # the forgetting table over the suite's runs
    dirs = sorted((results / "t").iterdir())
    assert len(dirs) == 2
    stamps = {d: (d / "run.json").stat().st_mtime_ns for d in dirs}

    second = invoke(path, "--results", results)
    assert second.exit_code == 0 and "0 done now, 2 skipped" in second.stderr
    assert "| finetune | 2 |" in second.stdout
    assert {d: (d / "run.json").stat().st_mtime_ns for d in dirs} == stamps

    forced = invoke(path, "--results", results, "--force")
    assert forced.exit_code == 0 and "2 done now, 0 skipped" in forced.stderr
    assert sorted((results / "t").iterdir()) == dirs  # same ids, rewritten in place
    assert all((d / "run.json").stat().st_mtime_ns != stamps[d] for d in dirs)


def test_failing_runs_are_recorded_the_suite_goes_on_and_they_are_retried(tmp_path):
    path = write_suite(tmp_path, FAILING)
    results = tmp_path / "results"
    result = invoke(path, "--results", results)
    assert result.exit_code == 1
    assert statuses(results / "t") == {
        "finetune-tiny-class_il-s0": "ok", "finetune-tiny-class_il-s1": "ok",
        "boom-tiny-class_il-s0": "ok", "boom-tiny-class_il-s1": "failed",
        "nan-tiny-class_il-s0": "failed", "nan-tiny-class_il-s1": "failed"}
    boom = next((results / "t").glob("boom-tiny-class_il-s1-*"))
    record = json.loads((boom / "run.json").read_text())
    assert record["status"] == "failed" and record["error"] == "RuntimeError: boom on purpose"
    assert "raise RuntimeError" in (boom / "traceback.txt").read_text()
    assert {r["after_task"] for r in read_run(boom)[1]} == {0, 1}
    nan = json.loads(next((results / "t").glob("nan-tiny-class_il-s0-*")).joinpath("run.json").read_text())
    assert nan["error"].startswith("DivergenceError: training loss became nan")
    assert "3 done now, 0 skipped (already finished), 3 failed" in result.stderr
    assert "failed: boom tiny/class_il seed 1: RuntimeError: boom on purpose" in result.stderr
    assert "| boom | 1 |" in result.stdout and "| finetune | 2 |" in result.stdout  # table of what finished

    failed_stamps = {p: (p / "run.json").stat().st_mtime_ns
                     for p, status in scan_runs(results / "t").values() if status == "failed"}
    again = invoke(path, "--results", results)
    assert again.exit_code == 1
    assert "0 done now, 3 skipped (already finished), 3 failed" in again.stderr  # only the failed ran again
    assert all((p / "run.json").stat().st_mtime_ns != stamp for p, stamp in failed_stamps.items())


@pytest.mark.slow  # starts worker processes
def test_a_worker_that_dies_fails_its_run_and_the_pool_goes_on(tmp_path):
    body = '[learner.finetune]\nepochs = 1\n[learner.crash]\nclass = "learners.py:Crash"\nepochs = 1\n'
    path = write_suite(tmp_path, body, seeds="[0, 1, 2]")
    results = tmp_path / "results"
    result = invoke(path, "--results", results, "--jobs", "2")
    assert result.exit_code == 1
    found = statuses(results / "t")
    assert [found[f"finetune-tiny-class_il-s{s}"] for s in range(3)] == ["ok"] * 3
    assert [found[f"crash-tiny-class_il-s{s}"] for s in range(3)] == ["failed"] * 3
    crash = json.loads(next((results / "t").glob("crash-*-s0-*")).joinpath("run.json").read_text())
    assert crash["error"].startswith("WorkerDied") and "exit code 7" in crash["error"]


# -- determinism across executors ------------------------------------------------------------------------

@pytest.mark.slow  # starts worker processes
def test_jobs_1_and_jobs_2_give_the_same_rows(tmp_path):
    path = write_suite(tmp_path, MIXED)
    one = invoke(path, "--results", tmp_path / "one", "--jobs", "1", "--quiet")
    two = invoke(path, "--results", tmp_path / "two", "--jobs", "2", "--quiet")
    assert one.exit_code == 0 and two.exit_code == 0, one.output + two.output
    rows_one, rows_two = accuracies(tmp_path / "one" / "t"), accuracies(tmp_path / "two" / "t")
    assert len(rows_one) == 8 and rows_one == rows_two
    workers = {json.loads((p / "run.json").read_text())["worker"] for p, _ in scan_runs(tmp_path / "two" / "t").values()}
    assert len(workers) == 2  # really two processes, each running several runs


@pytest.mark.slow
def test_ray_gives_the_same_rows_and_isolates_failures(tmp_path):
    pytest.importorskip("ray", reason="the Ray executor needs the ray extra: pip install -e '.[ray]'")
    path = write_suite(tmp_path, MIXED + '[learner.boom]\nclass = "learners.py:Boom"\nepochs = 1\n')
    local = invoke(path, "--results", tmp_path / "local", "--quiet")
    assert local.exit_code == 1  # boom seed 1 fails
    out = subprocess.run(clbench_command() + ["suite", str(path), "--results", str(tmp_path / "ray"),
                                              "--executor", "ray", "--jobs", "2"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stderr[-3000:]
    assert accuracies(tmp_path / "ray" / "t") == accuracies(tmp_path / "local" / "t")
    assert statuses(tmp_path / "ray" / "t") == statuses(tmp_path / "local" / "t")
    assert "Ray" in out.stderr and "failed: boom tiny/class_il seed 1: RuntimeError: boom on purpose" in out.stderr


@pytest.mark.slow
def test_ray_joins_an_existing_cluster_and_leaves_it_running(tmp_path):
    ray = pytest.importorskip("ray", reason="the Ray executor needs the ray extra: pip install -e '.[ray]'")
    path = write_suite(tmp_path, "[learner.finetune]\nepochs = 1\n")
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        address = ray.get_runtime_context().gcs_address
        out = subprocess.run(clbench_command() + ["suite", str(path), "--results", str(tmp_path / "r"),
                                                  "--executor", "ray", "--address", address],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        assert f"Ray at {address}" in out.stderr
        assert len(accuracies(tmp_path / "r" / "t")) == 2
        assert ray.cluster_resources().get("CPU") == 2  # the cluster is still up
    finally:
        ray.shutdown()


# -- resume after SIGKILL -----------------------------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def _check_complete(root: Path) -> dict[str, bytes]:
    """Every run directory visible under root is a complete, finished run; returns run.json bytes by dir."""
    seen = {}
    for path in root.iterdir():
        if path.name.startswith("."):
            continue
        assert run_status(path) == "ok", f"{path.name} is not a complete finished run"
        record, rows = read_run(path)
        assert len(rows) == 3 * 2 and record["run_id"] == path.name.rsplit("-", 1)[1]
        seen[path.name] = (path / "run.json").read_bytes()
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_suite_killed_with_sigkill_resumes_without_losing_or_redoing_finished_runs(tmp_path, jobs):
    log = tmp_path / "starts.log"
    body = f'[learner.logged]\nclass = "learners.py:Logged"\nepochs = 1\nlog = "{log}"\ndelay = 0.4\n'
    path = write_suite(tmp_path, body, seeds='"0-5"')
    root = tmp_path / "results" / "t"
    command = clbench_command() + ["suite", str(path), "--results", str(tmp_path / "results"), "--jobs", str(jobs)]
    kept: dict[str, bytes] = {}
    first_finished: set[str] = set()
    for kill_at in (2, 4):  # kill when this many runs are finished, then start again
        with open(tmp_path / f"out{kill_at}.txt", "w") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while len([s for _, s in scan_runs(root).values() if s == "ok"]) < kill_at:
            assert process.poll() is None, (tmp_path / f"out{kill_at}.txt").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        finished = _check_complete(root)
        assert all(finished[name] == data for name, data in kept.items())  # nothing finished was lost or redone
        kept = finished
        first_finished = first_finished or {re.search(r"-s(\d+)-[0-9a-f]{12}$", name).group(1) for name in finished}
        if jobs > 1:  # the workers of the killed suite exit too
            workers = {int(line.split()[1]) for line in log.read_text().splitlines()} - {process.pid}
            assert workers
            deadline = time.monotonic() + 10
            while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not any(_alive(pid) for pid in workers)

    final = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-3000:]
    finished = _check_complete(root)
    assert len(finished) == 6
    assert all(finished[name] == data for name, data in kept.items())
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # leftovers of the killed writers are gone
    starts = [line.split()[0] for line in log.read_text().splitlines()]
    assert sorted(set(starts)) == [str(s) for s in range(6)]
    assert all(starts.count(seed) == 1 for seed in first_finished)  # finished before the first kill: run once
    assert len(starts) <= 6 + 2 * jobs  # at most the runs in flight at each kill ran twice


# -- results folder housekeeping -----------------------------------------------------------------------------

def test_clean_stale_removes_what_dead_writers_left_and_keeps_live_ones(tmp_path):
    child = subprocess.Popen(["true"])
    child.wait()  # a pid that has exited
    (tmp_path / f".tmp-abcdef123456-{child.pid}-xyz").mkdir()
    live = tmp_path / f".tmp-abcdef123456-{os.getpid()}-xyz"
    live.mkdir()
    config = {"scenario": {"name": "s", "protocol": "class_il"}, "learner": {"name": "l"}, "seed": 0}
    finished = write_run(tmp_path, config, [])
    moved = finished.with_name(f".old-{finished.name}-{child.pid}")
    finished.rename(moved)  # a writer died between moving the old run aside and renaming the new one in
    removed = clean_stale(tmp_path)
    assert [p.name for p in removed] == [f".tmp-abcdef123456-{child.pid}-xyz"]
    assert live.exists() and finished.exists() and not moved.exists()
    assert find_run(tmp_path, finished.name.rsplit("-", 1)[1]) == finished


# -- progress display ------------------------------------------------------------------------------------------

def test_plain_progress_prints_a_line_per_run_with_counts():
    stream = io.StringIO()
    progress = SuiteProgress(total=5, skipped=2, to_run=3, stream=stream, live=False)
    progress.started("a seed 0")
    progress.started("a seed 1")
    progress.ended("a seed 0", ok=True, seconds=1.25)
    progress.ended("a seed 1", ok=False, seconds=0.5, reason="RuntimeError: x")
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("ok     a seed 0 (1.2 s)  | [3/5 done] 1 running, 0 failed, 0:00 elapsed, ETA 0:00")
    assert lines[1].startswith("FAILED a seed 1 (0.5 s): RuntimeError: x  | [3/5 done] 0 running, 1 failed")
    assert "\r" not in stream.getvalue()


def test_live_progress_redraws_one_line_and_quiet_prints_nothing():
    stream = io.StringIO()
    progress = SuiteProgress(total=2, skipped=0, to_run=2, stream=stream, live=True)
    progress.started("a seed 0")
    progress.ended("a seed 0", ok=True, seconds=1.0)
    progress.close()
    text = stream.getvalue()
    assert "\r\x1b[2K[1/2 done] 0 running, 0 failed" in text and "\n" not in text
    quiet = io.StringIO()
    silent = SuiteProgress(total=2, skipped=0, to_run=2, stream=quiet, live=True, quiet=True)
    silent.started("a")
    silent.ended("a", ok=False, seconds=1.0, reason="x")
    silent.close()
    assert quiet.getvalue() == ""


def test_eta_follows_the_pace_of_finished_runs(monkeypatch):
    progress = SuiteProgress(total=10, skipped=0, to_run=4, stream=io.StringIO(), live=False)
    assert progress.eta() is None
    progress.start -= 30  # 30 s elapsed
    progress.ended("a", ok=True, seconds=30)
    assert progress.eta() == pytest.approx(90, abs=1)  # 3 more runs at 30 s each
    assert format_seconds(3725) == "1:02:05" and format_seconds(65) == "1:05"


def test_each_worker_of_a_pool_takes_its_own_gpu_when_there_are_several(monkeypatch):
    import torch

    from clbench.executors import pick_gpu

    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert [pick_gpu(slot) for slot in range(5)] == [0, 1, 2, 0, 1]
    assert chosen == [0, 1, 2, 0, 1]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # one GPU: left as it is
    assert pick_gpu(1) is None and len(chosen) == 5
