"""Figures of a forgetting report, as PDF (for papers) and PNG (for the HTML report).

Per scenario table: the evaluation matrix of each learner as an annotated heatmap (mean over
seeds); each task's score as training proceeds, per learner, with SEM bands; the average on the
tasks seen so far, all learners in one plot; forgetting and BWT as bars with SEM error bars; and
learning accuracy against forgetting (the plasticity-stability view). Units, axis labels, arrows
and which way is better come from the table's `clbench.metrics.Measure` and the metric records,
so a lower-is-better measure (bits per character) is drawn right by declaration. Means and SEMs
come from `clbench.stats` (no band or error bar where n = 1).
How they look (size, colours, markers, no pyplot) is `clbench.plot_style`.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from clbench import metrics as M
from clbench.aggregate import Group
from clbench.plot_style import (MARKERS, STYLE, WIDTH, Style, curve, learner_styles, legend_below, new_figure,
                                 save, task_legend, wrap)
from clbench.stats import Summary, mean_sem_along
from clbench.tables import slugify

@dataclass
class FigureFile:
    kind: str  # heatmap, task_curves, seen_accuracy, forgetting_bwt, plasticity_stability
    title: str
    caption: str
    table_slug: str
    pdf: Path
    png: Path


def _metric_summary(group: Group, metric: str) -> tuple[float, float, int]:
    summary = Summary.of(group.values_by_seed(metric))
    return summary.mean, summary.sem, summary.n


def _y_range(values: np.ndarray, measure: M.Measure) -> tuple[float, float]:
    """Axis limits in shown units, shared by every learner of a table so curves read on one scale.
    A bounded measure (accuracy) runs to its top (100%) and down to the data rounded down to a tenth
    of its range; an unbounded one (bits per character) spans the data with a margin."""
    finite = values[np.isfinite(values)]
    if measure.bounds is None:
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        pad = 0.05 * (high - low) or 0.05 * max(abs(high), 1.0)
        return low - pad, high + pad
    bottom, top = (measure.scale * b for b in measure.bounds)
    span = top - bottom
    low = float(finite.min()) if finite.size else bottom
    low = max(bottom, bottom + math.floor((low - bottom - 3 * span / 100) / (span / 10)) * (span / 10))
    return (low - span / 50 if low == bottom else low), top + span / 50


def _curve_range(entries: Sequence[tuple[str, Group]], measure: M.Measure) -> tuple[float, float]:
    """The y range of the curves of a table: every learned cell of every learner's mean matrix, and
    the bands around them (on the worse side)."""
    values = []
    for _, group in entries:
        mean, sem = mean_sem_along(measure.scale * group.matrices())
        learned = np.tril(np.ones(mean.shape[1:], dtype=bool))
        sem = np.nan_to_num(sem)
        values += [(mean[1:] - sem[1:])[learned], (mean[1:] + sem[1:])[learned]]
    if measure.bounds is not None:
        values = values[0::2]  # a bounded axis runs to its top anyway
    return _y_range(np.concatenate(values), measure)


def _round_ticks(ax, measure: M.Measure) -> None:
    """Round ticks (0, 20, ... or 80, 85, ...; never 97.5 for values shown to at most one decimal)."""
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10], integer=measure.decimals <= 1))


def _n_text(entries: Sequence[tuple[str, Group]]) -> str:
    ns = {len(g.runs) for _, g in entries}
    if len(ns) == 1:
        return f"n = {ns.pop()} seeds per learner"
    return "seeds per learner: " + ", ".join(f"{label} {len(g.runs)}" for label, g in entries)


# ----------------------------------------------------------------------------------------------
# The figures: each function returns a matplotlib Figure (on the Agg canvas); write_figures saves.


def heatmap(label: str, group: Group):
    """The mean evaluation matrix in shown units, one row per training step, annotated; brighter is better."""
    from matplotlib.patches import Rectangle

    measure = group.measure
    mean = (measure.scale * group.matrices()).mean(axis=0)
    n_rows, n_tasks = mean.shape
    if measure.bounds is not None:
        low, high = (measure.scale * b for b in measure.bounds)
    else:
        low, high = float(mean.min()), max(float(mean.max()), float(mean.min()) + 1e-9)
    cell = min(0.42, 2.6 / n_tasks)
    fig = new_figure(height=0.75 + cell * n_rows, width=min(WIDTH, 1.25 + cell * n_tasks))
    ax = fig.add_subplot()
    image = ax.imshow(mean, cmap="viridis" if measure.higher_is_better else "viridis_r", vmin=low, vmax=high,
                      aspect="auto", interpolation="nearest")
    ax.set_xticks(range(n_tasks), [str(j + 1) for j in range(n_tasks)])
    ax.set_yticks(range(n_rows), ["init"] + [str(i) for i in range(1, n_rows)])
    ax.set_xlabel("evaluated task")
    ax.set_ylabel("after training task")
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if n_tasks <= 12:
        size = 6.5 if n_tasks <= 6 else 5.5 if n_tasks <= 9 else 4.5
        # viridis is dark over its first 60%: white text there, black above
        dark = (lambda v: v < low + (high - low) * 3 / 5) if measure.higher_is_better else (
            lambda v: v > high - (high - low) * 3 / 5)
        for i in range(n_rows):
            for j in range(n_tasks):
                value = mean[i, j]
                ax.text(j, i, f"{value:.{max(measure.decimals - 1, 0)}f}", ha="center", va="center", fontsize=size,
                        color="white" if dark(value) else "black")
    for j in range(n_tasks):  # outline the just-learned cells (the diagonal R[j, j])
        ax.add_patch(Rectangle((j - 0.5, j + 0.5), 1, 1, fill=False, edgecolor="white", linewidth=1.0))
    bar = fig.colorbar(image, ax=ax, fraction=0.06, pad=0.03)
    bar.set_label(f"{measure.short} ({measure.unit})")
    bar.ax.tick_params(labelsize=6.5, width=0.5, length=2)
    bar.outline.set_linewidth(0.5)
    ax.set_title(f"{label} (n = {len(group.runs)})")
    return fig


def task_curves(label: str, group: Group, ylim: tuple[float, float] = (-2, 102)):
    """Each task's score from the step it is learned to the end: mean over seeds with SEM bands."""
    from matplotlib import colormaps

    measure = group.measure
    mats = measure.scale * group.matrices()
    n_tasks = mats.shape[2]
    mean, sem = mean_sem_along(mats)
    colours = colormaps["viridis"](np.linspace(0, 0.85, n_tasks))
    fig = new_figure(height=2.3)
    ax = fig.add_subplot()
    steps = np.arange(n_tasks + 1)
    for j in range(n_tasks):
        x = steps[j + 1:]
        curve(ax, x, mean[j + 1:, j], sem[j + 1:, j], colours[j], 0.2, marker=MARKERS[j % len(MARKERS)],
              label=f"task {j + 1}")
    ax.set_xlim(0.7, n_tasks + 0.3)
    ax.set_ylim(*ylim)
    _round_ticks(ax, measure)
    ax.set_xticks(range(1, n_tasks + 1))
    ax.set_xlabel("after training task")
    ax.set_ylabel(f"{measure.short} on task ({measure.unit})")
    ax.set_title(f"{label} (n = {len(group.runs)})")
    task_legend(ax, n_tasks)
    return fig


