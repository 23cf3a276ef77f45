"""Tests for the forgetting tables and reports (clbench.tables, clbench.render, clbench.report) and the
`report` and `compare` commands, on runs with known matrices."""
from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from clbench import metrics
from clbench.aggregate import group_runs, load_runs
from clbench.cli import app
from clbench.errors import UsageError
from clbench.plot_style import learner_styles as plot_styles
from clbench.render import format_table, render_tables, table_csv, table_latex, table_markdown
from clbench.report import write_report
from clbench.stats import welch
from clbench.tables import build_tables, compare_runs as compare, load_folder, parse_metrics

from report_fixtures import BPC_EXAMPLE, EXAMPLE, bpc_runs, shifted, three_learners, write

NAMES = ["acc", "bwt", "forgetting", "learning_acc"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return three_learners(tmp_path / "results")


def _tables(root: Path, names=NAMES, spread="sem"):
    return build_tables(group_runs(load_runs(root), keep_failed=True), names, spread)


def _row(table, label):
    return next(r for r in table.rows if r.label == label)


def test_table_numbers_equal_the_metrics_module(root):
    (table,) = _tables(root)
    ewc = _row(table, "ewc")
    matrices = [shifted(d) for d in (0.0, 0.02, -0.01)]
    markdown = table_markdown(table)
    for name in NAMES:
        values = [metrics.compute(m, [name], "class_il")[name] for m in matrices]
        mean, sem = np.mean(values), np.std(values, ddof=1) / math.sqrt(3)
        assert ewc.cells[name].mean == pytest.approx(mean)
        assert ewc.cells[name].sem == pytest.approx(sem)
        assert f"{100 * mean:.1f}" in markdown and f"± {100 * sem:.1f}" in markdown
    # CSV holds the same numbers as fractions
    records = list(csv.DictReader(io.StringIO(table_csv(table))))
    acc_values = [metrics.acc(m) for m in matrices]
    ewc_record = next(r for r in records if r["learner"] == "ewc")
    assert float(ewc_record["acc_mean"]) == pytest.approx(np.mean(acc_values))
    assert float(ewc_record["acc_sem"]) == pytest.approx(np.std(acc_values, ddof=1) / math.sqrt(3))
    assert ewc_record["n"] == "3" and ewc_record["seeds"] == "0 1 2"


def test_worked_example_single_run_has_no_spread(tmp_path):
    write(tmp_path, EXAMPLE, learner="ewc")
    (table,) = _tables(tmp_path, ["acc", "bwt", "forgetting", "avg_inc_acc"])
    line = next(line for line in table_markdown(table).splitlines() if line.startswith("| ewc"))
    expected = [f"{100 * metrics.METRICS[n](EXAMPLE):.1f}" for n in ("acc", "bwt", "forgetting", "avg_inc_acc")]
    assert expected == ["83.2", "-12.3", "13.0", "85.9"]
    assert line == "| ewc | 1 | 0 | " + " | ".join(expected) + " |"


def test_best_value_respects_direction(root):
    (table,) = _tables(root)
    # replay: the highest accuracy; finetune: the most forgetting; ewc: the least
    assert "acc" in _row(table, "replay").best and "acc" not in _row(table, "ewc").best
    assert "forgetting" in _row(table, "ewc").best and "forgetting" not in _row(table, "finetune").best
    assert "| replay | 1 | 0 (missing 1, 2) | **" in table_markdown(table)
    assert r"\textbf{" in table_latex(table)


def test_fwt_omitted_in_class_il_and_shown_in_task_il(tmp_path):
    write(tmp_path, EXAMPLE, learner="ewc", protocol="class_il")
    write(tmp_path, EXAMPLE, learner="ewc", protocol="task_il")
    class_il, task_il = _tables(tmp_path, ["acc", "fwt"])
    assert class_il.protocol == "class_il" and class_il.metrics == ["acc"] and class_il.omitted == ["fwt"]
    assert "Not reported: fwt (not defined in class\\_il" in table_markdown(class_il)
    assert task_il.metrics == ["acc", "fwt"]
    assert f"{100 * metrics.fwt(EXAMPLE):.1f}" in table_markdown(task_il)


def test_missing_and_failed_seeds_are_shown(root):
    (table,) = _tables(root)
    finetune, replay = _row(table, "finetune"), _row(table, "replay")
    assert finetune.n == 2 and finetune.failed_seeds == [2] and finetune.missing_seeds == []
    assert replay.missing_seeds == [1, 2]
    md = table_markdown(table)
    assert "| finetune | 2 | 0, 1 (failed 2) |" in md
    assert "finetune: seed 2 failed" in md and "replay: seed 1, 2 not run" in md
    assert r"\textsuperscript{$\dagger$}" in table_latex(table)
    records = {r["learner"]: r for r in csv.DictReader(io.StringIO(table_csv(table)))}
    assert records["finetune"]["failed_seeds"] == "2" and records["replay"]["missing_seeds"] == "1 2"


def test_different_versions_and_configs_are_never_averaged(tmp_path):
    write(tmp_path, EXAMPLE, learner="ewc", seed=0, version="0.1.0")
    write(tmp_path, shifted(-0.2), learner="ewc", seed=1, version="0.2.0")
    write(tmp_path, shifted(-0.1), learner="ewc", seed=0, lr=0.5)
    (table,) = _tables(tmp_path)
    assert sorted(r.label for r in table.rows) == [
        "ewc (clbench_version=0.1.0, lr=0.1)", "ewc (clbench_version=0.1.0, lr=0.5)",
        "ewc (clbench_version=0.2.0, lr=0.1)"]
    assert all(r.n == 1 for r in table.rows)
    assert "different clbench versions are kept apart" in table_markdown(table)


def test_a_copied_run_counts_once(root, tmp_path):
    copy = tmp_path / "results" / "copies"
    ewc0 = next(p for p in root.iterdir() if p.name.startswith("ewc-") and "-s0-" in p.name)
    shutil.copytree(ewc0, copy / ewc0.name)
    (table,) = _tables(root)
    assert _row(table, "ewc").n == 3 and len(_row(table, "ewc").group.duplicates) == 1


def test_spread_options(root):
    (table,) = _tables(root, ["acc"], spread="ci95")
    values = [metrics.acc(shifted(d)) for d in (0.0, 0.02, -0.01)]
    half = stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / math.sqrt(3)
    assert _row(table, "ewc").cells["acc"].spread("ci95") == pytest.approx(half)
    assert f"± {100 * half:.1f}" in table_markdown(table) and "95% CI" in table_markdown(table)
    (table,) = _tables(root, ["acc"], spread="std")
    assert f"± {100 * np.std(values, ddof=1):.1f}" in table_markdown(table)
    with pytest.raises(UsageError, match="valid: sem, std, ci95"):
        _tables(root, ["acc"], spread="iqr")


# ------------------------------------------------------------------------------------------------
# LaTeX

def _check_latex(tex: str) -> None:
    body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    envs = re.findall(r"\\(begin|end)\{(\w+)\}", body)
    stack = []
    for kind, name in envs:
        if kind == "begin":
            stack.append(name)
        else:
            assert stack.pop() == name
    assert not stack
    assert body.count(r"\toprule") == body.count(r"\bottomrule") == 1 and body.count(r"\midrule") >= 1
    assert body.index(r"\toprule") < body.index(r"\midrule") < body.index(r"\bottomrule")
    unescaped = body.replace(r"\{", "").replace(r"\}", "")
    assert unescaped.count("{") == unescaped.count("}")
    text = re.sub(r"(?<!\\)\$.*?(?<!\\)\$", "", body)  # outside math every special is escaped
    assert not re.search(r"(?<!\\)[_%#$^~]", text)
    n_cols = len(re.search(r"\\begin\{tabular\}\{(\w+)\}", body).group(1))
    for line in body.splitlines():
        if line.endswith(r"\\"):
            assert len(re.findall(r"(?<!\\)&", line)) == n_cols - 1


NASTY = r"my_method & co 100% #1 $x$ {a} ~b^c \d"


def test_latex_is_well_formed_and_escapes_specials(tmp_path):
    write(tmp_path, EXAMPLE, learner=NASTY, scenario="split_toy")
    write(tmp_path, shifted(-0.1), learner="ewc", scenario="split_toy")
    (table,) = _tables(tmp_path)
    tex = table_latex(table)
    _check_latex(tex)
    assert r"my\_method \& co 100\% \#1 \$x\$ \{a\} \textasciitilde{}b\textasciicircum{}c \textbackslash{}d" in tex
    assert r"split\_toy" in tex and r"\label{tab:clbench-split-toy-class-il}" in tex
    assert "Chaudhry et al. 2018" in tex and "divided by T-1" in tex  # the convention is in the caption


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (apt-get install "
                    "texlive-latex-base texlive-latex-recommended) - LaTeX compile check skipped")
def test_latex_compiles(tmp_path, root):
    write(tmp_path / "more", EXAMPLE, learner=NASTY)
    runs = load_runs([root, tmp_path / "more"])
    tables = build_tables(group_runs(runs, keep_failed=True), ["acc", "bwt", "forgetting", "fwt"])
    comparison = compare(load_runs(tmp_path / "more"), load_runs(root), ["acc", "forgetting"])
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                   + render_tables(tables + comparison.tables, "latex") + "\n\\end{document}\n")
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


