"""Where forgetting sits in a stored run: per parameter group, how much old-task accuracy
returns when that group is rolled back to its values right after the old task was learned.

    .venv/bin/python scripts/where_forgetting.py baselines/hope/hope-split-digits-task_il-s0-* [--json out.json]

The run is replayed from its run.json through the runner with the model copied after every task
(a run costs what it cost when recorded), and the replayed accuracy matrix is compared with the
stored one first: a difference beyond `--tolerance` (another torch or CPU can round differently)
is reported and, unless `--force`, stops the script. Groups for Hope's network: each CMS level
(across blocks), the encoder, the memories' initial states, the rest of the token mixer, norms,
the head; "all" rolls back everything (= accuracy just after learning the task). The table gives,
per group, the final old-task accuracy, the accuracy with the group rolled back (both averaged over
every task but the last), the gain, and how far the group moved over the run (% of its norm).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from clbench.results import read_run
from clbench.rollback import max_difference, replay_with_snapshots, rollback_table
from clbench.verify import environment_changes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a run directory (run.json + rows.csv)")
    parser.add_argument("--tolerance", type=float, default=0.005,
                        help="largest accuracy difference accepted between replay and stored rows (default 0.005)")
    parser.add_argument("--force", action="store_true", help="report even if the replay does not reproduce the run")
    parser.add_argument("--json", type=Path, help="also write the per-task table here")
    options = parser.parse_args()
    if not (options.run / "run.json").is_file():
        sys.exit(f"error: {options.run} is not a run directory (no run.json)")
    torch.set_num_threads(1)
    record, stored = read_run(options.run)
    config = record["config"]
    print(f"replaying {options.run.name} ({config['learner']['name']}, {config['scenario'].get('name')} "
          f"{config['scenario']['protocol']}, seed {config['seed']}) with snapshots after every task ...", flush=True)
    replayed = replay_with_snapshots(config)
    diff = max_difference(replayed.rows, stored)
    print(f"replay vs stored accuracy matrix: largest difference {100 * diff:.2f} points")
    if diff > options.tolerance and not options.force:
        moved = environment_changes(record)
        why = (f"; it was recorded with {', '.join(moved)}, which can round differently, so this machine "
               f"trains another trajectory" if moved else "")
        sys.exit(f"error: the replay does not reproduce {options.run} (difference {diff:.4f} > --tolerance "
                 f"{options.tolerance}){why}; --force reports on this machine's replay anyway")
    table = rollback_table(replayed)
    by_group: dict[str, list[dict]] = {}
    for row in table:
        by_group.setdefault(row["group"], []).append(row)
    print("\nold tasks (all but the last), mean over tasks, accuracy in %:")
    print(f"{'group':<24} {'params':>9} {'moved %':>8} {'final':>7} {'rolled back':>12} {'gain':>7}")
    for group, rows in by_group.items():
        final = statistics.fmean(r["final"] for r in rows)
        rolled = statistics.fmean(r["rolled_back"] for r in rows)
        print(f"{group:<24} {rows[0]['n_parameters']:>9,} {100 * rows[0]['moved']:>8.2f} {100 * final:>7.1f} "
              f"{100 * rolled:>12.1f} {100 * (rolled - final):>+7.1f}")
    if options.json:
        options.json.write_text(json.dumps({"run": str(options.run), "replay_difference": diff, "table": table}, indent=1))


if __name__ == "__main__":
    main()