def seen_accuracy(entries: Sequence[tuple[str, Group]], styles: dict[str, Style],
                  ylim: tuple[float, float] = (-2, 102)):
    """Mean score over the tasks seen so far after each step, every learner, SEM bands."""
    fig = new_figure(height=2.4)
    ax = fig.add_subplot()
    n_tasks, measure = 1, entries[0][1].measure
    for label, group in entries:
        mats = measure.scale * group.matrices()
        n_tasks = mats.shape[2]
        seen = np.stack([[m[k, :k].mean() for k in range(1, n_tasks + 1)] for m in mats])
        mean, sem = mean_sem_along(seen)
        x = np.arange(1, n_tasks + 1)
        st = styles[label]
        curve(ax, x, mean, sem, st.colour, 0.18, marker=st.marker, linestyle=st.linestyle, label=label)
    ax.set_xticks(range(1, n_tasks + 1))
    ax.set_ylim(*ylim)
    _round_ticks(ax, measure)
    ax.set_xlabel("after training task")
    ax.set_ylabel(f"{measure.short} on tasks seen ({measure.unit})")
    ax.grid(axis="y", linewidth=0.4, alpha=0.4)
    legend_below(ax, entries, handlelength=2.2)
    return fig


def forgetting_bwt(entries: Sequence[tuple[str, Group]], styles: dict[str, Style]):
    """Forgetting and BWT per learner: horizontal bars (mean) with SEM error bars, in change units."""
    measure = entries[0][1].measure
    lines = sum(wrap(label).count("\n") + 1 for label, _ in entries)
    fig = new_figure(height=0.7 + 0.2 * max(lines, len(entries)) + 0.06 * len(entries))
    axes = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(entries))[::-1]
    for ax, metric in ((axes[0], "forgetting"), (axes[1], "bwt")):
        for yi, (label, group) in zip(y, entries):
            mean, sem, n = _metric_summary(group, metric)
            if n == 0:
                continue
            hatch = styles[label].hatch
            ax.barh(yi, measure.scale * mean, height=0.7, color=styles[label].colour, hatch=hatch or None,
                    edgecolor="white" if hatch else "none", linewidth=0,
                    xerr=None if math.isnan(sem) else measure.scale * sem,
                    error_kw={"elinewidth": 0.8, "capsize": 2, "capthick": 0.8, "ecolor": "#444444"})
        ax.axvline(0, color="#444444", linewidth=0.6)
        ax.set_xlabel(M.METRICS[metric].axis_label(measure))
        ax.grid(axis="x", linewidth=0.4, alpha=0.4)
        ax.spines["left"].set_visible(False)
        ax.tick_params(axis="y", length=0)
    axes[0].set_yticks(y, [wrap(label) for label, _ in entries])
    axes[0].set_ylim(-0.6, len(entries) - 0.4)
    fig.subplots_adjust(wspace=0.3)  # room between the end tick of one panel and the first of the next
    return fig