# ------------------------------------------------------------------------------------------------
# HTML, files

EVIL = '<script>alert("x")</script>'


def _rename(run_dir: Path, learner: str, scenario: str) -> None:
    """Give a written run hostile names (a name with '/' cannot be written by write_run itself)."""
    record = json.loads((run_dir / "run.json").read_text())
    record["config"]["learner"]["name"] = learner
    record["config"]["scenario"]["name"] = scenario
    (run_dir / "run.json").write_text(json.dumps(record))


def test_html_escapes_user_strings_and_is_self_contained(tmp_path):
    evil_scenario = 'evil"><img src=x onerror=alert(1)>'
    _rename(write(tmp_path / "runs", EXAMPLE, learner="a"), EVIL, evil_scenario)
    _rename(write(tmp_path / "runs", None, status="failed", extra={"error": "<b>boom</b>"}, learner="a", seed=1),
            EVIL, evil_scenario)
    written = write_report(load_runs(tmp_path / "runs"), tmp_path / "out", ["acc", "forgetting"],
                           sources=[str(tmp_path / "runs")])
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<script" not in page and "<img src=x" not in page and "<b>boom" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page and "&lt;b&gt;boom&lt;/b&gt;" in page
    assert 'evil&#34;&gt;&lt;img src=x onerror=alert(1)&gt;' in page  # the template autoescapes
    assert re.findall(r'<img [^>]*src="([^"]{0,30})', page) and all(
        src.startswith("data:image/png;base64,") for src in re.findall(r'<img [^>]*src="([^"]{0,30})', page))
    assert "http://" not in page and "https://" not in page and "<link" not in page
    assert "Failed or incomplete runs" in page and "status failed: &lt;b&gt;boom&lt;/b&gt;" in page
    assert "&#34;clbench_version&#34;: &#34;0.1.0&#34;" in page  # the config, escaped
    # file names never carry the raw string
    for path in written.files:
        assert "<" not in str(path) and '"' not in str(path)
    md = (tmp_path / "out" / "report.md").read_text()
    assert not re.search(r"(?<!\\)<", md) and r"\<script\>" in md  # every < of a user string escaped


