"""The anytime table of a report: per group of seeds, the anytime metrics (`clbench.anytime`),
the stability gap and the peak memory, as mean ± SEM over seeds (`clbench.stats`)."""
from __future__ import annotations

from typing import Sequence

from clbench import metrics as M
from clbench.anytime import ANYTIME_METRICS, DEFAULT_WINDOW, gap_depth, summary
from clbench.stats import finite, mean_sem

COLUMNS = ("acc", "aaa", "a_auc", "min_acc", "wc_acc", "wf", "gap", "peak_memory_mb")
HEADERS = {"acc": f"final ACC {M.METRICS['acc'].arrow()}",
           **{name: f"{m.label} {m.arrow}" for name, m in ANYTIME_METRICS.items()},
           "gap": "stability gap \u2193", "peak_memory_mb": "peak memory (MiB)"}


def group_values(group) -> dict[str, list[float]]:
    """Per column, the value of every run of the group that has anytime rows."""
    values: dict[str, list[float]] = {c: [] for c in COLUMNS}
    for run in group.runs:
        a = run.anytime
        if a is None:
            continue
        for name, value in summary(a).items():
            values[name].append(value)
        values["acc"].append(M.acc(run.matrix))
        values["gap"].append(gap_depth(a))
        memory = [r["peak_memory_mb"] for r in run.rows if "peak_memory_mb" in r]
        if memory:
            values["peak_memory_mb"].append(max(memory))
    return values


def rows(groups: Sequence) -> list[dict]:
    """One dict per group with anytime rows: labels, n, and (mean, sem) per column."""
    out = []
    for g in groups:
        values = group_values(g)
        if not values["aaa"]:
            continue
        out.append({"scenario": g.scenario, "protocol": g.protocol, "learner": g.learner, "n": len(values["aaa"]),
                    **{c: mean_sem(finite(values[c]))[:2] for c in COLUMNS}})
    return out


def csv_records(table: list[dict]) -> list[dict]:
    """The table as flat records for CSV, in stored units (fractions, MiB): `<column>_mean`, `<column>_sem`."""
    return [{**{k: r[k] for k in ("scenario", "protocol", "learner", "n")},
             **{f"{c}_{kind}": value for c in COLUMNS for kind, value in zip(("mean", "sem"), r[c])}} for r in table]


def markdown(table: list[dict]) -> str:
    """The table in Markdown: accuracies in %, memory in MiB, mean ± SEM over seeds."""
    head = ["scenario", "protocol", "learner", "n"] + [HEADERS[c] for c in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table:
        cells = [r["scenario"], r["protocol"], r["learner"], str(r["n"])]
        for c in COLUMNS:
            mean, sem = r[c]
            scale = 1 if c == "peak_memory_mb" else 100
            cells.append("n/a" if mean != mean else f"{scale * mean:.1f}" + ("" if sem != sem else f" ± {scale * sem:.1f}"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


CAPTION = ("Along the stream (anytime evaluation), mean ± SEM over seeds, in %: AAA (average anytime accuracy), "
           "A_AUC (area under the anytime accuracy curve per sample), min-ACC and WC-ACC (worst-case accuracy), "
           f"WF (windowed forgetting over {DEFAULT_WINDOW} steps), stability gap (old-task accuracy at a switch minus "
           "its lowest value before the next boundary); peak memory: the largest per-task peak (resident memory on the CPU, "
           "allocator peak on a GPU). Definitions: docs/anytime.md.")
