"""scripts/pick_tuned.py: the pick is the best try that trained on every tuning seed."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from clbench.results import write_run
from clbench.suite_file import load_suite

from report_fixtures import matrix_rows
from suite_fixtures import TINY, write_suite

REPO = Path(__file__).resolve().parents[1]


def test_a_try_that_failed_on_one_seed_is_never_picked_even_with_the_best_mean(tmp_path):
    scenario = TINY + 'eval_split = "val"\n'
    path = write_suite(tmp_path, "[learner.finetune]\nlr = [0.1, 0.01]\n", seeds="[0, 1]", scenario=scenario)
    root = tmp_path / "r" / "t"
    # lr 0.1: the best accuracy on seed 0, but seed 1 diverged; lr 0.01 trains on both seeds
    final = {(0.1, 0): 0.9, (0.1, 1): None, (0.01, 0): 0.7, (0.01, 1): 0.6}
    for run in load_suite(path).runs:
        value = final[(run.config["learner"]["fields"]["lr"], run.config["seed"])]
        if value is None:
            write_run(root, run.config, [], status="failed", extra={"reason": "DivergenceError: loss became nan"})
        else:
            write_run(root, run.config, matrix_rows([[0.5, 0.5], [value, 0.5], [value, value]]))
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "pick_tuned.py"), str(root)],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "  pick: lr=0.01" in lines, out.stdout
    assert any("lr=0.1" in line and "failed on another, never picked" in line for line in lines), out.stdout
    assert any("lr=0.1" in line and "failed: seed 1" in line for line in lines), out.stdout