def test_report_writes_every_file_and_prunes_stale_ones(root, tmp_path):
    out = tmp_path / "report"
    written = write_report(load_runs(root), out, NAMES, sources=[str(root)])
    for name in ("report.md", "report.html", "tables/split-toy-class-il.md", "tables/split-toy-class-il.tex",
                 "tables/split-toy-class-il.csv", "tables/summary.csv", "tables/runs.csv"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "figures/split-toy-class-il/heatmap-replay.pdf").is_file()
    runs_csv = list(csv.DictReader((out / "tables/runs.csv").open()))
    assert len(runs_csv) == 7 and sum(r["status"] != "ok" for r in runs_csv) == 1
    html_page = (out / "report.html").read_text()
    assert "RuntimeError: out of memory" in html_page and "git revision" in html_page and "torch" in html_page
    # A second report without replay removes replay's figures, and never a file it did not write.
    (out / "figures" / "mine.txt").write_text("keep me")
    for path in root.glob("replay-*"):
        shutil.rmtree(path)
    write_report(load_runs(root), out, NAMES)
    assert not (out / "figures/split-toy-class-il/heatmap-replay.pdf").exists()
    assert (out / "figures" / "mine.txt").read_text() == "keep me"
    assert written.folder == out


# ------------------------------------------------------------------------------------------------
# compare

def _acc_matrix(final: float) -> np.ndarray:
    """T = 2 with final row [final, final]: acc = final."""
    return np.array([[0.1, 0.1], [0.9, 0.1], [final, final]])


