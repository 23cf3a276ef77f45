"""Ctrl-C: a suite stops, keeps every finished run intact, and exits 130 without an abort."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clbench.results import run_status

SUITE = '''name = "s"
seeds = [0, 1, 2, 3, 4, 5]
[[scenario]]
name = "split-digits"
[learner.finetune]
epochs = {epochs}
'''


def default_sigint() -> None:
    """In the child: Ctrl-C handled as in a terminal, even when these tests run where SIGINT is
    ignored (a shell's background job: Python then never installs its KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([sys.executable, "-m", "clbench.cli", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)


@pytest.mark.slow  # a suite in a subprocess, with torch
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_during_a_suite_keeps_finished_runs_and_exits_130(jobs, tmp_path):
    (tmp_path / "s.toml").write_text(SUITE.format(epochs=3))
    proc = start(tmp_path, "suite", "s.toml", "--jobs", jobs, "--quiet")
    root = tmp_path / "results" / "s"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if root.is_dir() and any(not p.name.startswith(".") for p in root.iterdir()):
            break
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "terminate called" not in err and "Traceback" not in err and "interrupted" in err
    finished = [p for p in root.iterdir() if not p.name.startswith(".")]
    assert 1 <= len(finished) < 6 and all(run_status(p) == "ok" for p in finished)


def test_ctrl_c_before_torch_is_loaded_exits_130(tmp_path):
    """Interrupted while a suite is being planned (no torch yet): the same clean exit."""
    code = ("import sys, signal, os\n"
            "import clbench.suite_file as sf\n"
            "real = sf.load_suite\n"
            "def interrupted(*a, **k):\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    return real(*a, **k)\n"
            "sf.load_suite = interrupted\n"
            "import clbench.suite as s; s.load_suite = interrupted\n"
            "sys.argv = ['clbench', 'suite', 's.toml']\n"
            "from clbench.cli import main; main()\n")
    (tmp_path / "s.toml").write_text(SUITE.format(epochs=1))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120, preexec_fn=default_sigint)
    assert out.returncode == 130, out.stderr
    assert "interrupted" in out.stderr and "Traceback" not in out.stderr and "torch" not in out.stderr
    assert not (tmp_path / "results" / "s").exists() or not any((tmp_path / "results" / "s").iterdir())
