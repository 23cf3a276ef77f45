"""How `clbench suite` scales: one suite run side by side, in one go, on

  1. one local worker      (`--jobs 1`, runs in the suite process)
  2. two local workers     (`--jobs 2`, worker processes)
  3. Ray with two CPUs     (`--executor ray --jobs 2`, a local Ray instance started and stopped)

each from a cold start into its own empty results folder, timed end to end as a user sees it
(start-up, planning, running, writing, the table). Prints the times and the ratios the suite
issue asks for: 2 workers / 1 worker (target <= 0.55) and Ray / local pool (target <= 1.15),
and checks that all three produced the same rows.

It also measures what the machine itself gives, with no suite machinery: the same runs executed
by plain Python processes (`clbench.configs.execute`, torch already imported, one torch thread),
all in one process against every other run in each of two processes started together ("plain
processes 2 / 1"). It is the reference for "2 workers / 1 worker" on this machine: two runs side by
side on two cores are not always as fast as one alone (shared caches and memory bandwidth, a busy
host). It is not a strict floor: the halves are fixed in advance, while the pool hands each run to
whichever worker is free.

    .venv/bin/python benchmarks/suite_scaling.py                 # 16 runs: finetune, ewc × seeds 0-7
    .venv/bin/python benchmarks/suite_scaling.py --seeds 0-3 --epochs 10 --repeat 2
    .venv/bin/python benchmarks/suite_scaling.py --no-ray --no-plain     # just the local pool

Each run trains `--epochs` epochs per task (default 80, about 8 s a run here), so that the runs, not
the fixed start-up that every executor shares (Python, torch, planning: about 4 s here), are what
is measured, as in a real suite whose runs take minutes. With 1-second runs the ratios mostly
measure start-up; `--epochs 10` shows that.

Timings are only meaningful on an otherwise idle machine: the load average before and after
is printed so that a noisy measurement can be recognised.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"2 workers / 1 worker": 0.55, "Ray / local pool": 1.15}

SUITE = """name = "scaling"
seeds = "{seeds}"

[[scenario]]
name = "split-digits"
protocol = "class_il"
{learners}
"""
LEARNER = """
[learner.{name}]
epochs = {epochs}
"""


def clbench() -> list[str]:
    script = Path(sys.executable).parent / "clbench"
    return [str(script)] if script.exists() else [sys.executable, "-c", "from clbench.cli import main; main()"]


def timed(args: list[str], results: Path) -> float:
    start = time.perf_counter()
    out = subprocess.run(clbench() + ["suite", *args, "--results", str(results), "--quiet"],
                         capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"clbench suite {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return seconds


# A process that runs a share of the suite's runs when told to: imports and a short first run of each
# learner happen before the common start, so only the runs themselves are timed.
SHARE = """
import sys, time
import torch
torch.set_num_threads(1)
from clbench.configs import execute
from clbench.suite_file import load_suite
runs = load_suite(sys.argv[1]).runs
share = [r for i, r in enumerate(runs) if i % int(sys.argv[3]) == int(sys.argv[2])]
for first in {r.config["learner"]["name"]: r for r in share}.values():  # first use of each learner
    learner = first.config["learner"]
    execute({**first.config, "learner": {**learner, "fields": {**learner["fields"], "epochs": 1}}})
print("ready", flush=True)
if not sys.stdin.readline():  # the benchmark went away
    sys.exit(1)
start = time.perf_counter()
for run in share:
    execute(run.config)