def test_welch_p_values_match_scipy(tmp_path):
    mine, hope = [0.80, 0.83, 0.85, 0.81], [0.70, 0.74, 0.69]
    for seed, a in enumerate(mine):
        write(tmp_path / "mine", _acc_matrix(a), learner="mine", seed=seed, n_tasks=2)
    for seed, a in enumerate(hope):
        write(tmp_path / "base", _acc_matrix(a), learner="hope", seed=seed, n_tasks=2)
    write(tmp_path / "base", _acc_matrix(0.5), learner="finetune", seed=0, n_tasks=2)
    result = compare(load_runs(tmp_path / "mine"), load_runs(tmp_path / "base"), ["acc", "forgetting"])
    (table,) = result.tables
    assert [r.label for r in table.rows] == ["mine", "finetune", "hope"] and table.rows[0].reference
    expected = stats.ttest_ind(mine, hope, equal_var=False).pvalue
    hope_row = _row(table, "hope")
    assert hope_row.pvalues["acc"][0] == pytest.approx(expected, rel=1e-12)
    assert _row(table, "finetune").pvalues["acc"] == (None, "n < 2")
    md = table_markdown(table)
    assert f"| {expected:.3f} |" in md and "n/a (n < 2)" in md and "Welch's t-test" in md
    assert welch([0.1, 0.2, 0.3], [0.4, 0.5]) == (pytest.approx(stats.ttest_ind([0.1, 0.2, 0.3], [0.4, 0.5],
                                                                           equal_var=False).pvalue), "")
    assert welch([0.5, 0.5], [0.5, 0.5]) == (None, "no variance")
    tex = table_latex(table)
    _check_latex(tex)


def test_compare_explains_protocol_and_scenario_mismatches(tmp_path):
    write(tmp_path / "mine", EXAMPLE, learner="mine", protocol="class_il")
    write(tmp_path / "base", EXAMPLE, learner="hope", protocol="task_il")
    with pytest.raises(UsageError, match=r"has split-toy only in task_il: protocols do not match"):
        compare(load_runs(tmp_path / "mine"), load_runs(tmp_path / "base"), ["acc"], against_where="baselines/hope")
    write(tmp_path / "base", EXAMPLE, learner="hope", scenario="permuted-toy")
    with pytest.raises(UsageError, match=r"no runs on split-toy \(it has: permuted-toy \(class_il\)"):
        compare(load_runs(tmp_path / "mine"), [r for r in load_runs(tmp_path / "base")
                                               if r.config["scenario"]["name"] == "permuted-toy"], ["acc"])
    # a partial match compares what matches and notes the rest
    write(tmp_path / "mine", EXAMPLE, learner="mine", scenario="permuted-toy")
    write(tmp_path / "mine", EXAMPLE[:3, :2], learner="mine", scenario="permuted-toy", n_tasks=2)
    result = compare(load_runs(tmp_path / "mine"), load_runs(tmp_path / "base"), ["acc"])
    assert len(result.tables) == 1 and result.tables[0].scenario["name"] == "permuted-toy"
    assert any("protocols do not match" in n for n in result.notes)
    assert any("scenario settings do not match" in n and "n_tasks=2" in n for n in result.notes)


def test_compare_never_uses_the_method_runs_as_their_own_baseline(tmp_path):
    write(tmp_path / "results" / "mine", EXAMPLE, learner="mine")
    write(tmp_path / "results" / "hope", shifted(-0.1), learner="hope")
    result = compare(load_runs(tmp_path / "results" / "mine"), load_runs(tmp_path / "results"), ["acc"])
    assert [r.label for r in result.tables[0].rows] == ["mine", "hope"]


# ------------------------------------------------------------------------------------------------
# command line

runner = CliRunner()


def test_cli_report_and_formats(root, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["report", str(root), "--metrics", "acc,forgetting,bwt", "--format", "latex",
                                 "--out", str(out), "--no-figures"])
    assert result.exit_code == 0, result.output
    assert r"\begin{table}" in result.stdout and r"\toprule" in result.stdout
    assert (out / "report.html").is_file() and not (out / "figures").exists()
    result = runner.invoke(app, ["report", str(root), "--format", "csv", "--no-figures"])
    assert result.exit_code == 0 and (root / "report.md").is_file()  # default: into the folder itself
    assert result.stdout.splitlines()[0].startswith("scenario,protocol,learner,")


def test_cli_compare(tmp_path):
    for seed, a in enumerate([0.80, 0.83, 0.85]):
        write(tmp_path / "mine", _acc_matrix(a), learner="mine", seed=seed, n_tasks=2)
        write(tmp_path / "hope", _acc_matrix(a - 0.1), learner="hope", seed=seed, n_tasks=2)
    result = runner.invoke(app, ["compare", str(tmp_path / "mine"), "--against", str(tmp_path / "hope"),
                                 "--metrics", "acc", "--out", str(tmp_path / "cmp"), "--no-figures"])
    assert result.exit_code == 0, result.output
    p = stats.ttest_ind([0.80, 0.83, 0.85], [0.70, 0.73, 0.75], equal_var=False).pvalue
    assert f"{p:.3f}" in result.stdout and "mine (method)" in result.stdout
    assert (tmp_path / "cmp" / "compare.html").is_file()


