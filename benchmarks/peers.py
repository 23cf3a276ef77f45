"""Peers: the same streams through clbench, Avalanche and a minimal hand-written PyTorch loop, for
fine-tuning, EWC and replay (and clbench against Avalanche alone for SI, MAS, LwF, A-GEM, DER,
DER++, ER-ACE, GDumb and iCaRL), alternating in one run; prints per-method medians and ratios of the
training + evaluation time (in-process) and of the whole process (start to exit, imports included).

The same work on each side: the scenario's tensors, the MLP 100-100 with the same initial weights,
Adam (lr 0.001) with its state reset at every task, minibatches of 32, the same epochs, class-IL
training with the logits of classes not seen yet masked, and the full accuracy matrix (every task
evaluated before training and after every task, in batches of 1024). EWC: λ = 50 in Avalanche's
convention (λ Σ F (θ − θ*)², importance from minibatch gradients of the true labels), clbench's
`lam = 100, fisher_batch_size = 32, fisher_labels = "true", fisher_samples = 0`. Replay: 200
samples, a memory batch of 32 joins every batch. Avalanche runs as its users run it: a stream from
`benchmark_from_datasets`, the strategies `Naive`, `EWC` and `Replay`, and its own evaluation with
`accuracy_metrics`, no loggers. Its loss is clbench's masked cross-entropy
(`clbench.learners.avalanche.adapter.UnitMaskedCrossEntropy`), not Avalanche's `MaskedCrossEntropy`, which
takes the log of softmax + 1e-5 and so learns new classes poorly once old ones dominate (on
split-fmnist it ended fine-tuning at 0.100 final accuracy instead of 0.200).
The other methods run with the settings of the parity tests in tests/test_avalanche.py
(`NATIVE_PARITY`: clbench's fields set to Avalanche's conventions); iCaRL runs on a stream from
Avalanche's `nc_benchmark`, which its ICaRL needs. Avalanche 0.6's SynapticIntelligence computes
no importance on the CPU (its weight snapshots are views of the live weights), so its time is that
of the bookkeeping without the effect.
The hand-written loop does exactly clbench's computation (same random draws, same formulas), and
the script first checks that it gives clbench's accuracy matrix. All three use the same optimiser,
the one clbench's learners build (`clbench.optim.build_optimizer`): `torch.optim.Adam` with
PyTorch's fused kernel (`fused=True`).

    python benchmarks/peers.py [--repeats 7] [--process-repeats 3] [--scenarios split-digits,split-fmnist]
    python benchmarks/peers.py --profile finetune --scenarios split-digits     # where the time goes
    python benchmarks/peers.py --linear-kernel onednn   # clbench (and the hand-written loop) on oneDNN

split-fmnist runs only when Fashion-MNIST is installed (see clbench.data), with 1 epoch per task.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from clbench import onednn
from clbench.learner import LINEAR_KERNELS
from clbench.optim import build_optimizer
from clbench.learners.avalanche.adapter import UnitMaskedCrossEntropy
from clbench.learners.ewc import EWC
from clbench.learners.finetune import Finetune
from clbench.learners.replay import Replay
from clbench.models import build_backbone
from clbench.registry import load_learner
from clbench.results import cpu_model
from clbench.scenario_names import scenario_config
from clbench.runner import EVAL_BATCH_SIZE, run, seed_everything
from clbench.scenario import build_scenario

BATCH, LR, WIDTHS, LAM_AVALANCHE, BUFFER = 32, 1e-3, (100, 100), 50.0, 200
FRAMEWORKS = ("clbench", "avalanche", "hand-written")
HAND_WRITTEN = ("finetune", "ewc", "replay")   # the methods the hand-written loop implements
SI_LAMBDA = 1e4
# clbench name: (clbench fields, Avalanche strategy, its arguments), as in tests/test_avalanche.py
NATIVE = {
    "si": (dict(c=SI_LAMBDA / 2, xi=1e-7, clip=0.001), "SynapticIntelligence", dict(si_lambda=SI_LAMBDA, eps=1e-7)),
    "mas": (dict(lam=1.0, accumulate="average", alpha=0.5, importance_batch_size=BATCH), "MAS",
            dict(lambda_reg=1.0, alpha=0.5)),
    "lwf": (dict(alpha=1.0, temperature=2.0), "LwF", dict(alpha=1.0, temperature=2.0)),
    "agem": (dict(memory_per_task=250, sample_size=256), "AGEM", dict(patterns_per_exp=250, sample_size=256)),
    "der": (dict(buffer_size=200, alpha=0.1, store="task_end"), "DER", dict(mem_size=200, alpha=0.1, beta=0.0)),
    "derpp": (dict(buffer_size=200, alpha=0.1, beta=0.5, store="task_end", shared_memory_batch=True), "DER",
              dict(mem_size=200, alpha=0.1, beta=0.5)),
    "er-ace": (dict(buffer_size=200, replay_batch_size=10, class_balanced=True, mask_logits=False), "ER_ACE", dict(mem_size=200, batch_size_mem=10)),
    "gdumb": (dict(buffer_size=200), "GDumb", dict(mem_size=200)),
    "icarl": (dict(memory_size=200), "ICaRL", dict(memory_size=200, buffer_transform=None, fixed_memory=True)),
}
METHODS = HAND_WRITTEN + tuple(NATIVE)
EPOCHS = {"split-digits": 10, "split-fmnist": 1}


# -- clbench -------------------------------------------------------------------------------------

def clbench_run(scenario, method: str, seed: int, epochs: int, kernel: str = "default") -> np.ndarray:
    common = dict(epochs=epochs, batch_size=BATCH, lr=LR, widths=WIDTHS, device="cpu", linear_kernel=kernel)
    learner = {"finetune": lambda: Finetune(**common),
               "ewc": lambda: EWC(lam=2 * LAM_AVALANCHE, fisher_batch_size=BATCH, fisher_labels="true",
                                  fisher_samples=0, **common),
               "replay": lambda: Replay(buffer_size=BUFFER, **common)}.get(method)
    learner = learner() if learner else load_learner(method)(**NATIVE[method][0], **common)
    return run(scenario, learner, seed).matrix


# -- Avalanche -----------------------------------------------------------------------------------

def avalanche_modules():
    with warnings.catch_warnings(record=True):  # keep this process's warning filters as they were
        import avalanche.training
        from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
        from avalanche.benchmarks.scenarios.supervised import with_classes_timeline
        from avalanche.benchmarks.scenarios.task_aware import with_task_labels
        from avalanche.benchmarks.utils import DataAttribute
        from avalanche.benchmarks.utils.classification_dataset import TaskAwareClassificationDataset
        from avalanche.evaluation.metrics import accuracy_metrics
        from avalanche.training.plugins import EvaluationPlugin
        from avalanche.benchmarks.scenarios.deprecated.generators import nc_benchmark
    return dict(nc_benchmark=nc_benchmark, training=avalanche.training, benchmark_from_datasets=benchmark_from_datasets,
                with_classes_timeline=with_classes_timeline, with_task_labels=with_task_labels,
                DataAttribute=DataAttribute, Dataset=TaskAwareClassificationDataset,
                accuracy_metrics=accuracy_metrics, EvaluationPlugin=EvaluationPlugin)


def avalanche_run(av: dict, scenario, method: str, seed: int, epochs: int) -> np.ndarray:
    def dataset(x, y):
        return av["Dataset"]([torch.utils.data.TensorDataset(x, y)], data_attributes=[
            av["DataAttribute"](y.tolist(), "targets"),
            av["DataAttribute"]([0] * len(y), "targets_task_labels", use_in_getitem=True)])

    seed_everything(seed)
    model = build_backbone("mlp", scenario.spec.input_shape, scenario.n_outputs, WIDTHS)
    if method == "icarl":  # ICaRL reads the classes per experience from an `nc_benchmark` stream
        def whole(split):
            return dataset(torch.cat([getattr(t, f"x_{split}") for t in scenario]),
                           torch.cat([getattr(t, f"y_{split}") for t in scenario]))
        benchmark = av["nc_benchmark"](whole("train"), whole("test"), n_experiences=len(scenario), task_labels=False,
                                       fixed_class_order=[c for t in scenario for c in t.classes], seed=seed)
    else:
        benchmark = av["with_classes_timeline"](av["with_task_labels"](av["benchmark_from_datasets"](
            train=[dataset(t.x_train, t.y_train) for t in scenario], test=[dataset(t.x_test, t.y_test) for t in scenario])))
    strategy_class, extra = {"finetune": ("Naive", {}), "ewc": ("EWC", {"ewc_lambda": LAM_AVALANCHE}),
                             "replay": ("Replay", {"mem_size": BUFFER})}.get(method) or NATIVE[method][1:]
    criterion = UnitMaskedCrossEntropy(scenario.n_outputs, scenario.protocol)
    parts = (dict(feature_extractor=model[:-1], classifier=model[-1]) if method == "icarl"
             else dict(model=model, criterion=criterion))
    with warnings.catch_warnings(record=True):
        strategy = getattr(av["training"], strategy_class)(
            **parts, optimizer=build_optimizer("adam", model.parameters(), LR), train_mb_size=BATCH, train_epochs=epochs,
            eval_mb_size=EVAL_BATCH_SIZE, device="cpu",
            evaluator=av["EvaluationPlugin"](av["accuracy_metrics"](experience=True), loggers=[]), **extra)
        names = [f"Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp{j:03d}" for j in range(len(scenario))]
        result = strategy.eval(benchmark.test_stream)
        rows = [[result[n] for n in names]]
        for task, experience in zip(scenario, benchmark.train_stream):
            criterion.allow(task.classes)
            strategy.train(experience, reset_optimizer_state=True)
            result = strategy.eval(benchmark.test_stream)
            rows.append([result[n] for n in names])
    return np.array(rows)


# -- hand-written --------------------------------------------------------------------------------

def hand_run(scenario, method: str, seed: int, epochs: int, kernel: str = "default") -> np.ndarray:
    """Fine-tuning, EWC or replay written out by hand, drawing the same random numbers as clbench
    and computing its linear layers with the same kernel."""
    seed_everything(seed)
    model = build_backbone("mlp", scenario.spec.input_shape, scenario.n_outputs, WIDTHS)
    if kernel == "onednn":
        model.linear_function = onednn.linear
    generator = torch.Generator().manual_seed(seed)
    seen = torch.zeros(scenario.n_outputs, dtype=torch.bool)
    lam = 2 * LAM_AVALANCHE
    fisher, anchor, constant = {}, {}, torch.zeros(())        # EWC: Σ F, Σ F θ*, Σ F θ*²
    memory_x = torch.empty((0, *scenario.spec.input_shape))   # replay: reservoir sample of the stream
    memory_y = torch.empty(0, dtype=torch.long)
    n_seen = 0

    def evaluate() -> list[float]:
        model.eval()
        out = []
        with torch.no_grad():
            for task in scenario:
                correct = 0
                for start in range(0, len(task.y_test), EVAL_BATCH_SIZE):
                    logits = model(task.x_test[start:start + EVAL_BATCH_SIZE])
                    correct += int((logits.argmax(1) == task.y_test[start:start + EVAL_BATCH_SIZE]).sum())
                out.append(correct / len(task.y_test))
        model.train()
        return out

    rows = [evaluate()]
    for task in scenario:
        seen[list(task.classes)] = True
        mask = torch.zeros(1, scenario.n_outputs).masked_fill(~seen, float("-inf"))
        optimizer = build_optimizer("adam", model.parameters(), LR)  # torch.optim.Adam(..., fused=True)
        x, y = task.x_train, task.y_train
        for _ in range(epochs):
            order = torch.randperm(len(y), generator=generator)
            for start in range(0, len(y), BATCH):
                idx = order[start:start + BATCH]
                xb, yb = x[idx], y[idx]
                if method == "replay" and len(memory_y):
                    pick = torch.randint(len(memory_y), (BATCH,), generator=generator)
                    xb, yb = torch.cat([xb, memory_x[pick]]), torch.cat([yb, memory_y[pick]])
                loss = F.cross_entropy(model(xb) + mask, yb)
                if method == "ewc" and fisher:  # Σ F (θ − θ*)² over tasks as Σ θ·(F θ − 2 Σ F θ*) + const
                    theta = torch.cat([p.reshape(-1) for p in model.parameters()])
                    loss = loss + 0.5 * lam * (constant + (theta * (fisher_flat * theta - anchor2_flat)).sum())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        if method == "ewc" and task is not scenario[-1]:  # the Fisher (none after the last task, as in clbench):
            # the mean over minibatches (data order) of squared minibatch gradients
            squares = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
            starts = range(0, len(y), BATCH)
            for start in starts:
                model.zero_grad(set_to_none=True)
                F.cross_entropy(model(x[start:start + BATCH]) + mask, y[start:start + BATCH]).backward()
                for name, p in model.named_parameters():
                    squares[name] += p.grad ** 2
            model.zero_grad(set_to_none=True)
            for name, p in model.named_parameters():
                f, theta = squares[name] / len(starts), p.detach().clone()
                fisher[name] = fisher.get(name, 0.0) + f
                anchor[name] = anchor.get(name, 0.0) + f * theta
                constant = constant + (f * theta ** 2).sum()
            fisher_flat = torch.cat([f.reshape(-1) for f in fisher.values()])
            anchor2_flat = 2 * torch.cat([a.reshape(-1) for a in anchor.values()])
        if method == "replay":  # reservoir sampling over everything seen
            take = min(max(0, BUFFER - len(memory_y)), len(y))
            memory_x, memory_y = torch.cat([memory_x, x[:take]]), torch.cat([memory_y, y[:take]])
            for i in range(take, len(y)):
                slot = int(torch.randint(n_seen + i + 1, (1,), generator=generator))
                if slot < BUFFER:
                    memory_x[slot], memory_y[slot] = x[i], y[i]
            n_seen += len(y)
        rows.append(evaluate())
    return np.array(rows)


# -- driver --------------------------------------------------------------------------------------

def child(framework: str, method: str, scenario_name: str, seed: int, kernel: str) -> None:
    """One whole run in this process, as the process-level timing starts it."""
    torch.set_num_threads(1)
    scenario = build_scenario(scenario_config(scenario_name))
    epochs = EPOCHS[scenario_name]
    if framework == "clbench":
        matrix = clbench_run(scenario, method, seed, epochs, kernel)
    elif framework == "avalanche":
        matrix = avalanche_run(avalanche_modules(), scenario, method, seed, epochs)
    else:
        matrix = hand_run(scenario, method, seed, epochs, kernel)
    print(f"{matrix[-1].mean():.4f}")


def profile(av: dict, scenario, method: str, epochs: int) -> None:
    """Where each framework's time goes: one warmed-up run of each under cProfile, by part."""
    import cProfile
    import pstats

    runners = {"clbench": clbench_run, "avalanche": lambda *a: avalanche_run(av, *a), "hand-written": hand_run}
    runners = {name: runners[name] for name in frameworks_for(method)}
    parts = {  # (part, test on a cProfile key (file, line, function))
        "backward": lambda k: "run_backward" in k[2],
        "optimizer step + zero_grad": lambda k: k[2] in ("wrapper", "zero_grad") and k[0].endswith("optimizer.py"),
        "model forward": lambda k: k[2] == "forward" and k[0].endswith("container.py"),
        "data loading (Avalanche's loaders)": lambda k: k[2] == "__next__" and k[0].endswith("dataloader.py"),
        "plugin callbacks": lambda k: k[2] == "trigger_plugins",
        "evaluation": lambda k: (k[2] == "eval" and k[0].endswith("base_sgd.py")) or
                                (k[2] == "accuracy" and k[0].endswith("runner.py")) or k[2] == "evaluate",
    }
    print(f"\nprofile: {method}, one run each under cProfile (which inflates Python-heavy parts); "
          f"cumulative seconds and share of the run (parts overlap: forward and optimizer time also "
          f"appear inside evaluation and plugins)")
    for name, fn in runners.items():
        fn(scenario, method, 0, epochs)
        profiler = cProfile.Profile()
        profiler.enable()
        fn(scenario, method, 1, epochs)
        profiler.disable()
        stats = pstats.Stats(profiler).stats
        total = max(v[3] for v in stats.values())
        shares = ", ".join(f"{part} {t:.2f} s ({100 * t / total:.0f}%)" for part, test in parts.items()
                           if (t := sum(v[3] for k, v in stats.items() if test(k))) > 0)
        print(f"  {name:<13} {total:.2f} s: {shares}")


