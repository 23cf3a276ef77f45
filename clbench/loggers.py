"""Sending a stream run's curves to other tools. A logger reads what the run stored
(`anytime.csv`, `loss.csv`) after the run, so no logger is ever a dependency of a run:
`curves` yields plain (tag, step, value) triples for any logger (Weights & Biases, MLflow, ...);
`to_tensorboard` writes them with `torch.utils.tensorboard` where that works (it needs the
`tensorboard` package, which clbench does not require).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from clbench.anytime import LOSS_FILE, read_anytime, read_table
from clbench.errors import UsageError


def curves(run_dir: Path) -> Iterator[tuple[str, int, float]]:
    """(tag, step, value) of every stored curve: accuracy/task_j and accuracy/seen_mean at each
    evaluation (in %, the boundary evaluation where a step has two), and train/loss."""
    a = read_anytime(run_dir)
    if a is not None:
        done: set[int] = set()
        seen = a.seen_mean()
        for e, step in enumerate(a.step.tolist()):
            if step in done:
                continue
            done.add(step)
            for j, value in enumerate(a.acc[e]):
                yield f"accuracy/task_{j + 1}", step, 100 * float(value)
            if seen[e] == seen[e]:
                yield "accuracy/seen_mean", step, 100 * float(seen[e])
    for row in read_table(run_dir, LOSS_FILE):
        yield "train/loss", int(row["step"]), float(row["loss"])


def to_tensorboard(run_dir: Path, log_dir: Path) -> int:
    """Write the run's curves as TensorBoard scalars under `log_dir`; returns how many. A
    UsageError (one line) when torch.utils.tensorboard cannot be used here."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise UsageError(f"TensorBoard logging needs the tensorboard package ({err}); "
                         f"pip install tensorboard, or read {Path(run_dir) / 'anytime.csv'} directly") from None
    n = 0
    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        for tag, step, value in curves(run_dir):
            writer.add_scalar(tag, value, step)
            n += 1
    finally:
        writer.close()
    return n
