"""What anytime evaluation costs: the same split-digits stream run with evaluation every
`eval_every` steps (the default) and with evaluation at the boundaries only, alternating within
each repeat, in one process. Prints the median of the paired time ratios (anytime / boundary-only)
and checks that both runs give the same boundary matrix (evaluation must not change the learner).

    PYTHONPATH=. python benchmarks/anytime_cost.py --repeats 7 --learner finetune
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from clbench.configs import instantiate, resolve
from clbench.runner import run
from clbench.scenario import build_scenario
from clbench.scenario_names import scenario_config
from clbench.streams import STREAM_DEFAULTS


def timed(scenario_cfg: dict, learner: str, seed: int) -> tuple[float, np.ndarray]:
    config = resolve(scenario_cfg, learner, {"device": "cpu"}, seed)
    scenario = build_scenario(config["scenario"])
    start = time.perf_counter()
    result = run(scenario, instantiate(config), seed)
    return time.perf_counter() - start, result.matrix


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
    ratios, t_any, t_bnd = [], [], []
    for r in range(args.repeats):
        order = [(anytime_cfg, t_any), (boundary_cfg, t_bnd)]
        if r % 2:
            order.reverse()
        matrices = []
        for cfg, times in order:
            seconds, matrix = timed(cfg, args.learner, r)
            times.append(seconds)
            matrices.append(matrix)
        assert np.allclose(matrices[0], matrices[1]), "anytime evaluation changed the boundary matrix"
        ratios.append(t_any[-1] / t_bnd[-1])
    print(f"{args.scenario}, {args.learner}, eval_every={every}: anytime {1000 * statistics.median(t_any):.1f} ms, "
          f"boundary-only {1000 * statistics.median(t_bnd):.1f} ms per run (medians of {args.repeats}); "
          f"median paired ratio {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}); "
          f"identical boundary matrices")


if __name__ == "__main__":
    main()
