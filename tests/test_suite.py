"""Suite files: validation (file, line, key, what is valid), grid expansion and sweeps, overrides,
seeds, and the plan of what is done against a results folder."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clbench.cli import app
from clbench.errors import UsageError
from clbench.configs import resolve
from clbench.scenario_names import scenario_config
from clbench.results import find_run, run_id, scan_runs, write_run
from clbench.suite import plan
from clbench.suite_file import load_suite, parse_seeds

from suite_fixtures import TINY, write_suite

REPO = Path(__file__).resolve().parents[1]


def error_of(path: Path, **kwargs) -> str:
    with pytest.raises(UsageError) as info:
        load_suite(path, **kwargs)
    return str(info.value)


# -- grid expansion ---------------------------------------------------------------------------------

def test_grid_is_scenarios_times_learners_times_seeds_with_sweeps(tmp_path):
    path = write_suite(tmp_path, """
[learner.finetune]
epochs = 1
[learner.ewc]
epochs = 1
lam = [1, 10]
""", seeds='"0-2"', scenario=TINY.replace('protocol = "class_il"', 'protocol = ["class_il", "task_il"]'))
    suite = load_suite(path)
    assert suite.seeds == [0, 1, 2]
    assert len(suite.runs) == 2 * (1 + 2) * 3
    assert len({r.run_id for r in suite.runs}) == len(suite.runs)
    ewc = [r.config for r in suite.runs if r.config["learner"]["name"] == "ewc"]
    assert sorted({c["learner"]["fields"]["lam"] for c in ewc}) == [1.0, 10.0]  # coerced to the field type
    assert all(isinstance(c["learner"]["fields"]["lam"], float) for c in ewc)
    assert {c["scenario"]["protocol"] for c in ewc} == {"class_il", "task_il"}
    labels = [r.label for r in suite.runs]
    assert "ewc (lam=10.0) tiny/task_il seed 2" in labels
    assert "finetune tiny/class_il seed 0" in labels


def test_list_typed_field_sweeps_only_with_a_list_of_lists(tmp_path):
    single = load_suite(write_suite(tmp_path / "a", "[learner.finetune]\nwidths = [8, 8]\n", seeds="[0]"))
    assert [r.config["learner"]["fields"]["widths"] for r in single.runs] == [[8, 8]]
    swept = load_suite(write_suite(tmp_path / "b", "[learner.finetune]\nwidths = [[8], [16, 16]]\n", seeds="[0]"))
    assert [r.config["learner"]["fields"]["widths"] for r in swept.runs] == [[8], [16, 16]]


def test_builder_arguments_sweep(tmp_path):
    scenario = TINY.replace("n_tasks = 2", "n_tasks = [2, 5]")
    suite = load_suite(write_suite(tmp_path, "[learner.finetune]\n", seeds="[0]", scenario=scenario))
    assert [r.config["scenario"]["n_tasks"] for r in suite.runs] == [2, 5]
    assert suite.runs[0].label == "finetune tiny (n_tasks=2)/class_il seed 0"


def test_named_scenario_gives_the_same_run_id_as_clbench_run(tmp_path):
    scenario = '[[scenario]]\nname = "split-digits"\nprotocol = ["class_il", "task_il"]\n'
    suite = load_suite(write_suite(tmp_path, "[learner.ewc]\n", seeds="[3]", scenario=scenario))
    expected = {run_id(resolve(scenario_config("split-digits", p), "ewc", {}, 3)) for p in ("class_il", "task_il")}
    assert {r.run_id for r in suite.runs} == expected


def test_set_overrides_a_field_and_replaces_a_sweep(tmp_path):
    path = write_suite(tmp_path, "[learner.finetune]\n[learner.ewc]\nlam = [1, 10]\n")
    suite = load_suite(path, overrides=["learners.ewc.lam=1000", "learners.*.epochs=2"])
    ewc = [r.config["learner"]["fields"] for r in suite.runs if r.config["learner"]["name"] == "ewc"]
    assert [f["lam"] for f in ewc] == [1000.0, 1000.0]  # one value, two seeds
    assert {r.config["learner"]["fields"]["epochs"] for r in suite.runs} == {2}


def test_seeds_option_replaces_the_file_seeds(tmp_path):
    suite = load_suite(write_suite(tmp_path, "[learner.finetune]\n", seeds="[0, 1]"), seeds="0,3,5")
    assert [r.config["seed"] for r in suite.runs] == [0, 3, 5]


def test_learner_and_scenario_options_keep_part_of_the_grid_with_the_whole_suites_run_ids(tmp_path):
    scenarios = TINY + TINY.replace('name = "tiny"', 'name = "tiny3"').replace("n_tasks = 2", "n_tasks = 3")
    path = write_suite(tmp_path, "[learner.finetune]\n[learner.ewc]\nlam = [1, 10]\n[learner.replay]\n",
                       seeds="[0, 1]", scenario=scenarios)
    whole = {r.run_id: r for r in load_suite(path).runs}
    part = load_suite(path, learners=["ewc,replay"], scenarios=["tiny3"])
    assert {r.label.split(" tiny3")[0] for r in part.runs} == {"ewc (lam=1.0)", "ewc (lam=10.0)", "replay"}
    assert len(part.runs) == 3 * 2 and all(r.config["scenario"]["name"] == "tiny3" for r in part.runs)
    assert all(whole[r.run_id].config == r.config for r in part.runs)
    assert (part.n_learners, part.n_scenarios) == (3, 1)
    assert len(load_suite(path, learners=["finetune", "replay"]).runs) == 2 * 2 * 2
    assert "unknown learner 'ewx' in --learner" in error_of(path, learners=["ewx"])
    assert "did you mean 'ewc'" in error_of(path, learners=["ewx"])
    assert "valid: tiny, tiny3" in error_of(path, scenarios=["tiny4"])


def test_a_part_run_with_learner_counts_as_done_for_the_whole_suite(tmp_path):
    path = write_suite(tmp_path, "[learner.finetune]\nepochs = 1\n[learner.ewc]\nepochs = 1\n", seeds="[0]")
    results = str(tmp_path / "r")
    part = CliRunner().invoke(app, ["suite", str(path), "--results", results, "--learner", "ewc", "--quiet"])
    assert part.exit_code == 0, part.output
    assert "1 runs: 1 done now" in part.output
    dry = CliRunner().invoke(app, ["suite", str(path), "--results", results, "--dry-run"])
    states = {line.split()[-4]: line.split()[0] for line in dry.stdout.splitlines() if re.search(r"seed \d+$", line)}
    assert states == {"ewc": "done", "finetune": "to"}, dry.stdout
    bad = CliRunner().invoke(app, ["suite", str(path), "--results", results, "-l", "nope"])
    assert bad.exit_code == 2 and "unknown learner 'nope'" in bad.output


@pytest.mark.parametrize(("text", "seeds"), [("0-3", [0, 1, 2, 3]), ("0,3,5", [0, 3, 5]), ("0-1,7", [0, 1, 7]),
                                             ("4", [4])])
def test_parse_seeds(text, seeds):
    assert parse_seeds(text, "--seeds") == seeds


@pytest.mark.parametrize("bad", ["3-1", "a", "0,0", "", "-1"])
def test_parse_seeds_rejects(bad):
    with pytest.raises(UsageError, match="--seeds"):
        parse_seeds(bad, "--seeds")


def test_file_learner_path_is_relative_to_the_suite_folder(tmp_path, monkeypatch):
    write_suite(tmp_path / "suites", '[learner.mine]\nclass = "./learners.py:Boom"\nfail_seed = 7\n')
    monkeypatch.chdir(tmp_path)  # not the suite's folder
    suite = load_suite(Path("suites") / "suite.toml")
    learner = suite.runs[0].config["learner"]
    assert learner["class"] == f"{(tmp_path / 'suites' / 'learners.py').resolve()}:Boom"
    assert learner["name"] == "mine" and learner["fields"]["fail_seed"] == 7
    assert learner["source_sha256"]  # editing the file changes the run ids


# -- validation ---------------------------------------------------------------------------------------

def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), start=1) if needle in line)


def test_unknown_top_level_key_names_file_line_and_valid_keys(tmp_path):
    path = write_suite(tmp_path, "[learner.finetune]\n")
    path.write_text(path.read_text().replace("seeds =", "seed = 0\nseeds ="))
    message = error_of(path)
    assert message.startswith(f"{path}:{line_of(path, 'seed = 0')}: ")
    assert "'seed'" in message and "did you mean 'seeds'" in message and "valid:" in message


def test_unknown_learner_field_names_line_and_suggests(tmp_path):
    path = write_suite(tmp_path, "[learner.finetune]\n[learner.ewc]\nepochs = 1\nlamb = 3\n")
    message = error_of(path)
    assert message.startswith(f"{path}:{line_of(path, 'lamb')}: [learner.ewc]")
    assert "unknown field 'lamb'" in message and "did you mean 'lam'" in message


def test_bad_value_type_names_key_value_and_type(tmp_path):
    path = write_suite(tmp_path, '[learner.ewc]\nlam = "lots"\n')
    message = error_of(path)
    assert message.startswith(f"{path}:{line_of(path, 'lam =')}: [learner.ewc] lam")
    assert "'lots' is not a valid float" in message


def test_value_the_learner_rejects_names_the_table(tmp_path):
    path = write_suite(tmp_path, "[learner.ewc]\nlam = -1.0\n")
    message = error_of(path)
    assert message.startswith(f"{path}:{line_of(path, '[learner.ewc]')}: ")
    assert "lam must be non-negative" in message


def test_unknown_learner_suggests(tmp_path):
    path = write_suite(tmp_path, "[learner.ewcc]\n")
    message = error_of(path)
    assert message.startswith(f"{path}:{line_of(path, '[learner.ewcc]')}: ")
    assert "unknown learner 'ewcc'" in message and "did you mean 'ewc'" in message


def test_unknown_scenario_and_protocol(tmp_path):
    path = write_suite(tmp_path, "[learner.finetune]\n", scenario='[[scenario]]\nname = "split-digit"\n')
    message = error_of(path)
    assert message.startswith(f"{path}:{line_of(path, 'split-digit')}: ")
    assert "unknown scenario 'split-digit'" in message and "did you mean 'split-digits'" in message

    path = write_suite(tmp_path, "[learner.finetune]\n",
                       scenario='[[scenario]]\nname = "split-digits"\nprotocol = ["class_il", "task-il"]\n')
    message = error_of(path)
    assert message.startswith(f"{path}:{line_of(path, 'protocol')}: ")
    assert "unknown protocol 'task-il'" in message and "class_il" in message


def test_second_scenario_entry_errors_point_at_its_own_lines(tmp_path):
    scenario = TINY + TINY.replace('name = "tiny"', 'name = "tiny2"').replace("n_tasks = 2", "n_task = 2")
    path = write_suite(tmp_path, "[learner.finetune]\n", scenario=scenario)
    message = error_of(path)
    assert message.startswith(f"{path}:{line_of(path, 'n_task =')}: [[scenario]] #2")
    assert "did you mean 'n_tasks'" in message


def test_builder_scenario_needs_a_name_and_known_arguments(tmp_path):
    path = write_suite(tmp_path, "[learner.finetune]\n", scenario='[[scenario]]\nbuilder = "split"\nn_tasks = 2\n')
    assert "needs a name" in error_of(path)
    path = write_suite(tmp_path, "[learner.finetune]\n", scenario=TINY.replace("n_tasks = 2", 'n_tasks = "two"'))
    assert "n_tasks: 'two' is not a valid int" in error_of(path)
    path = write_suite(tmp_path, "[learner.finetune]\n", scenario=TINY.replace('"digits"', '"digit"'))
    assert "unknown dataset 'digit'" in error_of(path)


def test_scenario_must_be_an_array_of_tables(tmp_path):
    path = write_suite(tmp_path, "[learner.finetune]\n", scenario='[scenario]\nname = "split-digits"\n')
    message = error_of(path)
    assert "write [[scenario]], not [scenario]" in message and message.startswith(f"{path}:")


def test_toml_syntax_error_names_file_and_line(tmp_path):
    path = write_suite(tmp_path, "[learner.finetune]\nepochs = = 1\n")
    message = error_of(path)
    assert message.startswith(f"{path}: not valid TOML") and "line" in message


def test_missing_learners_and_set_errors(tmp_path):
    assert "no learners" in error_of(write_suite(tmp_path, ""))
    path = write_suite(tmp_path, "[learner.ewc]\n")
    assert "unknown learner 'ewcc'" in error_of(path, overrides=["learners.ewcc.lam=1"])
    assert "unknown field 'lamb'" in error_of(path, overrides=["learners.ewc.lamb=1"])
    assert "'x' is not a valid float" in error_of(path, overrides=["learners.ewc.lam=x"])
    assert "expected learners.LABEL.FIELD=VALUE" in error_of(path, overrides=["ewc.lam=1"])


def test_cli_reports_a_bad_suite_in_one_line_with_exit_code_2(tmp_path):
    path = write_suite(tmp_path, "[learner.ewc]\nlamb = 3\n")
    result = CliRunner().invoke(app, ["suite", str(path), "--results", str(tmp_path / "r")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}:")
    assert "Traceback" not in result.output
    missing = CliRunner().invoke(app, ["suite", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2 and "suite file not found" in missing.stderr


def test_cli_rejects_bad_executor_options(tmp_path):
    path = write_suite(tmp_path, "[learner.finetune]\n")
    for args, needle in [(["--executor", "slurm"], "unknown executor 'slurm'"), (["--jobs", "0"], "--jobs"),
                         (["--address", "auto"], "--address joins a Ray cluster")]:
        result = CliRunner().invoke(app, ["suite", str(path), *args])
        assert result.exit_code == 2 and needle in result.stderr


def test_suite_help_does_not_import_torch():
    code = ("import sys; sys.argv = ['clbench', 'suite', '--help']\nfrom clbench.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "--dry-run" in out.stdout and out.stdout.strip().endswith("False")


def test_planning_every_shipped_suite_does_not_import_torch():
    """The suite process reads learner classes and scenario builders but leaves torch to the
    workers (clbench.lazy): planning and --dry-run take a second, not several."""
    code = ("import sys\nfrom clbench.errors import UsageError\nfrom clbench.suite_file import load_suite\n"
            f"for path in sorted(__import__('glob').glob({str(REPO / 'scenarios' / '*.toml')!r})):\n"
            "    try:\n"
            "        assert load_suite(path).runs, path\n"
            "    except UsageError as err:\n"       # a stream of fetched text domains that are not here
            "        assert 'run `clbench fetch' in str(err), err\n"
            "        print('needs data:', path.rsplit('/', 1)[1])\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    *needs_data, modules = out.stdout.strip().splitlines()
    assert modules == "[]"
    assert set(needs_data) <= {"needs data: hope-lm-six.toml"}, needs_data


# -- the plan against a results folder ----------------------------------------------------------------

def test_plan_counts_finished_runs_done_and_failed_runs_to_do(tmp_path):
    suite = load_suite(write_suite(tmp_path, "[learner.finetune]\nepochs = 1\n", seeds="[0, 1, 2]"))
    root = tmp_path / "results" / suite.name
    rows = [{"after_task": 0, "eval_task": 1, "accuracy": 0.5, "n_samples": 1, "train_seconds": 0, "eval_seconds": 0}]
    write_run(root, suite.runs[0].config, rows)
    write_run(root, suite.runs[1].config, [], status="failed", extra={"error": "RuntimeError: x"})
    (root / f".tmp-{suite.runs[2].run_id}-1-abc").mkdir()  # a half-written run is not a run
    planned = plan(suite, root)
    assert set(planned.done) == {suite.runs[0].run_id}
    assert set(planned.failed_before) == {suite.runs[1].run_id}
    assert [r.run_id for r in planned.todo] == [suite.runs[1].run_id, suite.runs[2].run_id]
    assert find_run(root, suite.runs[1].run_id) is None  # failed is not finished
    assert scan_runs(root)[suite.runs[1].run_id][1] == "failed"
    assert [r.run_id for r in plan(suite, root, force=True).todo] == [r.run_id for r in suite.runs]


def test_dry_run_lists_done_failed_and_to_do_and_runs_nothing(tmp_path):
    path = write_suite(tmp_path, "[learner.finetune]\nepochs = 1\n", seeds="[0, 1, 2]")
    suite = load_suite(path)
    root = tmp_path / "r" / "t"
    write_run(root, suite.runs[0].config, [])
    write_run(root, suite.runs[2].config, [], status="failed")
    before = sorted(p.name for p in root.iterdir())
    result = CliRunner().invoke(app, ["suite", str(path), "--results", str(tmp_path / "r"), "--dry-run"])
    assert result.exit_code == 0, result.output
    states = {line.split()[-1]: line.split()[0] for line in result.stdout.splitlines()
              if re.search(r"seed \d+$", line)}
    assert states == {"0": "done", "1": "to", "2": "failed"}
    assert re.search(r"3 runs .*1 done, 2 to do \(1 failed before, to retry\)", result.stdout)
    assert sorted(p.name for p in root.iterdir()) == before


def test_quick_suite_is_every_builtin_baseline_on_split_digits_in_two_protocols():
    suite = load_suite(REPO / "scenarios" / "quick.toml")
    assert suite.name == "quick" and suite.seeds == [0, 1, 2]
    pairs = {(r.config["learner"]["name"], r.config["scenario"]["name"], r.config["scenario"]["protocol"])
             for r in suite.runs}
    assert pairs == {(l, "split-digits", p) for l in ("finetune", "joint", "ewc", "replay")
                     for p in ("class_il", "task_il")}
    assert len(suite.runs) == 24
    json.dumps([r.config for r in suite.runs])  # configs are plain data


def test_named_scenario_can_be_evaluated_on_the_validation_split(tmp_path):
    from clbench.aggregate import Group

    scenarios = ('[[scenario]]\nname = "split-digits"\neval_split = "val"\n'
                 '[[scenario]]\nname = "permuted-digits"\neval_split = "test"\n')
    path = write_suite(tmp_path, "[learner.finetune]\n", seeds="[0]", scenario=scenarios)
    runs = load_suite(path).runs
    val, test = runs[0].config["scenario"], runs[1].config["scenario"]
    assert val["eval_split"] == "val" and "eval_split" not in test  # "test" leaves the run id as without it
    assert Group("k", runs[0].config).scenario == "split-digits (val)"
    assert Group("k", runs[1].config).scenario == "permuted-digits"
    bad = write_suite(tmp_path, "[learner.finetune]\n", file="bad.toml",
                      scenario='[[scenario]]\nname = "split-digits"\neval_split = "train"\n')
    assert "eval_split: 'train' is not valid (valid: test, val)" in error_of(bad)
