"""Tokens per second of clbench's language-model training against a minimal hand-written loop.

Both train the same Transformer (the `transformer` learner's default size unless --widths is given)
on the same token windows of the embedded text stream's first domain, with the same optimiser
(Adam, the same fused/foreach kernel), batch size and number of steps; the hand-written loop is
nanoGPT-style: draw a batch, forward, cross-entropy, backward, step. They alternate, so both see
the same machine load, and the script prints each one's best and median tokens/second and their
ratio (clbench time / hand-written time; 1.00 = no overhead).

    python benchmarks/lm_throughput.py                 # default model, 1 thread
    python benchmarks/lm_throughput.py --steps 40 --repeats 5
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from clbench.optim import build_optimizer
from clbench.learners.transformer import Transformer
from clbench.models import build_backbone
from clbench.scenario_names import scenario_config
from clbench.scenario import build_scenario


def clbench_seconds(task, spec, fields: dict, steps: int) -> float:
    learner = Transformer(**fields, iterations=steps)
    learner.setup(spec, 0)
    start = time.perf_counter()
    learner.fit_task(task.for_training())
    return time.perf_counter() - start


def hand_seconds(task, spec, fields: dict, steps: int) -> float:
    torch.manual_seed(0)
    model = build_backbone("transformer", spec.input_shape, spec.n_outputs, fields["widths"])
    optimizer = build_optimizer("adam", model.parameters(), fields["lr"])
    generator = torch.Generator().manual_seed(0)
    x_all, y_all = task.x_train, task.y_train
    batch = fields["batch_size"]
    start = time.perf_counter()
    order = torch.randperm(len(x_all), generator=generator)
    for step in range(steps):
        if (step + 1) * batch > len(order):
            order = torch.randperm(len(x_all), generator=generator)
        idx = order[(step * batch) % len(order):][:batch]
        logits = model(x_all[idx])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y_all[idx].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    float(loss.detach())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="training steps per timed attempt")
    parser.add_argument("--repeats", type=int, default=5, help="timed attempts of each (alternating)")
    parser.add_argument("--widths", default="192,4,4", help="width,depth,heads")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scenario = build_scenario(scenario_config("text-embedded"))
    task, spec = scenario[0], scenario.spec
    defaults = Transformer()
    fields = {"widths": tuple(int(v) for v in args.widths.split(",")), "lr": defaults.lr,
              "batch_size": defaults.batch_size, "device": "cpu"}
    tokens = args.steps * fields["batch_size"] * spec.input_shape[0]
    clbench_seconds(task, spec, fields, 3), hand_seconds(task, spec, fields, 3)  # warm-up
    ours, hand = [], []
    for _ in range(args.repeats):
        ours.append(clbench_seconds(task, spec, fields, args.steps))
        hand.append(hand_seconds(task, spec, fields, args.steps))
    paired = sorted(o / h for o, h in zip(ours, hand))
    print(f"model widths {fields['widths']}, batch {fields['batch_size']} x context {spec.input_shape[0]}, "
          f"{args.steps} steps ({tokens} tokens) per attempt, {args.repeats} attempts, {args.threads} thread(s)")
    for label, times in (("clbench SGDLearner", ours), ("hand-written loop", hand)):
        print(f"  {label:<19} best {tokens / min(times):8.0f} tokens/s   median {tokens / statistics.median(times):8.0f} tokens/s")
    print(f"  ratio clbench / hand-written: best times {min(ours) / min(hand):.3f}, "
          f"per-attempt median {statistics.median(paired):.3f} (range {paired[0]:.3f}-{paired[-1]:.3f})")


if __name__ == "__main__":
    main()
