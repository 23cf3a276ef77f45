"""Figures of a forgetting report, as PDF (for papers) and PNG (for the HTML report).

Per scenario table: the accuracy matrix of each learner as an annotated heatmap (mean over
seeds); the accuracy of each task as training proceeds, per learner, with SEM bands; the
average accuracy on the tasks seen so far, all learners in one plot; forgetting and BWT as bars
with SEM error bars; and learning accuracy against forgetting (the plasticity-stability view).

Sized for one column of a two-column paper (3.4 in wide, 7-8 pt text). Each learner keeps one
colour and one marker across every figure of a report; colours come from the Okabe-Ito palette,
which stays distinguishable under the common colour-vision deficiencies, and markers keep
learners apart in greyscale. Matplotlib is used through its object API on the Agg canvas:
this module never imports pyplot and never changes the global backend or rcParams.
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from clbench.aggregate import Group

# Okabe & Ito 2008, "Color Universal Design". Yellow (#F0E442) is left out: too faint on white.
OKABE_ITO = {
    "blue": "#0072B2", "vermillion": "#D55E00", "bluish green": "#009E73", "reddish purple": "#CC79A7",
    "orange": "#E69F00", "sky blue": "#56B4E9", "black": "#000000",
}
# Built-in learners keep their colour in every report, so figures of different papers agree.
FIXED_COLOURS = {"hope": OKABE_ITO["vermillion"], "ewc": OKABE_ITO["blue"], "replay": OKABE_ITO["bluish green"],
                 "finetune": OKABE_ITO["black"], "joint": OKABE_ITO["orange"]}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
LINESTYLES = ("-", "--", ":", "-.")
HATCHES = ("", "////", "....", "xxxx")

WIDTH = 3.4  # inches: one column of a two-column paper
STYLE = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 7, "legend.frameon": False, "axes.spines.top": False, "axes.spines.right": False,
    "axes.linewidth": 0.6, "lines.linewidth": 1.3, "lines.markersize": 3.5, "xtick.major.width": 0.6,
    "ytick.major.width": 0.6, "pdf.fonttype": 42, "ps.fonttype": 42,  # TrueType in PDFs: venues reject Type 3
    "savefig.dpi": 200, "savefig.bbox": "tight", "savefig.pad_inches": 0.02, "axes.titlepad": 4,
}


@dataclass
class Style:
    colour: str
    marker: str
    linestyle: str
    hatch: str = ""      # bars of a learner whose colour repeats an earlier one's


@dataclass
class FigureFile:
    kind: str  # heatmap, task_curves, seen_accuracy, forgetting_bwt, plasticity_stability
    title: str
    caption: str
    table_slug: str
    pdf: Path
    png: Path


def learner_styles(labels: Sequence[str]) -> dict[str, Style]:
    """A colour, marker and line style per learner label, the same for the label in every figure.

    Built-in learners get their fixed colour; other labels take the remaining Okabe-Ito colours in
    order of first appearance. Past seven learners colours repeat, with another line style and a
    hatch on bars.
    """
    labels = list(dict.fromkeys(labels))
    free = [c for c in OKABE_ITO.values() if c not in {FIXED_COLOURS[x] for x in labels if x in FIXED_COLOURS}]
    styles, k = {}, 0
    for i, label in enumerate(labels):
        if label in FIXED_COLOURS:
            colour, repeat = FIXED_COLOURS[label], 0
        else:
            colour, repeat = free[k % len(free)], k // len(free)
            k += 1
        styles[label] = Style(colour, MARKERS[i % len(MARKERS)], LINESTYLES[repeat % len(LINESTYLES)],
                              HATCHES[repeat % len(HATCHES)])
    return styles


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].strip("-") or "x"


def _new_figure(height: float, width: float = WIDTH):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)  # render on Agg (PNG); PDF output uses matplotlib's own PDF backend
    return fig


def _save(fig, stem: Path) -> tuple[Path, Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    pdf, png = stem.with_suffix(".pdf"), stem.with_suffix(".png")
    fig.savefig(pdf, metadata={"CreationDate": None, "Creator": "clbench"})  # reproducible bytes
    fig.savefig(png, metadata={"Software": "clbench"})
    return pdf, png


def _mean_sem(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and SEM along `axis`; SEM is 0 where n = 1 (no band drawn, the caption gives n)."""
    n = values.shape[axis]
    mean = values.mean(axis=axis)
    sem = values.std(axis=axis, ddof=1) / math.sqrt(n) if n > 1 else np.zeros_like(mean)
    return mean, sem