def _better_corner(x_metric: str, y_metric: str, measure: M.Measure) -> tuple[str, str]:
    """(arrow, words) pointing where a plot of y_metric against x_metric is better."""
    up, right = M.METRICS[y_metric].better_high(measure), M.METRICS[x_metric].better_high(measure)
    arrow = {(True, False): "\u2196", (True, True): "\u2197", (False, False): "\u2199", (False, True): "\u2198"}
    return arrow[up, right], f"{'up' if up else 'down'} and {'right' if right else 'left'}"


def plasticity_stability(entries: Sequence[tuple[str, Group]], styles: dict[str, Style]):
    """Learning accuracy (plasticity) against forgetting (stability), one point per learner, SEM bars."""
    measure = entries[0][1].measure
    fig = new_figure(height=2.5)
    ax = fig.add_subplot()
    for label, group in entries:
        fx, fs, fn = _metric_summary(group, "forgetting")
        lx, ls, ln = _metric_summary(group, "learning_acc")
        if fn == 0 or ln == 0 or math.isnan(fx):
            continue
        st = styles[label]
        ax.errorbar(measure.scale * fx, measure.scale * lx, xerr=None if math.isnan(fs) else measure.scale * fs,
                    yerr=None if math.isnan(ls) else measure.scale * ls, color=st.colour, marker=st.marker,
                    markersize=5, linestyle="none", elinewidth=0.8, capsize=2, label=label)
    ax.set_xlabel(M.METRICS["forgetting"].axis_label(measure))
    ax.set_ylabel(M.METRICS["learning_acc"].axis_label(measure))
    ax.grid(linewidth=0.4, alpha=0.4)
    ax.margins(0.15)
    arrow, where = _better_corner("forgetting", "learning_acc", measure)
    left, up = "left" in where, where.startswith("up")
    ax.text(0.02 if left else 0.98, 0.97 if up else 0.03, f"{arrow} better", transform=ax.transAxes,
            ha="left" if left else "right", va="top" if up else "bottom", fontsize=7, color="#555555")
    if ax.get_legend_handles_labels()[0]:
        legend_below(ax, entries, handlelength=1.0)
    else:
        ax.text(0.5, 0.5, "not defined (one task)", transform=ax.transAxes, ha="center", color="#555555")
    return fig


