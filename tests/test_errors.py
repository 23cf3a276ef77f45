"""One error surface: every malformed input a user can give any command ends in one line on stderr
that names the culprit, exit code 2, no traceback; a run that fails ends in one line naming its
saved traceback, exit code 1. The commands run in this process through `clbench.cli.main`, the
function the console script calls."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from clbench import cli

LEARNERS = '''
from dataclasses import dataclass

from clbench.learners.finetune import Finetune


@dataclass
class Boom(Finetune):
    def fit_task(self, task):
        raise RuntimeError("boom in fit_task")


class NotADataclass:
    def setup(self, spec, seed):
        pass

    def fit_task(self, task):
        pass

    def predict(self, x, task_id=None):
        return x
'''


def invoke(capsys, monkeypatch, cwd: Path, *args: str) -> tuple[int, str, str]:
    """Run `clbench ARGS` in `cwd` as the console script does; (exit code, stdout, stderr)."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["clbench", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A scratch folder with one of every malformed file the corpus needs."""
    root = tmp_path_factory.mktemp("malformed")
    (root / "notes.txt").write_text("my notes\n")
    (root / "methods.py").write_text(LEARNERS)
    (root / "syntax.py").write_text("class Bad(object)\n    pass\n")
    (root / "badimport.py").write_text("import clbench_no_such_module_xyz\n")
    (root / "raises_at_import.py").write_text("raise ValueError('configured wrongly')\n")
    rng = np.random.default_rng(0)
    x = rng.random((80, 8, 8)).astype(np.float32)
    y = np.arange(80) % 4
    np.savez(root / "good.npz", x_train=x, y_train=y)
    data = (root / "good.npz").read_bytes()
    (root / "truncated.npz").write_bytes(data[: len(data) // 2])
    (root / "text.npz").write_text("this is not an archive\n")
    np.savez(root / "wrongkeys.npz", images=x, labels=y)
    np.savez(root / "negative.npz", x_train=x, y_train=y - 1)
    np.savez(root / "gaps.npz", x_train=x, y_train=y * 2)
    np.savez(root / "testlabel.npz", x_train=x, y_train=y, x_test=x[:10], y_test=np.arange(10))
    np.savez(root / "shapes.npz", x_train=x, y_train=y[:50])
    np.savez(root / "onlyx.npz", x_train=x, y_train=y, x_test=x[:10])
    np.savez(root / "vector.npz", x_train=np.zeros(80), y_train=y)
    for name in ("truncated", "text", "wrongkeys", "negative", "gaps", "testlabel", "shapes", "onlyx", "vector",
                 "missing"):
        suite(root, f"npz_{name}", dataset=f"npz:{name}.npz")
    suite(root, "syntax_learner", learner='[learner.bad]\nclass = "syntax.py:Bad"\n')
    suite(root, "import_learner", learner='[learner.bad]\nclass = "badimport.py:X"\n')
    suite(root, "widths0", learner="[learner.finetune]\nwidths = [0]\n")
    suite(root, "negative_seed", seeds="[-1]")
    suite(root, "huge_seed", seeds='"0-18446744073709551616"')
    suite(root, "huge_seed_list", seeds="[18446744073709551616]")
    suite(root, "good")
    (root / "bad_toml.toml").write_text("name = 'x'\nseeds = [0,\n")
    (root / "unknown_key.toml").write_text("name = 'x'\nsed = [0]\n[[scenario]]\nname = 'split-digits'\n"
                                           "[learner.finetune]\n")
    (root / "no_class.toml").write_text("name = 'x'\n[[scenario]]\nname = 'split-digits'\n"
                                        "[learner.m]\nclass = 'methods.py'\n")
    for key, value in (("dataset", '"digits"'), ("stream", '{kind = "online"}')):  # image-only keys on text
        (root / f"text_{key}.toml").write_text(f'name = "x"\n[[scenario]]\nbuilder = "text"\nname = "t"\n'
                                               f'domains = ["code"]\n{key} = {value}\n[learner.transformer]\n')
    damaged(root / "damaged")
    (root / "empty").mkdir()
    return root


def suite(root: Path, name: str, dataset: str | None = None, learner: str = "[learner.finetune]\nepochs = 1\n",
          seeds: str = "[0]") -> None:
    scenario = (f'name = "mine"\nbuilder = "split"\ndataset = "{dataset}"\nn_tasks = 2\n' if dataset
                else 'name = "split-digits"\n')
    (root / f"{name}.toml").write_text(f'name = "{name}"\nseeds = {seeds}\n\n[[scenario]]\n{scenario}\n{learner}')


def damaged(folder: Path) -> None:
    """Run folders that hold no usable run: run.json holding [], unreadable JSON, no rows."""
    for name, record in (("list-aaaaaaaaaaaa", "[]"), ("garbage-bbbbbbbbbbbb", "{not json"),
                         ("norows-cccccccccccc", json.dumps({"run_id": "cccccccccccc", "status": "ok"}))):
        (folder / name).mkdir(parents=True)
        (folder / name / "run.json").write_text(record)


RUN = ["run", "--scenario", "split-digits", "--set", "epochs=1", "-q"]

# (args, text the one line must hold). Paths are relative to the scratch folder.
USER_MISTAKES = [
    # command-line arguments
    (["run", "--learner", "ewcc"], "did you mean 'ewc'"),
    (["run", "--learner", "ewc", "--set", "lamda=3"], "unknown field 'lamda' of learner 'ewc'"),
    (["run", "--learner", "ewc", "--set", "lam=big"], "'big' is not a valid float"),
    (["run", "--learner", "ewc", "--set", "lam"], "expected key=value"),
    (["run", "--learner", "ewc", "--set", "lam=-1"], "lam must be non-negative"),
    (["run", "--learner", "finetune", "--set", "epochs=0"], "epochs must be positive"),
    (["run", "--learner", "finetune", "--set", "lr=-0.1"], "lr must be positive"),
    (["run", "--learner", "finetune", "--set", "lr=nan"], "lr must be positive"),
    (["run", "--learner", "finetune", "--set", "widths=0"], "widths must be whole numbers >= 1"),
    (["run", "--learner", "finetune", "--set", "widths=-3,5"], "got -3,5"),
    (["run", "--learner", "finetune", "--set", "widths=a,b"], "'a' is not a valid int"),
    (["run", "--learner", "finetune", "--set", "optimizer=lbfgs"], "optimizer must be 'sgd' or 'adam'"),
    (["run", "--learner", "replay", "--set", "buffer_size=-5"], "buffer_size and replay_batch_size"),
    (["run", "--learner", "finetune", "--seed", "-1"], "--seed: -1 is not a valid seed"),
    (["run", "--learner", "finetune", "--seed", str(2**64)], f"--seed: {2**64} is not a valid seed"),
    (["run", "--learner", "finetune", "--seed", "abc"], "Invalid value for '--seed'"),
    (["run", "--learner", "finetune", "--threads", "0"], "--threads must be at least 1"),
    (["run", "--learner", "finetune", "--scenario", "split-digit"], "did you mean 'split-digits'"),
    (["run", "--learner", "finetune", "--protocol", "task"], "unknown protocol 'task'"),
    (["run", "--learner", "finetune", "--results", "notes.txt"], "notes.txt is a file, not a folder"),
    (["run", "--learner", "finetune", "--results", "notes.txt/sub"], "notes.txt/sub cannot be created"),
    (["run", "--learner", "finetune", "--bogus"], "No such option: --bogus"),
    (["run"], "Missing option '--learner'"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
    (["list", "learner"], "cannot list 'learner'"),
    # learner files and references
    (["run", "--learner", "./methods.py"], "names a file but not the class in it: give ./methods.py:CLASS "
                                           "(classes in ./methods.py: Boom, NotADataclass)"),
    (["run", "--learner", "./nothere.py:X"], "learner file not found: ./nothere.py"),
    (["run", "--learner", "./nothere.py"], "learner file not found: ./nothere.py"),
    (["run", "--learner", "./methods.py:Bom"], "did you mean 'Boom'"),
    (["run", "--learner", "./syntax.py:Bad"], "syntax.py, line 1: expected ':'"),
    (["check", "./syntax.py:Bad"], "syntax.py, line 1: expected ':'"),
    (["run", "--learner", "./badimport.py:X"], "No module named 'clbench_no_such_module_xyz'"),
    (["check", "./badimport.py:X"], "No module named 'clbench_no_such_module_xyz'"),
    (["run", "--learner", "./raises_at_import.py:X"], "importing it failed: ValueError: configured wrongly"),
    (["run", "--learner", "./methods.py:NotADataclass", "--set", "lr=1"],
     "has no settable fields (make it a dataclass"),
    (["check", "./methods.py:NotADataclass", "--set", "lr=1"], "has no settable fields (make it a dataclass"),
    (["run", "--learner", "clbench_nowhere.mod:Class"], "cannot import module 'clbench_nowhere.mod'"),
    (["run", "--learner", "clbench.learners.finetune:Nope"], "unknown object in clbench.learners.finetune 'Nope'"),
    (["check", "nothere"], "unknown learner 'nothere'"),
    # suite files
    (["suite", "missing.toml", "--dry-run"], "suite file not found: missing.toml"),
    (["suite", "bad_toml.toml", "--dry-run"], "bad_toml.toml: not valid TOML"),
    (["suite", "unknown_key.toml", "--dry-run"], "unknown key 'sed'"),
    (["suite", "text_dataset.toml", "--dry-run"], "unknown key 'dataset' for builder 'text'"),
    (["suite", "text_stream.toml", "--dry-run"], "unknown key 'stream' for builder 'text'"),
    (["suite", "no_class.toml", "--dry-run"], "names a file but not the class in it"),
    (["suite", "negative_seed.toml", "--dry-run"], "-1 is not a valid seed"),
    (["suite", "huge_seed.toml", "--dry-run"], f"{2**64} is not a valid seed"),
    (["suite", "huge_seed_list.toml", "--dry-run"], f"{2**64} is not a valid seed"),
    (["suite", "good.toml", "--dry-run", "--seeds", "-1"], "--seeds: '-1' is not a seed list"),
    (["suite", "good.toml", "--dry-run", "--seeds", f"0,{2**64}"], f"--seeds: {2**64} is not a valid seed"),
    (["suite", "good.toml", "--dry-run", "--set", "epochs=1"], "expected learners.LABEL.FIELD=VALUE"),
    (["suite", "good.toml", "--dry-run", "--set", "learners.finetune.widths=0"], "widths must be whole numbers"),
    (["suite", "syntax_learner.toml", "--dry-run"], "syntax.py, line 1: expected ':'"),
    (["suite", "import_learner.toml", "--dry-run"], "No module named 'clbench_no_such_module_xyz'"),
    (["suite", "widths0.toml", "--dry-run"], "widths must be whole numbers >= 1"),
    (["suite", "good.toml", "--results", "notes.txt"], "notes.txt/good cannot be created"),
    (["suite", "good.toml", "--executor", "slurm"], "slurm"),
    # data files, checked while planning
    (["suite", "npz_truncated.toml", "--dry-run"], "truncated.npz: not a readable .npz archive"),
    (["suite", "npz_text.toml", "--dry-run"], "text.npz: cannot read as .npz (not an .npz archive"),
    (["suite", "npz_wrongkeys.toml", "--dry-run"], "wrongkeys.npz: missing x_train, y_train (found images, labels"),
    (["suite", "npz_negative.toml", "--dry-run"], "negative.npz: y_train must hold integer labels 0..K-1"),
    (["suite", "npz_gaps.toml", "--dry-run"], "gaps.npz: labels must be 0..K-1 with every class"),
    (["suite", "npz_testlabel.toml", "--dry-run"], "testlabel.npz: test label 9 is not a training class (0..3)"),
    (["suite", "npz_shapes.toml", "--dry-run"], "shapes.npz: x_train has 80 images but y_train 50 labels"),
    (["suite", "npz_onlyx.toml", "--dry-run"], "onlyx.npz: x_test and y_test must be given together"),
    (["suite", "npz_vector.toml", "--dry-run"], "vector.npz: x_train has shape (80,)"),
    (["suite", "npz_missing.toml", "--dry-run"], "npz file not found: missing.npz"),
    # reports and comparisons
    (["report", "nowhere"], "nowhere: no such folder"),
    (["report", "empty"], "no runs under empty"),
    (["report", "damaged", "--no-figures"], "no finished runs under damaged: 3 of 3"),
    (["report", "damaged", "--metrics", "accc"], "did you mean 'acc'"),
    (["report", "damaged", "--format", "html"], "unknown format 'html'"),
    (["report", "damaged", "--out", "notes.txt"], "--out notes.txt is a file, not a folder"),
    (["compare", "damaged", "--against", "empty"], "no runs under empty"),
    (["compare", "damaged", "--against", "damaged", "--out", "notes.txt"], "--out notes.txt is a file"),
    (["compare", "damaged", "--against", "damaged"], "no finished runs"),
    (["published", "nowhere"], "nowhere is not a folder of runs"),
    (["verify", "notes.txt"], "notes.txt: is a file, not a folder"),
    (["verify", "nowhere"], "nowhere: no such folder"),
    (["verify", "empty"], "no runs under empty"),
    (["verify", "damaged", "--max-seconds", "-1"], "--max-seconds must be a number of seconds"),
    (["verify", "damaged", "--threads", "0"], "--threads must be at least 1"),
    (["baselines", "nosuch"], "nosuch"),
    (["fetch", "mnistt"], "did you mean 'mnist'"),
]


@pytest.mark.parametrize("args, message", USER_MISTAKES, ids=[" ".join(a)[:60] for a, _ in USER_MISTAKES])
def test_a_user_mistake_is_one_line_naming_it_and_exit_code_2(args, message, scratch, capsys, monkeypatch):
    before = sorted(p.name for p in scratch.iterdir())
    code, _, err = invoke(capsys, monkeypatch, scratch, *args)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0], err
    assert "Traceback" not in err
    assert sorted(p.name for p in scratch.iterdir()) == before  # nothing written, nothing trained


@pytest.mark.parametrize("args, message", [
    (["--learner", "finetune", "--set", "lr=inf"], "the run failed: DivergenceError: training loss became nan"),
    (["--learner", "./methods.py:Boom"], "the run failed: RuntimeError: boom in fit_task"),
])
def test_a_failing_run_is_one_line_naming_its_traceback_and_exit_code_1(args, message, scratch, capsys, monkeypatch,
                                                                      tmp_path):
    code, _, err = invoke(capsys, monkeypatch, scratch, *RUN, *args, "--results", str(tmp_path))
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and message in lines[0], err
    saved = Path(lines[0].rpartition("(traceback in ")[2].rstrip(")"))
    assert saved.is_file() and "Traceback" in saved.read_text() and "Traceback" not in err
    record = json.loads((saved.parent / "run.json").read_text())
    assert record["status"] == "failed" and message.split(": ", 1)[1] in record["error"]


def test_a_seed_of_2_64_minus_1_is_valid_in_runs_and_suites(scratch, capsys, monkeypatch, tmp_path):
    """The top of the one seed range plans in a suite and runs in `run` (torch takes it)."""
    top = str(2**64 - 1)
    code, out, err = invoke(capsys, monkeypatch, scratch, "suite", "good.toml", "--dry-run", "--seeds", top)
    assert code == 0 and f"seed {top}" in out, err
    code, out, err = invoke(capsys, monkeypatch, scratch, *RUN, "--learner", "finetune", "--seed", top,
                            "--results", str(tmp_path))
    assert code == 0, err