def _metric_summary(group: Group, metric: str) -> tuple[float, float, int]:
    values = np.array([v for v in group.values(metric) if not math.isnan(v)])
    if len(values) == 0:
        return math.nan, math.nan, 0
    mean, sem = _mean_sem(values)
    return float(mean), float(sem), len(values)


def _y_range(values: np.ndarray) -> tuple[float, float]:
    """Percent axis limits: up to 100, down to the data rounded down to 10 (0 when the data go low).
    Shared by every learner of a table, so curves of different learners read on one scale."""
    low = float(np.nanmin(values)) if np.isfinite(values).any() else 0.0
    low = max(0.0, math.floor((low - 3) / 10) * 10)
    return (low - 2 if low == 0 else low), 102.0


def _curve_floor(entries: Sequence[tuple[str, Group]]) -> tuple[float, float]:
    """The y range of the accuracy curves of a table: every learned cell of every learner's mean matrix,
    and the bands around them."""
    values = []
    for _, group in entries:
        mats = 100 * group.matrices()
        mean, sem = _mean_sem(mats)
        learned = np.tril(np.ones(mean.shape[1:], dtype=bool))
        values.append((mean[1:] - sem[1:])[learned])
    return _y_range(np.concatenate(values))


def _legend_below(ax, entries: Sequence[tuple[str, Group]], handlelength: float) -> None:
    """A legend under the axes, read row by row, as many columns as fit one 3.4 in row (about 48
    characters of 7 pt text with the handles). Labels carry n when learners have different n."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    counts = {label: len(g.runs) for label, g in entries}
    if len(set(counts.values())) > 1:
        labels = [f"{label} (n={counts[label]})" if label in counts else label for label in labels]
    ncol = max(1, min(len(labels), 48 // (max(len(label) for label in labels) + 6)))
    rows = -(-len(labels) // ncol)
    # matplotlib fills a legend column by column; reorder so that it reads row by row
    order = [r * ncol + c for c in range(ncol) for r in range(rows) if r * ncol + c < len(labels)]
    ax.legend([handles[i] for i in order], [labels[i] for i in order], loc="upper center",
              bbox_to_anchor=(0.5, -0.2), ncol=ncol, handlelength=handlelength)


def _percent_ticks(ax) -> None:
    """Round percent ticks (0, 20, ... or 80, 85, ...), never 97.5."""
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10], integer=True))


def _wrap(label: str, width: int = 16) -> str:
    """A long label over several lines, broken before '(' and after ', ' (tick labels stay narrow)."""
    if len(label) <= width:
        return label
    parts = label.replace(" (", "\n(").replace(", ", ",\n").split("\n")
    lines = [parts[0]]
    for part in parts[1:]:
        if len(lines[-1]) + len(part) + 1 <= width and not part.startswith("("):
            lines[-1] += " " + part
        else:
            lines.append(part)
    return "\n".join(lines)


def _n_text(entries: Sequence[tuple[str, Group]]) -> str:
    ns = {len(g.runs) for _, g in entries}
    if len(ns) == 1:
        return f"n = {ns.pop()} seeds per learner"
    return "seeds per learner: " + ", ".join(f"{label} {len(g.runs)}" for label, g in entries)


# ----------------------------------------------------------------------------------------------
# The figures: each function returns a matplotlib Figure (on the Agg canvas); write_figures saves.


def heatmap(label: str, group: Group):
    """The mean accuracy matrix (percent), one row per training step, annotated."""
    from matplotlib.patches import Rectangle

    mats = 100 * group.matrices()
    mean = mats.mean(axis=0)
    n_rows, n_tasks = mean.shape
    cell = min(0.42, 2.6 / n_tasks)
    fig = _new_figure(height=0.75 + cell * n_rows, width=min(WIDTH, 1.25 + cell * n_tasks))
    ax = fig.add_subplot()
    image = ax.imshow(mean, cmap="viridis", vmin=0, vmax=100, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(n_tasks), [str(j + 1) for j in range(n_tasks)])
    ax.set_yticks(range(n_rows), ["init"] + [str(i) for i in range(1, n_rows)])
    ax.set_xlabel("evaluated task")
    ax.set_ylabel("after training task")
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if n_tasks <= 12:
        size = 6.5 if n_tasks <= 6 else 5.5 if n_tasks <= 9 else 4.5
        for i in range(n_rows):
            for j in range(n_tasks):
                value = mean[i, j]
                # viridis is dark below ~60%: white text there, black above
                ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=size,
                        color="white" if value < 60 else "black")
    for j in range(n_tasks):  # outline the just-learned cells (the diagonal R[j, j])
        ax.add_patch(Rectangle((j - 0.5, j + 0.5), 1, 1, fill=False, edgecolor="white", linewidth=1.0))
    bar = fig.colorbar(image, ax=ax, fraction=0.06, pad=0.03)
    bar.set_label("accuracy (%)")
    bar.ax.tick_params(labelsize=6.5, width=0.5, length=2)
    bar.outline.set_linewidth(0.5)
    ax.set_title(f"{label} (n = {len(group.runs)})")
    return fig


def task_curves(label: str, group: Group, ylim: tuple[float, float] = (-2, 102)):
    """Accuracy on each task from the step it is learned to the end: mean over seeds with SEM bands."""
    from matplotlib import colormaps

    mats = 100 * group.matrices()
    n_tasks = mats.shape[2]
    mean, sem = _mean_sem(mats)
    colours = colormaps["viridis"](np.linspace(0, 0.85, n_tasks))
    fig = _new_figure(height=2.3)
    ax = fig.add_subplot()
    steps = np.arange(n_tasks + 1)
    for j in range(n_tasks):
        x = steps[j + 1:]
        y, s = mean[j + 1:, j], sem[j + 1:, j]
        ax.fill_between(x, y - s, y + s, color=colours[j], alpha=0.2, linewidth=0)
        ax.plot(x, y, color=colours[j], marker=MARKERS[j % len(MARKERS)], label=f"task {j + 1}")
    ax.set_xlim(0.7, n_tasks + 0.3)
    ax.set_ylim(*ylim)
    _percent_ticks(ax)
    ax.set_xticks(range(1, n_tasks + 1))
    ax.set_xlabel("after training task")
    ax.set_ylabel("accuracy on task (%)")
    ax.set_title(f"{label} (n = {len(group.runs)})")
    ax.grid(axis="y", linewidth=0.4, alpha=0.4)
    if n_tasks <= 10:
        ax.legend(ncol=min(n_tasks, 5), loc="upper center", bbox_to_anchor=(0.5, -0.22), handlelength=1.6,
                  columnspacing=1.0)
    return fig


def seen_accuracy(entries: Sequence[tuple[str, Group]], styles: dict[str, Style],
                  ylim: tuple[float, float] = (-2, 102)):
    """Mean accuracy over the tasks seen so far after each step, every learner, SEM bands."""
    fig = _new_figure(height=2.4)
    ax = fig.add_subplot()
    n_tasks = 1
    for label, group in entries:
        mats = 100 * group.matrices()
        n_tasks = mats.shape[2]
        seen = np.stack([[m[k, :k].mean() for k in range(1, n_tasks + 1)] for m in mats])
        mean, sem = _mean_sem(seen)
        x = np.arange(1, n_tasks + 1)
        st = styles[label]
        ax.fill_between(x, mean - sem, mean + sem, color=st.colour, alpha=0.18, linewidth=0)
        ax.plot(x, mean, color=st.colour, marker=st.marker, linestyle=st.linestyle, label=label)
    ax.set_xticks(range(1, n_tasks + 1))
    ax.set_ylim(*ylim)
    _percent_ticks(ax)
    ax.set_xlabel("after training task")
    ax.set_ylabel("accuracy on tasks seen (%)")
    ax.grid(axis="y", linewidth=0.4, alpha=0.4)
    _legend_below(ax, entries, handlelength=2.2)
    return fig


def forgetting_bwt(entries: Sequence[tuple[str, Group]], styles: dict[str, Style]):
    """Forgetting and BWT per learner: horizontal bars (mean) with SEM error bars, in percentage points."""
    lines = sum(_wrap(label).count("\n") + 1 for label, _ in entries)
    fig = _new_figure(height=0.7 + 0.2 * max(lines, len(entries)) + 0.06 * len(entries))
    axes = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(entries))[::-1]
    for ax, metric, name in ((axes[0], "forgetting", "forgetting (pp) \u2193"), (axes[1], "bwt", "BWT (pp) \u2191")):
        for yi, (label, group) in zip(y, entries):
            mean, sem, n = _metric_summary(group, metric)
            if n == 0:
                continue
            hatch = styles[label].hatch
            ax.barh(yi, 100 * mean, height=0.7, color=styles[label].colour, hatch=hatch or None,
                    edgecolor="white" if hatch else "none", linewidth=0,
                    xerr=None if math.isnan(sem) or n < 2 else 100 * sem,
                    error_kw={"elinewidth": 0.8, "capsize": 2, "capthick": 0.8, "ecolor": "#444444"})
        ax.axvline(0, color="#444444", linewidth=0.6)
        ax.set_xlabel(name)
        ax.grid(axis="x", linewidth=0.4, alpha=0.4)
        ax.spines["left"].set_visible(False)
        ax.tick_params(axis="y", length=0)
    axes[0].set_yticks(y, [_wrap(label) for label, _ in entries])
    axes[0].set_ylim(-0.6, len(entries) - 0.4)
    fig.subplots_adjust(wspace=0.3)  # room between the end tick of one panel and the first of the next
    return fig


def plasticity_stability(entries: Sequence[tuple[str, Group]], styles: dict[str, Style]):
    """Learning accuracy (plasticity) against forgetting (stability), one point per learner, SEM bars."""
    fig = _new_figure(height=2.5)
    ax = fig.add_subplot()
    for label, group in entries:
        fx, fs, fn = _metric_summary(group, "forgetting")
        lx, ls, ln = _metric_summary(group, "learning_acc")
        if fn == 0 or ln == 0 or math.isnan(fx):
            continue
        st = styles[label]
        ax.errorbar(100 * fx, 100 * lx, xerr=100 * fs if fn > 1 else None, yerr=100 * ls if ln > 1 else None,
                    color=st.colour, marker=st.marker, markersize=5, linestyle="none", elinewidth=0.8,
                    capsize=2, label=label)
    ax.set_xlabel("forgetting (pp) \u2193")
    ax.set_ylabel("learning accuracy (%) \u2191")
    ax.grid(linewidth=0.4, alpha=0.4)
    ax.margins(0.15)
    ax.text(0.02, 0.97, "\u2196 better", transform=ax.transAxes, ha="left", va="top", fontsize=7, color="#555555")
    if ax.get_legend_handles_labels()[0]:
        _legend_below(ax, entries, handlelength=1.0)
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
                name = _slug(label)
                if name in names.values():
                    name += "-" + hashlib.sha256(g.key.encode()).hexdigest()[:8]
                names[label] = name

            def add(kind: str, fig_title: str, caption: str, paths: tuple[Path, Path]) -> None:
                written.append(FigureFile(kind, fig_title, f"{title}: {caption}", slug, *paths))

            n_text = _n_text(entries)
            ylim = _curve_floor(entries)
            add("seen_accuracy", "average accuracy on tasks seen",
                f"mean accuracy over the tasks seen so far after each training step; bands: SEM over seeds ({n_text}).",
                _save(seen_accuracy(entries, styles, ylim), base / "seen-accuracy"))
            add("forgetting_bwt", "forgetting and BWT",
                f"forgetting (Chaudhry et al. 2018, lower is better) and backward transfer (GEM, divided by T-1, "
                f"higher is better) in percentage points; bars: mean, error bars: SEM over seeds ({n_text}).",
                _save(forgetting_bwt(entries, styles), base / "forgetting-bwt"))
            add("plasticity_stability", "learning accuracy against forgetting",
                f"plasticity (learning accuracy: accuracy on each task right after learning it) against stability "
                f"(forgetting); up and left is better; error bars: SEM over seeds ({n_text}).",
                _save(plasticity_stability(entries, styles), base / "plasticity-stability"))
            for label, g in entries:
                add("heatmap", f"accuracy matrix of {label}",
                    f"accuracy matrix of {label} in %, mean over {len(g.runs)} seeds; row i: after training task i "
                    f"(init: untrained); column j: task j; outlined: each task right after it is learned.",
                    _save(heatmap(label, g), base / f"heatmap-{names[label]}"))
            for label, g in entries:
                add("task_curves", f"accuracy of each task during training, {label}",
                    f"accuracy of {label} on each task from the step it is learned to the end; "
                    f"mean with SEM bands over {len(g.runs)} seeds.",
                    _save(task_curves(label, g, ylim), base / f"tasks-{names[label]}"))
    return written
