"""Training tokens per second of `hope-lm` against the Transformer LM of the same width and depth.

Both learners train on the same windows of the embedded text stream's first domain (batch 16 ×
context 128), through their own `train_step`/`fit_task` paths, alternating attempts so both see
the same machine load. Time is the process's CPU time (one thread), so that a machine shared with
other jobs slows neither side's figure. Prints each one's median tokens per CPU-second, their
parameter counts and the ratio (Hope-LM time per token / Transformer time per token).
Variants of Hope-LM can be timed beside it with --set (repeatable, key=value as in `clbench run`).

    python benchmarks/hope_lm_cost.py                  # default sizes, 1 thread
    python benchmarks/hope_lm_cost.py --batch 4 --steps 1 --repeats 2 --set first_order=true
    python benchmarks/hope_lm_cost.py --set fast_weights=explicit   # the memories as matrices
    python benchmarks/hope_lm_cost.py --batch 4 --count-ops --set context_periods=   # no timing: operations per step

`--count-ops` counts the tensor operations (forward and backward) one training step dispatches,
and the floating-point operations of its matrix products and attention (torch.utils.flop_counter), for hope-lm
and the Transformer: load-independent measures of where the time goes. At these sizes much of a
step's time is per-operation overhead; the FLOP ratio is what no implementation can go below
without running faster per FLOP than the Transformer does. (Elementwise work and the memories'
small triangular solves, which the counter has no formula for, are left out: the floor is low.)
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from clbench.fields import parse_assignments, resolve_fields
from clbench.learners.hope_lm import HopeLM
from clbench.learners.transformer import Transformer
from clbench.results import cpu_model
from clbench.scenario_names import scenario_config
from clbench.scenario import build_scenario


def hope_seconds(task, spec, fields: dict, steps: int) -> float:
    learner = HopeLM(**fields)
    learner.setup(spec, 0)
    x, y = task.x_train, task.y_train
    batch = learner.batch_size
    start = time.process_time()
    for step in range(steps):
        idx = torch.arange(step * batch, (step + 1) * batch) % len(x)
        learner.train_step(x[idx], y[idx])
    return time.process_time() - start


def transformer_seconds(task, spec, fields: dict, steps: int) -> float:
    learner = Transformer(**fields, iterations=steps)
    learner.setup(spec, 0)
    start = time.process_time()
    learner.fit_task(task.for_training())
    return time.process_time() - start


def count_cpu_attention_flops() -> None:
    """Teach torch's FLOP counter the CPU kernels of scaled-dot-product attention (it knows the
    CUDA ones only), with its own formulas, so that the Transformer's attention is counted."""
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten
    forward, backward = aten._scaled_dot_product_flash_attention_for_cpu, aten._scaled_dot_product_flash_attention_for_cpu_backward
    if forward not in fc.flop_registry:
        fc.register_flop_formula(forward)(lambda q, k, v, *args, **kwargs: fc.sdpa_flop_count(q, k, v))
        fc.register_flop_formula(backward)(lambda grad, q, k, v, *args, **kwargs: fc.sdpa_backward_flop_count(grad, q, k, v))


def operations_per_step(learner, x, y) -> tuple[int, int]:
    """Tensor operations (aten calls, forward and backward) and matrix-product FLOPs of one training
    step, after a warm-up step."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    class Counter(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Counter.calls += 1
            return func(*args, **(kwargs or {}))

    step = (lambda: learner.train_step(x, y)) if isinstance(learner, HopeLM) else (lambda: learner.train_step(x, y, None))
    step()
    with Counter():
        step()
    count_cpu_attention_flops()
    with FlopCounterMode(display=False) as flops:
        step()
    return Counter.calls, flops.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="training steps per timed attempt")
    parser.add_argument("--repeats", type=int, default=3, help="timed attempts of each (alternating)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16, help="sequences per step (both learners)")
    parser.add_argument("--set", action="append", default=[], help="hope-lm field key=value")
    parser.add_argument("--count-ops", action="store_true", help="count each one's tensor operations per step instead of timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scenario = build_scenario(scenario_config("text-embedded"))
    task, spec = scenario[0], scenario.spec
    hope_fields = {"device": "cpu", "batch_size": args.batch,
                   **resolve_fields(HopeLM, parse_assignments(args.set), "hope-lm")}
    probe = HopeLM(**hope_fields)
    t_fields = {"widths": (probe.d, probe.n_blocks, probe.heads), "batch_size": probe.batch_size, "device": "cpu"}
    probe.setup(spec, 0)
    t_probe = Transformer(**t_fields)
    t_probe.setup(spec, 0)
    count = lambda model: sum(p.numel() for p in model.parameters())
    if args.count_ops:
        x, y = task.x_train[:probe.batch_size], task.y_train[:probe.batch_size]
        (h, h_flops), (t, t_flops) = operations_per_step(probe, x, y), operations_per_step(t_probe, x, y)
        tokens = probe.batch_size * spec.input_shape[0]
        print(f"batch {probe.batch_size} x context {spec.input_shape[0]}; hope-lm fields {hope_fields}")
        print(f"tensor operations per training step: hope-lm {h:,}, transformer {t:,} ({h / t:.0f}x)")
        print(f"matrix-product and attention FLOPs per training token: hope-lm {h_flops / tokens / 1e6:.2f} M, "
              f"transformer {t_flops / tokens / 1e6:.2f} M ({h_flops / t_flops:.1f}x)")
        return
    transformer_seconds(task, spec, t_fields, 2)     # warm-up
    hope, trans = [], []
    for _ in range(args.repeats):
        hope.append(hope_seconds(task, spec, hope_fields, args.steps))
        trans.append(transformer_seconds(task, spec, t_fields, args.steps))
    tokens = args.steps * probe.batch_size * spec.input_shape[0]
    h, t = statistics.median(hope), statistics.median(trans)
    print(f"batch {probe.batch_size} x context {spec.input_shape[0]}, {args.steps} steps ({tokens} tokens) per attempt, "
          f"{args.repeats} attempts, {args.threads} thread(s) of {cpu_model()}; hope-lm fields {hope_fields}")
    print(f"hope-lm      d={probe.d} blocks={probe.n_blocks} heads={probe.heads} "
          f"{count(probe.model_) / 1e6:.2f}M parameters: {tokens / h:9.0f} tokens/CPU-s (median {h:.2f} s)")
    print(f"transformer  widths={t_fields['widths']} {count(t_probe.model_) / 1e6:.2f}M parameters: "
          f"{tokens / t:9.0f} tokens/CPU-s (median {t:.2f} s)")
    print(f"hope-lm time per token / transformer time per token: {h / t:.1f}x "
          f"(paired attempts: {', '.join(f'{a / b:.1f}' for a, b in zip(hope, trans))})")


if __name__ == "__main__":
    main()
