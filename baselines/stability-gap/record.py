"""Record the stability-gap runs of this folder: fine-tuning and reservoir replay on split-digits,
class- and domain-incremental, 5 seeds, evaluated every 5 steps along a stream with signalled
boundaries (batches of 10, 5 freshly shuffled passes over each task: De Lange et al. 2023 train
several epochs per task). Run from the repository root:

    python baselines/stability-gap/record.py            # then: python baselines/stability-gap/summarise.py
"""
from __future__ import annotations

from pathlib import Path

from clbench.configs import run_config
from clbench.scenario_names import scenario_config

HERE = Path(__file__).resolve().parent
STREAM = {"kind": "online", "batch_size": 10, "passes": 5, "eval_every": 5, "loss_every": 5}
SCENARIOS = {"split-digits": ("class_il", "domain_il")}
LEARNERS = ("finetune", "replay")
SEEDS = range(5)


def main() -> None:
    for name, protocols in SCENARIOS.items():
        for protocol in protocols:
            config = {**scenario_config(name, protocol), "name": f"stream-{name}", "stream": STREAM}
            for learner in LEARNERS:
                for seed in SEEDS:
                    stored = run_config(config, learner, seed, results=HERE, threads=1)
                    print(f"{stored.path.name}: {'reused' if stored.reused else 'ran'}", flush=True)


if __name__ == "__main__":
    main()
