"""Figures of runs along a stream (anytime evaluation, `clbench.anytime`): each task's accuracy at
every evaluation with the boundaries marked; the stability gap (old-task accuracy around each
switch); the training loss. Means and SEM bands over seeds come from `clbench.stats`; the look
from `clbench.plot_style`. Runs without `anytime.csv` are left out.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from clbench.anytime import LOSS_FILE, Anytime, read_table, switch_steps
from clbench.plot_style import curve, legend_columns, new_figure, task_legend
from clbench.stats import mean_sem_along


def _legend(ax) -> None:
    """The learners' legend under the axes (in the order drawn; `plot_style.legend_below` reads row by row)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=legend_columns(labels),
                  handlelength=2.2)


def anytime_runs(group) -> list[Anytime]:
    """The anytime evaluations of the group's runs that have them."""
    return [r.anytime for r in group.runs if r.anytime is not None]


def _common_steps(runs: Sequence[Anytime]) -> np.ndarray:
    """Steps every run evaluated at (seeds of one stream evaluate at the same steps)."""
    steps = set(runs[0].step.tolist())
    for a in runs[1:]:
        steps &= set(a.step.tolist())
    return np.array(sorted(steps))


def _at(a: Anytime, steps: np.ndarray) -> np.ndarray:
    """Accuracy (E, T) at the given steps (the boundary evaluation where a step has two)."""
    first = {}
    for e, s in enumerate(a.step.tolist()):
        first.setdefault(s, e)
    return a.acc[[first[s] for s in steps]]


def task_curves(label: str, runs: Sequence[Anytime], n_seeds: int):
    """Each task's accuracy (%) at every evaluation, mean with SEM bands over seeds; dotted lines:
    boundaries (nominal task ends on a task-free stream)."""
    from matplotlib import colormaps

    steps = _common_steps(runs)
    mean, sem = mean_sem_along(100 * np.stack([_at(a, steps) for a in runs]))
    n_tasks = mean.shape[1]
    colours = colormaps["viridis"](np.linspace(0, 0.85, n_tasks))
    fig = new_figure(height=2.3)
    ax = fig.add_subplot()
    for j in range(n_tasks):
        curve(ax, steps, mean[:, j], sem[:, j], colours[j], 0.2, linewidth=1.0, label=f"task {j + 1}")
    for s in switch_steps(runs[0]):
        ax.axvline(s, color="0.4", linestyle=":", linewidth=0.8)
    ax.set_ylim(-2, 102)
    ax.set_xlabel("training step")
    ax.set_ylabel("accuracy on task (%)")
    ax.set_title(f"{label} (n = {n_seeds})")
    task_legend(ax, n_tasks)
    return fig


def gap_profile(a: Anytime, offsets: np.ndarray) -> np.ndarray:
    """Mean accuracy on the old tasks (those finished at the switch) at `offsets` steps from each
    switch, averaged over the switches (linear interpolation between evaluations)."""
    profiles = []
    for n_old, s in enumerate(switch_steps(a), start=1):
        old = a.acc[:, :n_old].mean(axis=1)
        order = np.argsort(a.step, kind="stable")
        profiles.append(np.interp(s + offsets, a.step[order], old[order]))
    return np.mean(profiles, axis=0)


def _offsets(runs: Sequence[Anytime]) -> np.ndarray:
    a = runs[0]
    switches = switch_steps(a)
    length = int(np.diff([0, *switches, int(a.step.max())]).min())
    return np.arange(-length // 4, length + 1)


def stability_gap(entries: Sequence[tuple[str, Sequence[Anytime]]], styles):
    """Old-task accuracy around a task switch (0 = the boundary), mean over switches, then mean with
    SEM bands over seeds, every learner in one plot."""
    fig = new_figure(height=2.4)
    ax = fig.add_subplot()
    offsets = _offsets(entries[0][1])
    for label, runs in entries:
        mean, sem = mean_sem_along(100 * np.stack([gap_profile(a, offsets) for a in runs]))
        st = styles[label]
        curve(ax, offsets, mean, sem, st.colour, 0.18, linestyle=st.linestyle, linewidth=1.2, label=label)
    ax.axvline(0, color="0.4", linestyle=":", linewidth=0.8)
    ax.set_ylim(-2, 102)
    ax.set_xlabel("steps since the task switch")
    ax.set_ylabel("accuracy on old tasks (%)")
    ax.grid(axis="y", linewidth=0.4, alpha=0.4)
    _legend(ax)
    return fig


def loss_curves(entries: Sequence[tuple[str, Sequence]], styles):
    """Training loss (mean over every `loss_every` steps), mean with SEM bands over seeds."""
    fig = new_figure(height=2.4)
    ax = fig.add_subplot()
    for label, group in entries:
        tables = [read_table(r.path, LOSS_FILE) for r in group.runs]
        tables = [t for t in tables if t]
        if not tables:
            continue
        n = min(len(t) for t in tables)
        steps = np.array([r["step"] for r in tables[0][:n]])
        mean, sem = mean_sem_along(np.array([[r["loss"] for r in t[:n]] for t in tables]))
        st = styles[label]
        curve(ax, steps, mean, sem, st.colour, 0.18, linestyle=st.linestyle, linewidth=1.0, label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss")
    ax.grid(axis="y", linewidth=0.4, alpha=0.4)
    _legend(ax)
    return fig


def figures(entries: Sequence[tuple[str, object]], styles) -> list[tuple[str, str, str, object, str]]:
    """(kind, title, caption, figure, file stem) of every anytime figure of a table's groups."""
    with_runs = [(label, g, anytime_runs(g)) for label, g in entries]
    with_runs = [(label, g, runs) for label, g, runs in with_runs if runs]
    if not with_runs:
        return []
    out = []
    for label, g, runs in with_runs:
        stem = "anytime-" + "".join(c if c.isalnum() else "-" for c in label)[:40]
        out.append(("anytime_curves", f"anytime accuracy of each task, {label}",
                    f"accuracy of {label} on each task at every evaluation along the stream; dotted: boundaries; "
                    f"mean with SEM bands over {len(runs)} seeds.", task_curves(label, runs, len(runs)), stem))
    gapped = [(label, runs) for label, _, runs in with_runs if switch_steps(runs[0])]
    if gapped:
        out.append(("stability_gap", "stability gap",
                    "mean accuracy on the tasks already learned, around each task switch (step 0), averaged over "
                    "the switches; bands: SEM over seeds (De Lange et al. 2023).",
                    stability_gap(gapped, styles), "stability-gap"))
    out.append(("loss_curves", "training loss", "training loss along the stream (mean over each logging "
                "window); bands: SEM over seeds.", loss_curves([(label, g) for label, g, _ in with_runs], styles),
                "loss"))
    return out
