"""How clbench figures look: sized for one column of a two-column paper (3.4 in wide, 7-8 pt
text), one colour and marker per learner across every figure of a report (Okabe-Ito colours,
which stay distinguishable under the common colour-vision deficiencies; markers keep learners
apart in greyscale), and matplotlib's object API on the Agg canvas, so that no figure imports
pyplot or changes the global backend or rcParams.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
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


def new_figure(height: float, width: float = WIDTH):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)  # render on Agg (PNG); PDF output uses matplotlib's own PDF backend
    return fig


def save(fig, stem: Path) -> tuple[Path, Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    pdf, png = stem.with_suffix(".pdf"), stem.with_suffix(".png")
    fig.savefig(pdf, metadata={"CreationDate": None, "Creator": "clbench"})  # reproducible bytes
    fig.savefig(png, metadata={"Software": "clbench"})
    return pdf, png


def curve(ax, x, mean: np.ndarray, sem: np.ndarray, colour: Any, band_alpha: float, **line: Any) -> None:
    """A mean curve over seeds with its SEM band (no band where the SEM is not defined, n = 1)."""
    if not np.isnan(sem).all():
        ax.fill_between(x, mean - sem, mean + sem, color=colour, alpha=band_alpha, linewidth=0)
    ax.plot(x, mean, color=colour, **line)


def legend_columns(labels: Sequence[str]) -> int:
    """How many legend entries fit one 3.4 in row (about 48 characters of 7 pt text with the handles)."""
    return max(1, min(len(labels), 48 // (max(len(label) for label in labels) + 6)))


def legend_below(ax, entries: Sequence[tuple[str, "Group"]], handlelength: float) -> None:
    """A legend under the axes, read row by row, as many columns as fit one row (`legend_columns`).
    Labels carry n when learners have different n."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    counts = {label: len(g.runs) for label, g in entries}
    if len(set(counts.values())) > 1:
        labels = [f"{label} (n={counts[label]})" if label in counts else label for label in labels]
    ncol = legend_columns(labels)
    rows = -(-len(labels) // ncol)
    # matplotlib fills a legend column by column; reorder so that it reads row by row
    order = [r * ncol + c for c in range(ncol) for r in range(rows) if r * ncol + c < len(labels)]
    ax.legend([handles[i] for i in order], [labels[i] for i in order], loc="upper center",
              bbox_to_anchor=(0.5, -0.2), ncol=ncol, handlelength=handlelength)



def task_legend(ax, n_tasks: int) -> None:
    """Light horizontal grid and, for up to 10 tasks, the per-task legend below the axes."""
    ax.grid(axis="y", linewidth=0.4, alpha=0.4)
    if n_tasks <= 10:
        ax.legend(ncol=min(n_tasks, 5), loc="upper center", bbox_to_anchor=(0.5, -0.22), handlelength=1.6,
                  columnspacing=1.0)

def wrap(label: str, width: int = 16) -> str:
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