def available(name: str) -> bool:
    try:
        build_scenario(scenario_config(name))
    except Exception:
        return False
    return True


def summary(times: dict[str, list[float]]) -> tuple[dict[str, float], float, float, float, float]:
    """Medians, and clbench's ratios to Avalanche and to the hand-written loop (NaN where it did not run)."""
    med = {k: statistics.median(v) if v else float("nan") for k, v in times.items()}
    paired_av = statistics.median(a / b for a, b in zip(times["clbench"], times["avalanche"]))
    paired_hand = (statistics.median(a / b for a, b in zip(times["clbench"], times["hand-written"]))
                   if times["hand-written"] else float("nan"))
    return (med, med["clbench"] / med["avalanche"], paired_av, med["clbench"] / med["hand-written"], paired_hand)


def frameworks_for(method: str) -> tuple[str, ...]:
    """The hand-written loop implements only fine-tuning, EWC and replay."""
    return FRAMEWORKS if method in HAND_WRITTEN else FRAMEWORKS[:2]


def row(method: str, med: dict[str, float], r_av: float, p_av: float, r_hand: float, p_hand: float) -> str:
    def cell(value: float, width: int) -> str:
        return f"{'—':>{width}}" if value != value else f"{value:>{width}.3f}"
    return (f"{method:<9} {cell(med['clbench'], 9)} {cell(med['avalanche'], 10)} {cell(med['hand-written'], 8)}   "
            f"{cell(r_av, 6)} {cell(p_av, 8)}   {cell(r_hand, 7)} {cell(p_hand, 8)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="in-process runs of each framework and method")
    parser.add_argument("--process-repeats", type=int, default=3, help="whole-process runs of each (0: skip)")
    parser.add_argument("--scenarios", default="split-digits,split-fmnist")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    parser.add_argument("--profile", metavar="METHOD", help="instead of timing: where each framework's time goes "
                        "for METHOD on the first scenario")
    parser.add_argument("--linear-kernel", choices=LINEAR_KERNELS, default="default",
                        help="clbench's `linear_kernel` (and the hand-written loop's); Avalanche keeps F.linear")
    parser.add_argument("--child", nargs=5, metavar=("FRAMEWORK", "METHOD", "SCENARIO", "SEED", "KERNEL"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        framework, method, scenario_name, seed, kernel = args.child
        return child(framework, method, scenario_name, int(seed), kernel)

    torch.set_num_threads(1)
    methods = args.methods.split(",")
    unknown = [m for m in methods + ([args.profile] if args.profile else []) if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; valid: {', '.join(METHODS)}")
    print(f"peers benchmark: torch {torch.__version__}, 1 torch thread, Python {platform.python_version()}, "
          f"{platform.machine()}, {cpu_model()}")
    av = avalanche_modules()
    if args.profile:
        name = args.scenarios.split(",")[0]
        return profile(av, build_scenario(scenario_config(name)), args.profile, EPOCHS[name])
    for scenario_name in args.scenarios.split(","):
        if not available(scenario_name):
            print(f"\n{scenario_name}: data not installed, skipped")
            continue
        scenario, epochs = build_scenario(scenario_config(scenario_name)), EPOCHS[scenario_name]
        kernel = args.linear_kernel
        runners = {"clbench": lambda m, s: clbench_run(scenario, m, s, epochs, kernel),
                   "avalanche": lambda m, s: avalanche_run(av, scenario, m, s, epochs),
                   "hand-written": lambda m, s: hand_run(scenario, m, s, epochs, kernel)}
        print(f"\n{scenario_name} (class_il), {len(scenario)} tasks, {epochs} epoch(s) per task, "
              f"{args.repeats} alternating repeats in-process, {args.process_repeats} as whole processes; "
              f"clbench linear_kernel={kernel}")
        header = (f"{'method':<9} {'clbench':>9} {'Avalanche':>10} {'hand':>8}   {'cl/Av':>6} {'(paired)':>8}   "
                  f"{'cl/hand':>7} {'(paired)':>8}   final acc cl / Av / hand")
        print("train + evaluate, median seconds per run:")
        print(header)
        for method in methods:
            frameworks = frameworks_for(method)
            first = {name: runners[name](method, 0) for name in frameworks}  # warm-up, and the check
            if "hand-written" in first and not np.array_equal(first["clbench"], first["hand-written"]):
                raise SystemExit(f"{method}: clbench and the hand-written loop gave different accuracy matrices; "
                                 f"the comparison would be meaningless")
            times: dict[str, list[float]] = {name: [] for name in FRAMEWORKS}
            for i in range(args.repeats):
                k = i % len(frameworks)
                for name in frameworks[k:] + frameworks[:k]:
                    start = time.perf_counter()
                    runners[name](method, i + 1)
                    times[name].append(time.perf_counter() - start)
            acc = " / ".join(f"{first[n][-1].mean():.3f}" if n in first else "—" for n in FRAMEWORKS)
            print(f"{row(method, *summary(times))}   {acc}")
        if args.process_repeats:
            print("whole process (python start to exit, imports and data loading included), median seconds:")
            print(header.split("   final")[0])
            for method in methods:
                frameworks = frameworks_for(method)
                times = {name: [] for name in FRAMEWORKS}
                for i in range(args.process_repeats):
                    k = i % len(frameworks)
                    for name in frameworks[k:] + frameworks[:k]:
                        start = time.perf_counter()
                        subprocess.run([sys.executable, __file__, "--child", name, method, scenario_name, str(i), kernel],
                                       check=True, capture_output=True)
                        times[name].append(time.perf_counter() - start)
                print(row(method, *summary(times)))
    print("\ntargets: clbench / Avalanche <= 0.33 and clbench / hand-written <= 1.05 (training + evaluation)")


if __name__ == "__main__":
    main()
