"""What anytime evaluation costs: the same split-digits stream run with evaluation every
`eval_every` steps (the default) and with evaluation at the boundaries only, alternating within
each repeat, in one process. Prints the median of the paired ratios (anytime / boundary-only) of
wall time and of the process's CPU time (less disturbed by other jobs on a shared machine), the
CPU time spent inside the evaluations of the anytime runs (timed in the same runs, the most stable
of the three on a loaded machine), and checks that both runs give the same boundary matrix (evaluation must not change the learner).

    PYTHONPATH=. python benchmarks/anytime_cost.py --repeats 7 --learner finetune
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import clbench.stream_run as stream_run
from clbench.configs import instantiate, resolve
from clbench.runner import run
from clbench.scenario import build_scenario
from clbench.scenario_names import scenario_config
from clbench.streams import STREAM_DEFAULTS


EVAL_CPU = [0.0]  # CPU seconds inside evaluations, summed over a run
_evaluator = stream_run.evaluator


def timed_evaluator(scenario):
    evaluate = _evaluator(scenario)

    def wrapped(learner):
        start = time.process_time()
        try:
            return evaluate(learner)
        finally:
            EVAL_CPU[0] += time.process_time() - start

    return wrapped


stream_run.evaluator = timed_evaluator


def timed(scenario_cfg: dict, learner: str, seed: int) -> tuple[float, float, np.ndarray]:
    config = resolve(scenario_cfg, learner, {"device": "cpu"}, seed)
    scenario = build_scenario(config["scenario"])
    EVAL_CPU[0] = 0.0
    start, cpu = time.perf_counter(), time.process_time()
    result = run(scenario, instantiate(config), seed)
    return time.perf_counter() - start, time.process_time() - cpu, result.matrix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--learner", default="finetune")
    parser.add_argument("--scenario", default="online-split-digits")
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = scenario_config(args.scenario)
    every = STREAM_DEFAULTS["eval_every"]
    anytime_cfg = {**base, "stream": {**base["stream"], "eval_every": every}}
    boundary_cfg = {**base, "stream": {**base["stream"], "eval_every": 0}}
    timed(anytime_cfg, args.learner, 0)  # warm-up: imports, data cache, first optimiser
    wall: dict[str, list[float]] = {"anytime": [], "boundary": []}
    cpu: dict[str, list[float]] = {"anytime": [], "boundary": []}
    eval_cpu: dict[str, list[float]] = {"anytime": [], "boundary": []}
    for r in range(args.repeats):
        order = [("anytime", anytime_cfg), ("boundary", boundary_cfg)]
        if r % 2:
            order.reverse()
        matrices = []
        for kind, cfg in order:
            seconds, cpu_seconds, matrix = timed(cfg, args.learner, r)
            wall[kind].append(seconds)
            cpu[kind].append(cpu_seconds)
            eval_cpu[kind].append(EVAL_CPU[0])
            matrices.append(matrix)
        assert np.allclose(matrices[0], matrices[1]), "anytime evaluation changed the boundary matrix"
    print(f"{args.scenario}, {args.learner}, eval_every={every}, {args.repeats} paired repeats; identical boundary matrices")
    for name, times in (("wall", wall), ("CPU", cpu)):
        ratios = [a / b for a, b in zip(times["anytime"], times["boundary"])]
        print(f"  {name}: anytime {1000 * statistics.median(times['anytime']):.1f} ms, boundary-only "
              f"{1000 * statistics.median(times['boundary']):.1f} ms per run (medians); median paired ratio "
              f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")
    extra = [(ea - eb) / (c - ea) for ea, eb, c in zip(eval_cpu["anytime"], eval_cpu["boundary"], cpu["anytime"])]
    print(f"  inside the runs: evaluations between boundaries took {1000 * statistics.median(eval_cpu['anytime']):.1f} - "
          f"{1000 * statistics.median(eval_cpu['boundary']):.1f} ms CPU (anytime - boundary-only runs); added to the "
          f"rest of the anytime run, median ratio {1 + statistics.median(extra):.3f}")


if __name__ == "__main__":
    main()

