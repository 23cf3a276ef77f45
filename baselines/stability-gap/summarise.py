"""The stability-gap figure (stability-gap.png) and table (printed, Markdown) of this folder's
stored runs: old-task accuracy around each task switch, per protocol, fine-tuning and replay,
mean ± SEM over seeds. Run from the repository root after record.py:

    python baselines/stability-gap/summarise.py
"""
from __future__ import annotations

from pathlib import Path

from matplotlib import rc_context

from clbench import anytime_table
from clbench.aggregate import group_runs, load_runs
from clbench.anytime_plots import anytime_runs, stability_gap, task_curves
from clbench.plot_style import STYLE, learner_styles, save

HERE = Path(__file__).resolve().parent


def main() -> None:
    groups = sorted(group_runs(load_runs(HERE)), key=lambda g: (g.scenario, g.protocol, g.learner))
    styles = learner_styles(sorted({g.learner for g in groups}))
    with rc_context(STYLE):
        for scenario, protocol in sorted({(g.scenario, g.protocol) for g in groups}):
            mine = [g for g in groups if (g.scenario, g.protocol) == (scenario, protocol)]
            name = scenario.removeprefix("stream-")
            fig = stability_gap([(g.learner, anytime_runs(g)) for g in mine], styles)
            fig.axes[0].set_title(f"{name}, {protocol}")
            save(fig, HERE / f"stability-gap-{name}-{protocol}")
            for g in mine:
                if g.learner == "replay":
                    runs = anytime_runs(g)
                    save(task_curves(f"replay, {name}, {protocol}", runs, len(runs)),
                         HERE / f"anytime-replay-{name}-{protocol}")
    print(anytime_table.markdown(anytime_table.rows(groups)))


if __name__ == "__main__":
    main()
