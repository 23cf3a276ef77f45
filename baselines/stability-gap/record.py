"""Record the stability-gap runs of this folder: fine-tuning and reservoir replay on split-digits,
class- and domain-incremental, 5 seeds, evaluated every 5 steps along a stream with signalled
boundaries (batches of 10, 5 freshly shuffled passes over each task: De Lange et al. 2023 train
several epochs per task). With `mnist10k` (after `clbench fetch mnist10k`): the same on split
MNIST-10k, one pass (1,600 training images per task already make 160 steps). Run from the
repository root:

    python baselines/stability-gap/record.py [mnist10k]   # then: python baselines/stability-gap/summarise.py
"""
from __future__ import annotations

import sys
from pathlib import Path

from clbench.configs import run_config
from clbench.scenario_names import scenario_config

HERE = Path(__file__).resolve().parent
STREAM = {"kind": "online", "batch_size": 10, "passes": 5, "eval_every": 5, "loss_every": 5}
SCENARIOS = {"split-digits": ("class_il", "domain_il")}
MNIST10K = {"builder": "split", "dataset": "mnist10k", "n_tasks": 5}
LEARNERS = ("finetune", "replay")
SEEDS = range(5)


def configs(mnist10k: bool):
    if mnist10k:
        for protocol in ("class_il", "domain_il"):
            yield {**MNIST10K, "protocol": protocol, "name": "stream-split-mnist10k", "stream": {**STREAM, "passes": 1}}
        return
    for name, protocols in SCENARIOS.items():
        for protocol in protocols:
            yield {**scenario_config(name, protocol), "name": f"stream-{name}", "stream": STREAM}


def main(mnist10k: bool = False) -> None:
    for config in configs(mnist10k):
        for learner in LEARNERS:
            for seed in SEEDS:
                stored = run_config(config, learner, seed, results=HERE, threads=1)
                print(f"{stored.path.name}: {'reused' if stored.reused else 'ran'}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] == ["mnist10k"])