@pytest.mark.parametrize("args, message", [
    (["report", "{tmp}/nowhere"], "no such folder"),
    (["report", "{tmp}/empty"], "no runs under"),
    (["report", "{root}", "--metrics", "acc,forgeting"], "did you mean 'forgetting'"),
    (["report", "{root}", "--format", "docx"], "valid: markdown, latex, csv"),
    (["compare", "{root}", "--against", "{tmp}/nowhere"], "no such folder"),
])
def test_cli_bad_input_is_one_line_and_exit_2(root, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    args = [a.format(tmp=tmp_path, root=root) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_only_failed_runs_is_an_error(tmp_path):
    write(tmp_path, None, status="failed", learner="ewc")
    with pytest.raises(UsageError, match="no finished runs.*1 of 1 runs failed"):
        write_report(load_folder(tmp_path), tmp_path / "out", ["acc"])


def test_parse_metrics():
    assert parse_metrics(None) == list(metrics.HEADLINE)
    assert parse_metrics(" acc, bwt ,acc") == ["acc", "bwt"]
    with pytest.raises(UsageError, match="unknown metric 'bwtt'"):
        parse_metrics("bwtt")


def test_help_imports_neither_torch_nor_matplotlib():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom clbench.cli import app\n"
            "for args in (['--help'], ['report', '--help'], ['compare', '--help'], ['list', 'metrics']):\n"
            "    assert CliRunner().invoke(app, args).exit_code == 0\n"
            "print(sorted(m for m in ('torch', 'matplotlib', 'scipy', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_metric_record_has_its_texts():
    for record in metrics.METRICS.values():
        assert record.short() and record.full().endswith(".") and record.citation
        assert record.kind in ("level", "change") and record.aggregate == "mean"


def test_a_learner_whose_every_run_failed_stays_in_the_table(tmp_path):
    write(tmp_path, EXAMPLE, learner="ewc", seed=0)
    write(tmp_path, None, status="failed", learner="hope", seed=0)
    (table,) = _tables(tmp_path, ["acc"])
    assert "| hope | 0 | none (failed 0) | n/a |" in table_markdown(table)
    assert "acc" not in _row(table, "ewc").best  # one row with a value: nothing to mark
    written = write_report(load_runs(tmp_path), tmp_path / "out", ["acc"])
    assert {f.table_slug for f in written.figures} == {"split-toy-class-il"}
    assert not any("hope" in str(f.png) for f in written.figures)


# ----------------------------------------------------------------------------------------------
# A lower-is-better measure (bits per character) goes through the same table by declaration

BPC_WORSE = BPC_EXAMPLE.copy()
BPC_WORSE[3] += 0.5  # every task ends 0.5 bits/char worse than in BPC_EXAMPLE


def _bpc_table():
    runs = bpc_runs({"a": [BPC_EXAMPLE, BPC_EXAMPLE + 0.1], "b": [BPC_WORSE, BPC_WORSE + 0.1]})
    (table,) = build_tables(group_runs(runs), NAMES + ["rem"])
    return table


def test_bpc_table_bolds_the_lowest_and_shows_bits_per_character():
    table = _bpc_table()
    md = table_markdown(table)
    assert "| learner | n | seeds | acc ↓ | bwt ↑ | forgetting ↓ | learning\\_acc ↓ |" in md
    # a: acc (2.2333 + 2.3333) / 2 = 2.2833, SEM 0.1 / 2 = 0.05; bwt -0.7; forgetting 0.75; learning_acc 5.3/3 + 0.05
    assert "| a | 2 | 0, 1 | **2.283** ± 0.050 | **-0.700** ± 0.000 | **0.750** ± 0.000 | **1.817** ± 0.050 |" in md
    # b: acc 2.7833; bwt ((2.0 - 3.5) + (1.8 - 2.7)) / 2 = -1.2; forgetting (1.6 + 0.9) / 2 = 1.25; learning (2.0+1.8+2.0)/3
    assert "| b | 2 | 0, 1 | 2.783 ± 0.050 | -1.200 ± 0.000 | 1.250 ± 0.000 | 1.983 ± 0.050 |" in md
    assert "in bits/char;" in md and "final average bits per character" in md
    assert "Not reported: rem (not defined in class\\_il or for bits per character)." in md
    tex = table_latex(table)
    assert r"acc $\downarrow$" in tex and r"\textbf{2.283} $\pm$ 0.050" in tex
    row = next(r for r in csv.DictReader(io.StringIO(table_csv(table))) if r["learner"] == "a")
    assert float(row["acc_mean"]) == pytest.approx(6.7 / 3 + 0.05)  # stored units, no x100
    assert row["acc_best"] == "True"


def test_bpc_report_writes_html_and_figures_in_bits_per_character(tmp_path):
    from clbench import plots

    runs = bpc_runs({"a": [BPC_EXAMPLE, BPC_EXAMPLE + 0.1], "b": [BPC_WORSE, BPC_WORSE + 0.1]}, tmp_path)
    written = write_report(runs, tmp_path / "out", ["acc", "forgetting"], figures=False)
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<strong>2.283</strong> ± 0.050" in page and "acc ↓" in page
    assert "Bits per character are shown as stored" in page and "lower is better; mean over tasks of the bits" in page
    (table,) = written.tables
    entries = [(r.label, r.group) for r in table.rows]
    styles = plot_styles([label for label, _ in entries])
    scatter = plots.plasticity_stability(entries, styles).axes[0]
    assert scatter.get_xlabel() == "forgetting (bits/char) ↓"
    assert scatter.get_ylabel() == "learning bpc (bits/char) ↓"
    assert any(t.get_text() == "↙ better" for t in scatter.texts)
    bars = plots.forgetting_bwt(entries, styles).axes[0]
    assert sorted(p.get_width() for p in bars.patches) == pytest.approx([0.75, 1.25])  # not x100
    heat = plots.heatmap("a", table.rows[0].group)
    # mean matrix = BPC_EXAMPLE + 0.05, two decimals; brighter (reversed viridis) is lower
    assert {"8.05", "3.05", "1.55"} <= {t.get_text() for t in heat.axes[0].texts}
    assert heat.axes[1].get_ylabel() == "bpc (bits/char)"


def test_the_suite_prints_the_report_table(root):
    """One forgetting table: after a suite, the same table, metrics and captions as `clbench report`."""
    groups = group_runs(load_runs(root))
    suite_table = format_table(groups)
    assert suite_table == render_tables(build_tables(groups, metrics.HEADLINE), "markdown").rstrip("\n")
    assert "| learner | n | seeds | acc ↑ | bwt ↑ | forgetting ↓ | learning\\_acc ↑ |" in suite_table
    assert "Not reported: fwt (not defined in class\\_il)." in suite_table


def test_results_frame_is_tidy_and_agrees_with_the_tables(root):
    from clbench import results_frame

    frame = results_frame(root)
    assert len(frame) == 6 * 5 * 4  # 6 finished runs x 5 rows (untrained + 4 tasks) x 4 tasks
    assert {"run_id", "status", "seed", "learner.name", "learner.fields.lr", "scenario.protocol", "measure",
            "after_task", "eval_task", "accuracy", "n_samples"} <= set(frame.columns)
    assert set(frame["status"]) == {"ok"} and set(frame["measure"]) == {"accuracy"}
    final = frame[frame["after_task"] == 4].groupby(["learner.name", "seed"])["accuracy"].mean()
    assert final["ewc", 1] == pytest.approx(metrics.acc(shifted(0.02)))
    (table,) = _tables(root, ["acc"])
    assert final["ewc"].mean() == pytest.approx(_row(table, "ewc").cells["acc"].mean)
    with_failed = results_frame(root, include_failed=True)
    failed = with_failed[with_failed["status"] != "ok"]
    assert len(failed) == 1 and failed["status"].iloc[0].startswith("status failed")
    assert failed["learner.name"].iloc[0] == "finetune" and np.isnan(failed["accuracy"].iloc[0])


def test_list_metrics_reads_the_records():
    out = CliRunner().invoke(app, ["list", "metrics"]).output.splitlines()
    line = {row.split()[0]: row for row in out}
    assert "level" in line["acc"] and "higher is better (lower for bpc)" in line["acc"]
    assert "change" in line["forgetting"] and "lower is better" in line["forgetting"] and "bpc" not in line["forgetting"]
    assert line["fwt"].endswith("[n/a in class_il]") and line["rem"].endswith("[only for accuracy]")
    assert set(line) - {"measures:"} == set(metrics.METRICS)