print(time.perf_counter() - start, flush=True)
"""


def plain_processes(suite: Path) -> tuple[float, float]:
    """Seconds for all runs in one plain process, and for half of them in each of two started
    together (the slower one's time: each process times its own runs, so start-up and exit are out)."""
    def together(n_processes: int) -> float:
        processes = [subprocess.Popen([sys.executable, "-c", SHARE, str(suite), str(i), str(n_processes)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                     for i in range(n_processes)]
        try:
            for process in processes:
                if process.stdout.readline().strip() != "ready":
                    sys.exit("a plain runner process failed to start")
            for process in processes:
                process.stdin.write("\n")
                process.stdin.flush()
            seconds = []
            for process in processes:
                line = process.stdout.readline()
                if not line.strip():
                    sys.exit("a plain runner process failed while running")
                seconds.append(float(line))
            return max(seconds)
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                process.wait()

    return together(1), together(2)


def accuracies(folder: Path) -> dict[str, list[float]]:
    from clbench.results import read_run, scan_runs

    return {rid: [r["accuracy"] for r in read_run(path)[1]] for rid, (path, _) in scan_runs(folder).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0-7", help="seeds of the suite (default 0-7)")
    parser.add_argument("--learners", default="finetune,ewc", help="built-in learners (default finetune,ewc)")
    parser.add_argument("--epochs", type=int, default=80, help="epochs per task of every run (default 80)")
    parser.add_argument("--repeat", type=int, default=1, help="attempts: each executor (and the plain processes) this many times, interleaved")
    parser.add_argument("--no-ray", action="store_true", help="leave out the Ray executor")
    parser.add_argument("--no-plain", action="store_true",
                        help="leave out the plain-process measurement of what the machine gives")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    options = parser.parse_args()

    executors = {"1 local worker": ["--jobs", "1"], "2 local workers": ["--jobs", "2"]}
    if not options.no_ray:
        executors["Ray, 2 CPUs"] = ["--executor", "ray", "--jobs", "2"]
    learners = "".join(LEARNER.format(name=name, epochs=options.epochs) for name in options.learners.split(","))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="clbench-scaling-") as tmp:
        folder = Path(tmp)
        suite = folder / "scaling.toml"
        suite.write_text(SUITE.format(seeds=options.seeds, learners=learners))
        listing = subprocess.run(clbench() + ["suite", str(suite), "--dry-run", "--results", str(folder / "dry")],
                                 capture_output=True, text=True, check=True).stdout.strip().splitlines()
        print(listing[-1])
        trials: list[dict[str, float]] = []  # one per attempt: seconds per executor and plain processes
        rows = {}
        for attempt in range(options.repeat):
            trial: dict[str, float] = {}
            for label, args in executors.items():  # interleaved, so that drift in load hits all alike
                results = folder / f"{label.replace(' ', '_').replace(',', '')}-{attempt}"
                trial[label] = timed([str(suite), *args], results)
                rows[label] = accuracies(results / "scaling")
                print(f"  {label:<16} {trial[label]:7.1f} s", flush=True)
            if not options.no_plain:
                one, two = plain_processes(suite)
                trial["plain, 1 process"], trial["plain, 2 processes"] = one, two
                print(f"  plain processes: 1 × all runs {one:.1f} s, 2 × half {two:.1f} s ({two / one:.2f}x)",
                      flush=True)
            trials.append(trial)
    load_after = os.getloadavg()

    n_runs = len(next(iter(rows.values())))
    same = all(r == rows["1 local worker"] for r in rows.values())
    best = {label: min(t[label] for t in trials) for label in trials[0]}
    pairs = {"2 workers / 1 worker": ("2 local workers", "1 local worker"),
             "plain processes 2 / 1": ("plain, 2 processes", "plain, 1 process"),
             "Ray / local pool": ("Ray, 2 CPUs", "2 local workers")}
    pairs = {name: pair for name, pair in pairs.items() if pair[0] in best}
    ratios = {name: best[a] / best[b] for name, (a, b) in pairs.items()}
    paired = {name: sorted(t[a] / t[b] for t in trials) for name, (a, b) in pairs.items()}
    print(f"\n{n_runs} runs of {options.epochs} epochs per task, {os.cpu_count()} CPUs, {options.repeat} attempts; "
          f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    for label, seconds in best.items():
        print(f"  {label:<18} {seconds:7.1f} s (best)")
    print("  ratio of best times; median [range] of the ratios within each attempt:")
    for name, ratio in ratios.items():
        spread = paired[name]
        text = f"  {name:<22} {ratio:5.2f}x; {statistics.median(spread):.2f}x [{spread[0]:.2f}-{spread[-1]:.2f}]"
        if name in TARGETS:
            verdict = "ok" if ratio <= TARGETS[name] else "ABOVE TARGET"
            print(f"{text}  (target <= {TARGETS[name]:.2f}x, {verdict})")
        else:
            print(f"{text}  (the same runs in plain processes: what this machine gives 2 workers)")
    print(f"  same rows from every executor: {'yes' if same else 'NO'}")
    if options.json:
        options.json.write_text(json.dumps({"runs": n_runs, "epochs": options.epochs, "cpus": os.cpu_count(),
                                            "trials": trials, "best": best, "ratios": ratios, "paired": paired,
                                            "same_rows": same, "load_average": [load_before[0], load_after[0]]},
                                           indent=2) + "\n")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
