"""Harness overhead: the same work through `clbench.run` and through a minimal hand-written
PyTorch loop, alternating in one process; prints the median times and their ratio.

Identical work: the same scenario tensors, MLP, initial weights, Adam optimiser reset per task,
class masking, epochs, batch size, data order and evaluation schedule (row 0, then every task
after every task). The script first checks that both give the same accuracy matrix.

    python benchmarks/overhead.py [--repeats 15] [--scenario split-digits] [--protocol class_il]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from clbench.optim import build_optimizer
from clbench.learners.finetune import Finetune
from clbench.models import mlp
from clbench.scenario_names import scenario_config
from clbench.runner import run, seed_everything
from clbench.scenario import build_scenario


def hand_loop(scenario, seed: int, epochs: int = 10, batch_size: int = 32, lr: float = 1e-3,
              widths=(100, 100)) -> np.ndarray:
    """Fine-tuning written out by hand, as a researcher would without a harness."""
    seed_everything(seed)
    model = mlp(scenario.spec.input_shape, scenario.n_outputs, widths)
    generator = torch.Generator().manual_seed(seed)
    seen = torch.zeros(scenario.n_outputs, dtype=torch.bool)
    task_il = scenario.protocol == "task_il"

    def evaluate() -> list[float]:
        model.eval()
        out = []
        with torch.no_grad():
            for task in scenario:
                logits = model(task.x_test)
                if task_il:
                    units = torch.tensor(task.classes)
                    pred = units[logits[:, units].argmax(1)]
                else:
                    pred = logits.argmax(1)
                out.append(int((pred == task.y_test).sum()) / len(task.y_test))
        model.train()
        return out

    rows = [evaluate()]
    for task in scenario:
        allowed = torch.zeros(scenario.n_outputs, dtype=torch.bool)
        allowed[list(task.classes)] = True
        seen |= allowed
        mask = torch.zeros(1, scenario.n_outputs).masked_fill(~(allowed if task_il else seen), float("-inf"))
        optimizer = build_optimizer("adam", model.parameters(), lr)  # Adam as clbench builds it (fused)
        x, y = task.x_train, task.y_train
        for _ in range(epochs):
            order = torch.randperm(len(y), generator=generator)
            for start in range(0, len(y), batch_size):
                idx = order[start:start + batch_size]
                loss = F.cross_entropy(model(x[idx]) + mask, y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        rows.append(evaluate())
    return np.array(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--scenario", default="split-digits")
    parser.add_argument("--protocol", default="class_il")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scenario = build_scenario(scenario_config(args.scenario, args.protocol))

    reference = hand_loop(scenario, seed=0)
    harness = run(scenario, Finetune(device="cpu"), seed=0).matrix
    same = np.array_equal(reference, harness)
    print(f"same accuracy matrix from both: {same}")
    if not same:
        raise SystemExit("the two paths do different work; the comparison would be meaningless")

    times = {"clbench": [], "hand-written": []}
    for i in range(args.repeats):
        for name in (("clbench", "hand-written") if i % 2 == 0 else ("hand-written", "clbench")):
            start = time.perf_counter()
            if name == "clbench":
                run(scenario, Finetune(device="cpu"), seed=i)
            else:
                hand_loop(scenario, seed=i)
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratios = [a / b for a, b in zip(times["clbench"], times["hand-written"])]
    print(f"{args.scenario} ({args.protocol}), fine-tuning, {args.repeats} alternating repeats, "
          f"torch threads {args.threads}, torch {torch.__version__}")
    for name, value in med.items():
        print(f"  {name:<13} median {value * 1000:8.1f} ms per run (train + evaluate)")
    print(f"  ratio clbench / hand-written: median of medians {med['clbench'] / med['hand-written']:.3f}, "
          f"median of paired ratios {statistics.median(ratios):.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