# ----------------------------------------------------------------------------------------------
# All figures of a report


def write_figures(tables: Sequence[tuple[str, str, Sequence[tuple[str, Group]]]], folder: Path) -> list[FigureFile]:
    """Every figure for each (title, slug, [(label, group), ...]) under `folder/<slug>/`, PDF and PNG.

    Groups without a finished run are left out. Returns what was written, with captions.
    """
    from matplotlib import rc_context

    folder = Path(folder)
    styles = learner_styles([label for _, _, entries in tables for label, _ in entries])
    written: list[FigureFile] = []
    with rc_context(STYLE):
        for title, slug, entries in tables:
            entries = [(label, g) for label, g in entries if g.runs]
            if not entries:
                continue
            base = folder / slug
            names: dict[str, str] = {}
            for label, g in entries:  # file names from labels, unique within the table
                name = slugify(label, limit=40)
                if name in names.values():
                    name += "-" + hashlib.sha256(g.key.encode()).hexdigest()[:8]
                names[label] = name

            def add(kind: str, fig_title: str, caption: str, paths: tuple[Path, Path]) -> None:
                written.append(FigureFile(kind, fig_title, f"{title}: {caption}", slug, *paths))

            n_text = _n_text(entries)
            measure = entries[0][1].measure
            m = measure.label
            ylim = _curve_range(entries, measure)
            direction = {k: "higher" if M.METRICS[k].better_high(measure) else "lower" for k in ("forgetting", "bwt")}
            learning = M.METRICS["learning_acc"].axis.format(m=m)
            add("seen_accuracy", f"average {m} on tasks seen",
                f"mean {m} over the tasks seen so far after each training step; bands: SEM over seeds ({n_text}).",
                save(seen_accuracy(entries, styles, ylim), base / "seen-accuracy"))
            add("forgetting_bwt", "forgetting and BWT",
                f"forgetting (Chaudhry et al. 2018, {direction['forgetting']} is better) and backward transfer (GEM, "
                f"divided by T-1, {direction['bwt']} is better) in {measure.change_words}; bars: mean, error bars: "
                f"SEM over seeds ({n_text}).",
                save(forgetting_bwt(entries, styles), base / "forgetting-bwt"))
            add("plasticity_stability", f"{learning} against forgetting",
                f"plasticity ({learning}: {m} on each task right after learning it) against stability "
                f"(forgetting); {_better_corner('forgetting', 'learning_acc', measure)[1]} is better; error bars: "
                f"SEM over seeds ({n_text}).",
                save(plasticity_stability(entries, styles), base / "plasticity-stability"))
            for label, g in entries:
                add("heatmap", f"{m} matrix of {label}",
                    f"{m} matrix of {label} in {measure.unit}, mean over {len(g.runs)} seeds; row i: after training "
                    f"task i (init: untrained); column j: task j; outlined: each task right after it is learned.",
                    save(heatmap(label, g), base / f"heatmap-{names[label]}"))
            for label, g in entries:
                add("task_curves", f"{m} of each task during training, {label}",
                    f"{m} of {label} on each task from the step it is learned to the end; "
                    f"mean with SEM bands over {len(g.runs)} seeds.",
                    save(task_curves(label, g, ylim), base / f"tasks-{names[label]}"))
            from clbench.anytime_plots import figures as anytime_figures  # runs along a stream only

            for kind, fig_title, caption, fig, stem in anytime_figures(entries, styles):
                add(kind, fig_title, caption, save(fig, base / stem))
    return written
