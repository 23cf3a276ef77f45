"""Plain-text views of a run for the terminal: the evaluation matrix and the headline metrics,
in the unit of the run's measure (accuracy in %, bits per character as is)."""
from __future__ import annotations

import math

import numpy as np

from clbench import metrics


def format_matrix(matrix: np.ndarray, measure: str | metrics.Measure = "accuracy") -> str:
    """The matrix in the measure's unit: a row per training step (row 0 = untrained), a column per task."""
    m = metrics.get_measure(measure)
    n_tasks = matrix.shape[1]
    header = f"{'':>10}" + "".join(f"{'task ' + str(j + 1):>9}" for j in range(n_tasks))
    lines = [header]
    for i, row in enumerate(matrix):
        label = "untrained" if i == 0 else f"after {i}"
        lines.append(f"{label:>10}" + "".join(f"{m.scale * v:9.{m.decimals}f}" for v in row))
    return "\n".join(lines)


def format_metrics(values: dict[str, float | None], measure: str | metrics.Measure = "accuracy") -> str:
    """`name value` pairs in the measure's unit; None (undefined in this protocol) shows as n/a."""
    m = metrics.get_measure(measure)
    parts = []
    for name, value in values.items():
        if value is None:
            parts.append(f"{name} n/a")
        elif math.isnan(value):
            parts.append(f"{name} nan")
        else:
            parts.append(f"{name} {m.scale * value:.{m.decimals}f}")
    return "  ".join(parts)


def format_run(record: dict, rows: list[dict], matrix: np.ndarray) -> str:
    config = record["config"]
    scenario = config["scenario"]
    protocol = scenario["protocol"]
    measure = metrics.measure_of(config)
    train = sum({r["after_task"]: r["train_seconds"] for r in rows}.values())
    evaluate = sum({r["after_task"]: r["eval_seconds"] for r in rows}.values())
    lines = [
        f"{config['learner']['name']} on {scenario['name']} ({protocol}), seed {config['seed']}, run {record['run_id']}",
        f"{measure.label} ({measure.unit}) on each task (columns) after training on each task in turn (rows):",
        format_matrix(matrix, measure),
        format_metrics(metrics.headline(matrix, protocol, measure), measure)
        + ("   (fwt is not defined in class_il)" if protocol == "class_il" else ""),
        f"time: training {train:.2f} s, evaluation {evaluate:.2f} s",
    ]
    return "\n".join(lines)


def format_metric_list() -> str:
    """Every metric record on a line (kind, direction per measure, caption, where undefined), then the measures."""
    def better(metric: metrics.Metric, measure: str | metrics.Measure) -> str:
        return "higher" if metric.better_high(measure) else "lower"

    lines = []
    for name, metric in metrics.METRICS.items():
        others = [f"{better(metric, m)} for {m.name}" for m in metrics.MEASURES.values()
                  if m.name != "accuracy" and better(metric, m) != better(metric, "accuracy")]
        direction = f"{better(metric, 'accuracy')} is better" + (f" ({', '.join(others)})" if others else "")
        where = [f"n/a in {', '.join(sorted(metric.undefined_in))}"] if metric.undefined_in else []
        where += [f"only for {', '.join(metric.measures)}"] if set(metric.measures) != set(metrics.MEASURES) else []
        lines.append(f"{name:<23} {metric.kind:<7}{direction:<34} {metric.short()}"
                     + (f" [{'; '.join(where)}]" if where else ""))
    lines.append("measures: " + "; ".join(f"{m.name} ({'higher' if m.higher_is_better else 'lower'} is better, "
                                          f"in {m.unit})" for m in metrics.MEASURES.values()))
    return "\n".join(lines)


def format_anytime(values: dict[str, float]) -> str:
    """One line of anytime metrics (clbench.anytime), in % (WF: lower is better)."""
    from clbench.anytime import ANYTIME_METRICS

    parts = [f"{ANYTIME_METRICS[name].label} {'n/a' if value != value else f'{100 * value:.1f}'}"
             for name, value in values.items()]
    return "anytime (% along the stream): " + "   ".join(parts)
