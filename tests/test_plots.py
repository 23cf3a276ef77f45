"""Tests for clbench.plots: every figure is written and non-empty, the drawings show the numbers of
the stored matrices, colours are colour-blind-safe and the same for a learner in every figure."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clbench import plot_style, plots
from clbench.aggregate import group_runs, load_runs
from clbench.report import write_report

from report_fixtures import EXAMPLE, shifted, three_learners, write


@pytest.fixture
def groups(tmp_path: Path):
    return {g.learner: g for g in group_runs(load_runs(three_learners(tmp_path / "results")))}


def test_every_figure_file_is_written_and_non_empty(tmp_path):
    root = three_learners(tmp_path / "results")
    write(root, EXAMPLE, learner="ewc", protocol="task_il")
    written = write_report(load_runs(root), tmp_path / "out", ["acc", "forgetting"])
    figures = written.figures
    # per table: seen accuracy, forgetting/BWT bars, plasticity-stability, and per learner a heatmap and task curves
    assert len(figures) == (3 + 2 * 3) + (3 + 2 * 1)
    kinds = {f.kind for f in figures}
    assert kinds == {"heatmap", "task_curves", "seen_accuracy", "forgetting_bwt", "plasticity_stability"}
    for fig in figures:
        assert fig.pdf.read_bytes()[:5] == b"%PDF-" and fig.pdf.stat().st_size > 1000
        assert fig.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and fig.png.stat().st_size > 1000
        assert fig.caption.startswith(("split-toy, class_il:", "split-toy, task_il:"))


def test_heatmap_annotates_the_mean_matrix(groups):
    fig = plots.heatmap("ewc", groups["ewc"])
    ax = fig.axes[0]
    mean = 100 * np.mean([shifted(d) for d in (0.0, 0.02, -0.01)], axis=0)
    texts = [t.get_text() for t in ax.texts]
    assert texts == [f"{v:.0f}" for v in mean.ravel()]
    image = ax.images[0]
    assert np.allclose(image.get_array(), mean) and image.get_clim() == (0, 100)  # one scale for every learner
    assert ax.get_title() == "ewc (n = 3)"


def test_task_curves_and_seen_accuracy_plot_the_means(groups):
    mats = 100 * np.stack([shifted(d) for d in (0.0, 0.02, -0.01)])
    fig = plots.task_curves("ewc", groups["ewc"])
    lines = fig.axes[0].get_lines()
    assert len(lines) == 4  # one per task, from the step it is learned
    assert np.allclose(lines[0].get_ydata(), mats.mean(axis=0)[1:, 0])
    assert np.allclose(lines[3].get_xdata(), [4])
    styles = plot_style.learner_styles(["ewc", "finetune", "replay"])
    fig = plots.seen_accuracy([("ewc", groups["ewc"])], styles)
    (line,) = fig.axes[0].get_lines()
    seen = [[m[k, :k].mean() for k in range(1, 5)] for m in mats]
    assert np.allclose(line.get_ydata(), np.mean(seen, axis=0))
    assert line.get_color() == styles["ewc"].colour


def test_bars_and_scatter_show_metric_means_with_sem(groups):
    from clbench import metrics

    entries = [("ewc", groups["ewc"]), ("finetune", groups["finetune"]), ("replay", groups["replay"])]
    styles = plot_style.learner_styles([label for label, _ in entries])
    fig = plots.forgetting_bwt(entries, styles)
    forgetting_axis, bwt_axis = fig.axes
    expected = [np.mean([metrics.forgetting(r.matrix) for r in g.runs]) for _, g in entries]
    widths = [p.get_width() for p in forgetting_axis.patches]
    assert np.allclose(widths, 100 * np.array(expected))
    assert [p.get_facecolor()[:3] for p in forgetting_axis.patches] == [
        tuple(int(styles[label].colour[i:i + 2], 16) / 255 for i in (1, 3, 5)) for label, _ in entries]
    assert [t.get_text() for t in forgetting_axis.get_yticklabels()] == ["ewc", "finetune", "replay"]
    fig = plots.plasticity_stability(entries, styles)
    # learners with different numbers of seeds: n is in the legend
    assert sorted(t.get_text() for t in fig.axes[0].get_legend().get_texts()) == [
        "ewc (n=3)", "finetune (n=2)", "replay (n=1)"]


def test_learner_colours_are_okabe_ito_fixed_and_distinct():
    styles = plot_style.learner_styles(["mine", "ewc", "hope", "finetune", "other"])
    palette = set(plot_style.OKABE_ITO.values())
    assert all(s.colour in palette for s in styles.values())
    assert styles["ewc"].colour == plot_style.FIXED_COLOURS["ewc"] and styles["hope"].colour == plot_style.FIXED_COLOURS["hope"]
    assert len({s.colour for s in styles.values()}) == 5
    assert plot_style.learner_styles(["hope", "ewc"])["ewc"].colour == plot_style.learner_styles(["ewc"])["ewc"].colour
    many = plot_style.learner_styles([f"m{i}" for i in range(9)])
    assert len({(s.colour, s.linestyle) for s in many.values()}) == 9  # past 7 colours, line styles differ
    assert len({(s.colour, s.hatch) for s in many.values()}) == 9      # ... and bars are hatched


def test_single_task_scenario_does_not_crash(tmp_path):
    write(tmp_path / "runs", [[0.1], [0.9]], learner="ewc", n_tasks=1)
    written = write_report(load_runs(tmp_path / "runs"), tmp_path / "out", ["acc", "forgetting"])
    assert all(f.png.stat().st_size > 0 for f in written.figures)
    assert "| ewc | 1 | 0 | 90.0 | n/a |" in (tmp_path / "out" / "report.md").read_text()


def test_plots_never_touch_pyplot_or_the_global_backend(tmp_path):
    root = tmp_path / "runs"
    write(root, EXAMPLE, learner="ewc")
    # (matplotlib.get_backend() itself imports pyplot, so the setting is read without resolving it)
    code = ("import sys, matplotlib\nbackend = lambda: dict.__getitem__(matplotlib.rcParams, 'backend')\n"
            "before = backend()\nfrom clbench.report import write_report\nfrom clbench.tables import load_folder\n"
            f"write_report(load_folder({str(root)!r}), {str(tmp_path / 'out')!r}, ['acc'])\n"
            "print('matplotlib.pyplot' in sys.modules, backend() == before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]
