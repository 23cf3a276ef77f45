"""The command line as a user runs it: real subprocesses of the installed `clbench` script."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

CLBENCH = [sys.executable, "-m", "clbench.cli"]


def clbench(*args, cwd=None):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([*CLBENCH, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_list_and_help_do_not_import_torch():
    code = ("import sys; sys.argv=['clbench','list','learners']\n"
            "from clbench.cli import app\n"
            "try: app()\nexcept SystemExit: pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr
    assert "finetune" in out.stdout and "replay" in out.stdout and "ewc" in out.stdout


@pytest.mark.slow  # subprocesses that import torch
def test_run_prints_matrix_and_metrics_then_reuses_the_run(tmp_path):
    first = clbench("run", "--scenario", "split-digits", "--learner", "finetune", "--seed", "0",
                    "--set", "epochs=2", "--results", str(tmp_path), "--quiet")
    assert first.returncode == 0, first.stderr
    assert "untrained" in first.stdout and "after 5" in first.stdout
    for name in ("acc", "bwt", "forgetting", "learning_acc", "fwt n/a"):
        assert name in first.stdout
    runs = list(tmp_path.iterdir())
    assert len(runs) == 1 and (runs[0] / "run.json").exists() and (runs[0] / "rows.csv").exists()
    second = clbench("run", "--learner", "finetune", "--set", "epochs=2", "--results", str(tmp_path))
    assert second.returncode == 0 and "reusing the finished run" in second.stderr
    assert second.stdout.splitlines()[2:] == first.stdout.splitlines()[2:]
    forced = clbench("run", "--learner", "finetune", "--set", "epochs=2", "--results", str(tmp_path), "--force", "-q")
    assert forced.returncode == 0 and "reusing" not in forced.stderr and len(list(tmp_path.iterdir())) == 1


@pytest.mark.slow  # subprocesses that import torch
def test_task_il_user_file_learner_with_set(tmp_path):
    method = tmp_path / "my_method.py"
    method.write_text(textwrap.dedent('''
        from dataclasses import dataclass
        from clbench.learner import SGDLearner

        @dataclass
        class MyMethod(SGDLearner):
            """A user's method in one file."""
            extra: int = 1
    '''))
    out = clbench("run", "--scenario", "split-digits", "--protocol", "task_il", "--learner",
                  f"{method}:MyMethod", "--set", "lr=0.05", "--set", "epochs=1", "--results", str(tmp_path / "r"), "-q")
    assert out.returncode == 0, out.stderr
    assert "mymethod on split-digits (task_il)" in out.stdout
    assert "fwt" in out.stdout and "fwt n/a" not in out.stdout


@pytest.mark.parametrize("args, message", [
    (["run", "--learner", "ewcc"], "did you mean 'ewc'"),
    (["run", "--learner", "ewc", "--set", "lamda=3"], "unknown field 'lamda' of learner 'ewc'; did you mean 'lam'"),
    (["run", "--learner", "ewc", "--set", "lam=big"], "--set lam: 'big' is not a valid float"),
    (["run", "--learner", "ewc", "--scenario", "split-digit"], "did you mean 'split-digits'"),
    (["run", "--learner", "ewc", "--protocol", "task"], "unknown protocol 'task'"),
    (["run", "--learner", "ewc", "--set", "epochs=0"], "epochs must be positive"),
    (["check", "nothere"], "unknown learner 'nothere'"),
    (["list", "learner"], "cannot list 'learner'"),
])
@pytest.mark.slow  # subprocesses that import torch
def test_bad_input_is_one_line_and_exit_code_2(args, message, tmp_path):
    out = clbench(*args, "--results", str(tmp_path)) if args[0] == "run" else clbench(*args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], out.stderr
    assert not any(tmp_path.iterdir())


def test_check_prints_a_verdict_per_check_and_exits_1_on_failure(monkeypatch):
    """What `clbench check` prints and returns; the battery itself is tested in test_testing.py."""
    from typer.testing import CliRunner

    import clbench.testing
    from clbench.cli import app
    from clbench.testing import CheckResult

    verdicts = [CheckResult("has_learner_interface", True, ""), CheckResult("predict_has_no_side_effects", False, "x")]
    def fake(results):
        def check_learner(learner, raise_on_failure=True, on_result=None, sequence=None):
            for r in results:
                on_result(r)
            return results
        return check_learner

    monkeypatch.setattr(clbench.testing, "check_learner", fake(verdicts))
    bad = CliRunner().invoke(app, ["check", "finetune", "--set", "epochs=1"])
    assert bad.exit_code == 1
    assert "PASS  has_learner_interface" in bad.stdout and "FAIL  predict_has_no_side_effects" in bad.stdout
    assert "finetune: 1 of 2 checks failed" in bad.stdout
    monkeypatch.setattr(clbench.testing, "check_learner", fake(verdicts[:1]))
    good = CliRunner().invoke(app, ["check", "finetune"])
    assert good.exit_code == 0 and "finetune: all 1 checks passed" in good.stdout
    low = CheckResult("learns_under_class_il", True, "accuracy ... threshold: above [0.6]", warning=True)
    monkeypatch.setattr(clbench.testing, "check_learner", fake(verdicts[:1] + [low]))
    warned = CliRunner().invoke(app, ["check", "finetune"])
    assert warned.exit_code == 0 and "WARN  learns_under_class_il" in warned.stdout
    assert "all 2 checks passed; 1 learned little" in warned.stdout


@pytest.mark.slow  # subprocesses that import torch
def test_run_uses_the_threads_it_is_given_and_python_m_clbench_works(tmp_path):
    """`--threads` reaches torch (checked from inside the learner), and `python -m clbench` is the CLI."""
    (tmp_path / "probe.py").write_text(textwrap.dedent("""
        from dataclasses import dataclass
        import torch
        from clbench.learners.finetune import Finetune

        @dataclass
        class Probe(Finetune):
            def fit_task(self, task):
                assert torch.get_num_threads() == 3, torch.get_num_threads()
                super().fit_task(task)
        """))
    out = subprocess.run([sys.executable, "-m", "clbench", "run", "--learner", "./probe.py:Probe", "--set", "epochs=1",
                          "--threads", "3", "--results", str(tmp_path / "r"), "-q"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    bad = clbench("run", "--learner", "finetune", "--threads", "0")
    assert bad.returncode == 2 and "--threads must be at least 1" in bad.stderr
