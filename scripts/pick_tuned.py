"""Pick each learner's tuned setting from a tuning suite's results (e.g. scenarios/hope-tune.toml).

    .venv/bin/python scripts/pick_tuned.py results/hope-tune [results/hope-tune-variants ...] [--metric acc]

For every learner label, each try (a distinct set of field values) is scored by its validation
metric averaged first over seeds, then over the scenario-protocols of the suite; the best try (the
highest accuracy; the lowest bits per character on text streams) wins, over the
scenario-protocols the learner is defined under (iCaRL's exclude domain_il). Only runs evaluated on
a validation split count (eval_split = "val"): a tuning pick read off the test split would flatter
the method. A try missing any scenario-protocol is listed as incomplete and never picked; a failed
run (a diverged rate) is listed with its error, and a try that failed on any seed is never picked
(its mean over the seeds that trained would hide that it does not train on every seed). Only runs
made by the learner's current code count (its declared `code_version`, or a learner file's source
hash): a tuning folder that still holds runs of older code gets a note saying how many groups were
left out, never a mix. Prints every try and the pick, with the fields that differ between tries.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from clbench.aggregate import group_runs, load_runs
from clbench.configs import code_identity
from clbench.learner import supported_protocols
from clbench.registry import load_object
from clbench.metrics import METRICS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", type=Path, nargs="+", help="results of tuning suites, e.g. results/hope-tune")
    parser.add_argument("--metric", default="acc", help="validation metric to maximise (default acc)")
    options = parser.parse_args()
    if options.metric not in METRICS:
        sys.exit(f"error: unknown metric {options.metric!r} (valid: {', '.join(METRICS)})")
    for folder in options.folders:
        if not folder.is_dir():
            sys.exit(f"error: {folder} is not a folder of runs")
    groups = [g for g in group_runs(load_runs(options.folders), keep_failed=True)
              if g.config["scenario"].get("eval_split") == "val"]
    if not groups:
        where = ", ".join(map(str, options.folders))
        sys.exit(f"error: no runs evaluated on a validation split (eval_split = \"val\") under {where}")
    current = [g for g in groups if made_by_current_code(g.config["learner"])]
    if len(current) < len(groups):
        print(f"note: {len(groups) - len(current)} groups left out: recorded by older code of their learner "
              f"(another code_version or learner-file source)")
    groups = current
    measures = {g.measure for g in groups}
    if len(measures) > 1:
        sys.exit(f"error: the runs measure {', '.join(sorted(m.name for m in measures))}: tune one measure "
                 f"(accuracy or bpc streams) per call")
    measure = measures.pop()
    cells = sorted({(g.scenario, g.protocol) for g in groups})
    tries: dict[str, dict[str, dict]] = defaultdict(dict)   # learner -> fields json -> {cell: mean}
    defined: dict[str, set[str]] = {g.learner: set(supported_protocols(load_object(g.config["learner"]["class"])))
                                    for g in groups}
    for g in groups:
        values = g.values(options.metric)
        if values:
            fields = json.dumps(g.config["learner"]["fields"], sort_keys=True)
            tries[g.learner].setdefault(fields, {})[(g.scenario, g.protocol)] = statistics.fmean(values)
    failed: dict[str, list[tuple[dict, str]]] = defaultdict(list)   # learner -> tries that failed (a diverged rate)
    for g in groups:
        for run in g.failed:
            failed[g.learner].append((g.config["learner"]["fields"], f"seed {run.seed}: {run.problem}"))
    metric = METRICS[options.metric]
    sign = 1 if metric.better_high(measure) else -1
    print(f"validation {options.metric} ({metric.unit(measure)}, {'higher' if sign > 0 else 'lower'} is better), "
          f"mean over seeds; columns: " + ", ".join(f"{s}/{p}" for s, p in cells))
    for learner in sorted(set(tries) | set(failed)):
        by_fields = tries.get(learner, {})
        all_fields = [json.loads(f) for f in by_fields] + [fields for fields, _ in failed.get(learner, [])]
        varying = sorted(k for k in all_fields[0] if len({json.dumps(f.get(k)) for f in all_fields}) > 1)
        best, best_score = None, None
        diverged = {json.dumps(fields, sort_keys=True) for fields, _ in failed.get(learner, [])}
        print(f"\n{learner}:")
        for fields_json, scores in by_fields.items():
            fields = json.loads(fields_json)
            label = ", ".join(f"{k}={fields[k]}" for k in varying) or "(one try)"
            cols = "  ".join(f"{measure.show(scores[c]):>5}" if c in scores else "  -  " for c in cells)
            own = [c for c in cells if c[1] in defined[learner]]
            complete = all(c in scores for c in own)
            score = statistics.fmean(scores[c] for c in own) if complete else None
            shown = "incomplete" if score is None else measure.show(score)
            if fields_json in diverged:                      # failed on some seed: not a setting that trains
                shown, score = f"{shown} over the seeds that trained; failed on another, never picked", None
            print(f"  {label:<40} {cols}   mean {shown}")
            if score is not None and (best_score is None or sign * score > sign * best_score):
                best, best_score = label, score
        for fields, error in failed.get(learner, []):
            label = ", ".join(f"{k}={fields.get(k)}" for k in varying) or json.dumps(fields)
            print(f"  {label:<40} failed: {error}")
        print(f"  pick: {best}" if best else "  pick: none (no complete try)")


def made_by_current_code(learner: dict) -> bool:
    """Whether a run's learner config carries the code identity its class has now."""
    now = code_identity(learner["class"])
    return learner.get("source_sha256") == now["source_sha256"] and learner.get("code_version") == now.get("code_version")


if __name__ == "__main__":
    main()
