"""Avalanche interoperability: its strategies as clbench learners (`avalanche:EWC`), and parity of
clbench's learners with Avalanche's on identical streams.

Parity runs Avalanche as its users do: a stream from `benchmark_from_datasets` over the same
tensors, the strategy's own training loop and data loaders, its own evaluation and metrics.
Both sides start from the same initial weights (same seed, same backbone), use the same
optimiser, hyperparameters and task order, and mask the same logits in class-IL training. For
the same data order, clbench's learner replays the order in which Avalanche's loader actually
visited the samples (recorded as it ran), so nothing in Avalanche is changed.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from clbench import metrics
from clbench.errors import UsageError
from clbench.optim import build_optimizer
from clbench.learners.ewc import EWC
from clbench.learners.finetune import Finetune
from clbench.learners.replay import Replay
from clbench.models import build_backbone
from clbench.scenario_names import scenario_config
from clbench.runner import run, seed_everything
from clbench.scenario import build_scenario

pytestmark = [pytest.mark.skipif(importlib.util.find_spec("avalanche") is None,
                                 reason="the avalanche extra is not installed (scripts/setup.sh installs it)"),
              pytest.mark.slow]  # importing Avalanche alone takes ~10 s; parity runs train both libraries

CLBENCH = [sys.executable, "-m", "clbench.cli"]


def clbench(*args, cwd=None):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([*CLBENCH, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


@pytest.fixture(scope="module")
def av():
    """Avalanche's modules (imported once; the import takes ~10 s and changes warning filters)."""
    from clbench.learners.avalanche.adapter import UNNEEDED_SOLVERS, _without

    with warnings.catch_warnings(record=True), _without(*UNNEEDED_SOLVERS):  # as the adapter imports it: no leak report at exit
        import avalanche.training as training
        from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
        from avalanche.benchmarks.scenarios.supervised import with_classes_timeline
        from avalanche.benchmarks.scenarios.task_aware import with_task_labels
        from avalanche.benchmarks.utils import DataAttribute
        from avalanche.benchmarks.utils.classification_dataset import TaskAwareClassificationDataset
        from avalanche.evaluation.metrics import accuracy_metrics, forgetting_metrics
        from avalanche.training.plugins import EvaluationPlugin, SupervisedPlugin
    return type("Avalanche", (), dict(
        training=training, benchmark_from_datasets=benchmark_from_datasets,
        with_classes_timeline=with_classes_timeline, with_task_labels=with_task_labels,
        DataAttribute=DataAttribute, Dataset=TaskAwareClassificationDataset, accuracy_metrics=accuracy_metrics,
        forgetting_metrics=forgetting_metrics, EvaluationPlugin=EvaluationPlugin, SupervisedPlugin=SupervisedPlugin))


@pytest.fixture(scope="module")
def digits():
    return {p: build_scenario(scenario_config("split-digits", p)) for p in ("class_il", "domain_il")}


# -- a stock Avalanche run ------------------------------------------------------------------------

@dataclass
class AvalancheRun:
    matrix: np.ndarray              # rows 1..T: accuracy on every task after each experience (Avalanche's metric)
    stream_forgetting: float        # Avalanche's StreamForgetting after the last experience
    exp_forgetting: dict[int, float]
    orders: list[list[int]]         # the sample order of every training epoch, as Avalanche's loader visited it
    model: torch.nn.Module


def avalanche_run(av, scenario, strategy: str, seed: int, epochs: int, optimizer: str = "adam",
                  lr: float = 1e-3, batch_size: int = 32, **strategy_args) -> AvalancheRun:
    """`strategy` trained on `scenario` the Avalanche way, evaluated on the test stream after every experience."""
    from clbench.learners.avalanche.adapter import UnitMaskedCrossEntropy

    class Recorded(torch.utils.data.TensorDataset):
        def __getitem__(self, i):
            if recorder.on:
                recorder.orders[-1].append(int(i))
            return super().__getitem__(i)

    class Recorder(av.SupervisedPlugin):
        def __init__(self):
            super().__init__()
            self.on, self.orders = False, []

        def before_training_epoch(self, strategy, **kwargs):
            self.orders.append([])
            self.on = True

        def after_training_epoch(self, strategy, **kwargs):
            self.on = False

    def dataset(x, y, recorded):
        data = Recorded(x, y) if recorded else torch.utils.data.TensorDataset(x, y)
        return av.Dataset([data], data_attributes=[
            av.DataAttribute(y.tolist(), "targets"),
            av.DataAttribute([0] * len(y), "targets_task_labels", use_in_getitem=True)])

    recorder = Recorder()
    seed_everything(seed)
    model = build_backbone("mlp", scenario.spec.input_shape, scenario.n_outputs, (100, 100))
    opt = build_optimizer(optimizer, model.parameters(), lr)  # the optimiser clbench's learners build
    criterion = UnitMaskedCrossEntropy(scenario.n_outputs, scenario.protocol)
    benchmark = av.with_classes_timeline(av.with_task_labels(av.benchmark_from_datasets(
        train=[dataset(t.x_train, t.y_train, True) for t in scenario],
        test=[dataset(t.x_test, t.y_test, False) for t in scenario])))
    with warnings.catch_warnings(record=True):
        evaluator = av.EvaluationPlugin(av.accuracy_metrics(experience=True),
                                        av.forgetting_metrics(experience=True, stream=True), loggers=[])
        strategy = getattr(av.training, strategy)(
            model=model, optimizer=opt, criterion=criterion, train_mb_size=batch_size, train_epochs=epochs,
            eval_mb_size=1024, device="cpu", evaluator=evaluator, plugins=[recorder], **strategy_args)
        rows = []
        for i, experience in enumerate(benchmark.train_stream):
            criterion.allow(scenario[i].classes)
            strategy.train(experience, reset_optimizer_state=True)
            with torch.random.fork_rng():  # evaluation draws seeds for its loaders; keep training's stream
                result = strategy.eval(benchmark.test_stream)
            rows.append([result[f"Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp{j:03d}"] for j in range(len(scenario))])
    exp_forgetting = {j: result[f"ExperienceForgetting/eval_phase/test_stream/Task000/Exp{j:03d}"]
                      for j in range(len(scenario) - 1)}
    return AvalancheRun(np.array(rows), result["StreamForgetting/eval_phase/test_stream"], exp_forgetting,
                        recorder.orders, strategy.model)


def in_order(cls):
    """`cls` taking its minibatches in recorded orders, one per epoch, instead of shuffling."""
    @dataclass
    class InOrder(cls):
        orders: list = field(default_factory=list)

        def shuffled(self, *tensors):
            order = torch.tensor(self.orders.pop(0))
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                yield tuple(t[idx] for t in tensors)

    return InOrder


def max_weight_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(float((p - q).detach().abs().max()) for p, q in zip(a.parameters(), b.parameters()))


# -- installation, listing, errors ---------------------------------------------------------------

def test_adapter_imports_avalanche_and_restores_warning_filters():
    """The import smoke test: a torchvision built for another torch fails here ("operator
    torchvision::nms does not exist"), and importing Avalanche must not change global warning filters."""
    code = ("import warnings\n"
            "from clbench.learners.avalanche.adapter import learner_class\n"
            "before = list(warnings.filters)\n"
            "cls = learner_class('EWC')\n"
            "import sys, torchvision.ops\n"
            "assert 'avalanche.training' in sys.modules\n"
            "assert list(warnings.filters) == before, 'warning filters changed'\n"
            "print(cls.__name__, sorted(cls.strategy_args))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "EWC ['decay_factor', 'ewc_lambda', 'keep_importance_data', 'mode']" in out.stdout


def test_list_learners_names_every_strategy_without_importing_avalanche(av):
    code = ("import sys; sys.argv=['clbench','list','learners']\n"
            "from clbench.cli import app\n"
            "try: app()\nexcept SystemExit: pass\n"
            "assert 'avalanche' not in sys.modules and 'torch' not in sys.modules\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.endswith("ok\n"), out.stderr
    listed = {line.split()[0].removeprefix("avalanche:") for line in out.stdout.splitlines()
              if line.startswith("avalanche:")}
    from avalanche.training.templates import BaseTemplate
    exported = {name for name, obj in vars(av.training).items()
                if isinstance(obj, type) and issubclass(obj, BaseTemplate) and not name.endswith("Template")}
    assert listed == exported and {"Naive", "EWC", "Replay", "GEM", "LwF"} <= listed
    assert "Elastic Weight Consolidation" in out.stdout


def test_unknown_strategy_is_a_one_line_did_you_mean_error():
    out = clbench("run", "--learner", "avalanche:EWK", "--quiet")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1 and "did you mean 'EWC'" in out.stderr


def test_bad_arguments_are_one_line_errors_naming_the_problem(digits):
    from clbench.configs import execute, resolve

    scenario = scenario_config("split-digits")
    cases = [({"ewc_lamda": "1"}, "unknown field 'ewc_lamda' of learner 'avalanche:EWC'; did you mean 'ewc_lambda'"),
             ({"ewc_lambda": "abc"}, "ewc_lambda: 'abc' is not a valid float"),
             ({}, "avalanche:EWC needs ewc_lambda: --set ewc_lambda=..."),
             ({"batch_size": "0", "ewc_lambda": "1"}, "batch_size must be positive")]
    for overrides, message in cases:
        with pytest.raises(UsageError, match=re.escape(message)) as err:
            resolve(scenario, "avalanche:EWC", overrides, 0)
        assert "\n" not in str(err.value)
    # Checked by Avalanche when the strategy is built, and while it trains.
    for ref, overrides, message in [
            ("avalanche:EWC", {"ewc_lambda": "1", "mode": "bogus", "epochs": "1"},
             "avalanche:EWC rejected its arguments .*'mode': 'bogus'.*AssertionError: Mode must be separate or online"),
            ("avalanche:Replay", {"mem_size": "-5", "epochs": "1"},
             "avalanche:Replay failed training on task 1 with arguments {'mem_size': -5}: RuntimeError")]:
        config = resolve(scenario, ref, overrides, 0)
        with pytest.raises(UsageError, match=message) as err:
            execute(config)
        assert "\n" not in str(err.value)
    with pytest.raises(UsageError, match="avalanche:ICaRL needs feature_extractor, classifier"):
        resolve(scenario, "avalanche:ICaRL", {}, 0)


def test_the_strategy_gets_batch_size_epochs_and_device_explicitly(digits):
    from clbench.fields import make_learner
    from clbench.registry import load_learner

    learner = make_learner(load_learner("avalanche:Replay"), {"mem_size": "150", "batch_size": "16", "epochs": "3",
                                                              "device": "cpu"}, "avalanche:Replay")
    learner.setup(digits["class_il"].spec, 0)
    strategy = learner.strategy_
    assert (strategy.train_mb_size, strategy.train_epochs, str(strategy.device)) == (16, 3, "cpu")
    assert type(strategy).__name__ == "Replay" and strategy.plugins[0].mem_size == 150
    defaults = load_learner("avalanche:Naive")()
    assert (defaults.batch_size, defaults.epochs) == (32, 10)  # not Avalanche's 1 and 1


def test_cli_run_of_avalanche_replay_writes_a_normal_run(tmp_path):
    out = clbench("run", "--scenario", "split-digits", "--learner", "avalanche:Replay", "--set", "mem_size=200",
                  "--results", str(tmp_path), "--quiet")
    assert out.returncode == 0, out.stderr
    assert "avalanche:Replay on split-digits (class_il), seed 0" in out.stdout and "after 5" in out.stdout
    from clbench.results import matrix_from_rows, read_run

    (run_dir,) = tmp_path.iterdir()
    record, rows = read_run(run_dir)
    learner = record["config"]["learner"]
    assert learner["name"] == "avalanche:Replay" and learner["class"] == "clbench.learners.avalanche:Replay"
    assert learner["fields"]["mem_size"] == 200 and learner["fields"]["batch_size"] == 32
    final = matrix_from_rows(rows)[-1]
    assert final.mean() > 0.6  # replay keeps old tasks (fine-tuning ends near 0.19)


def test_suite_file_sweeps_a_strategy_argument(tmp_path):
    from clbench.suite_file import load_suite

    path = tmp_path / "s.toml"
    path.write_text('seeds = [0]\n[[scenario]]\nname = "split-digits"\n'
                    '[learner.aval_ewc]\nclass = "avalanche:EWC"\newc_lambda = [1.0, 10.0]\nepochs = 1\n')
    suite = load_suite(path)
    fields = [r.config["learner"]["fields"] for r in suite.runs]
    assert [f["ewc_lambda"] for f in fields] == [1.0, 10.0] and {f["epochs"] for f in fields} == {1}
    path.write_text(path.read_text().replace("ewc_lambda = [1.0, 10.0]", "ewc_lambda = [1.0, 10.0]\nmem_size = 3"))
    with pytest.raises(UsageError, match="mem_size"):
        load_suite(path)


def test_adapter_passes_the_conformance_battery():
    from clbench.fields import make_learner
    from clbench.registry import load_learner
    from clbench.testing import check_learner

    check_learner(make_learner(load_learner("avalanche:Replay"), {"epochs": "2", "device": "cpu"}, "avalanche:Replay"))


def test_unit_mask_equals_avalanches_masked_cross_entropy(av):
    from avalanche.training.losses import MaskedCrossEntropy

    from clbench.learners.avalanche.adapter import UnitMaskedCrossEntropy

    ours, theirs = UnitMaskedCrossEntropy(10, "class_il"), MaskedCrossEntropy(mask="seen")
    logits, y = torch.randn(64, 10), torch.randint(0, 4, (64,))
    for classes in ((0, 1), (2, 3)):
        ours.allow(classes)
        theirs._adaptation(list(classes))
    assert torch.allclose(ours(logits, y), theirs(logits, y), atol=1e-6)
    assert not torch.allclose(ours(logits, y), torch.nn.functional.cross_entropy(logits, y), atol=1e-3)


# -- parity ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["class_il", "domain_il"])
def test_finetune_gives_avalanche_naives_matrix_and_weights(av, digits, protocol):
    scenario = digits[protocol]
    for seed in (0, 1):
        ref = avalanche_run(av, scenario, "Naive", seed, epochs=3)
        learner = in_order(Finetune)(epochs=3, device="cpu", orders=list(ref.orders))
        matrix = run(scenario, learner, seed).matrix
        np.testing.assert_array_equal(matrix[1:], ref.matrix)
        assert max_weight_difference(learner.model_, ref.model) == 0.0


@pytest.mark.parametrize("protocol", ["class_il", "domain_il"])
def test_ewc_gives_avalanche_ewcs_matrix_and_weights(av, digits, protocol):
    """Avalanche's EWC: importance = mean over minibatches (train_mb_size, data order, true labels)
    of the squared gradient of the minibatch loss; penalty λ Σ F (θ − θ*)². clbench's EWC with
    fisher_batch_size = batch size, fisher_labels = "true", fisher_samples = 0 (all) and lam = 2λ
    (its penalty is lam/2 · Σ F (θ − θ*)²) computes the same. SGD, so that rounding differences
    between the two ways of summing the penalty stay at rounding size (Adam's normalisation
    would magnify them)."""
    scenario, lam = digits[protocol], 30.0
    ref = avalanche_run(av, scenario, "EWC", 0, epochs=3, optimizer="sgd", lr=0.1, ewc_lambda=lam)

    def clbench_ewc(**changes):
        settings = dict(epochs=3, device="cpu", optimizer="sgd", lr=0.1, lam=2 * lam, fisher_labels="true",
                        fisher_samples=0, fisher_batch_size=32, orders=list(ref.orders))
        learner = in_order(EWC)(**{**settings, **changes})
        return run(scenario, learner, 0).matrix, learner.model_

    matrix, model = clbench_ewc()
    np.testing.assert_array_equal(matrix[1:], ref.matrix)
    assert max_weight_difference(model, ref.model) < 1e-5
    # The penalty matters here, and so do each of the conventions matched above.
    for wrong in (dict(lam=0.0), dict(lam=lam), dict(fisher_batch_size=1)):
        assert max_weight_difference(clbench_ewc(**wrong)[1], ref.model) > 1e-3, wrong


def test_replay_matches_avalanche_replay_in_final_accuracy(av, digits):
    scenario = digits["class_il"]
    theirs = [avalanche_run(av, scenario, "Replay", seed, epochs=10, mem_size=200).matrix[-1].mean()
              for seed in range(3)]
    ours = [run(scenario, Replay(epochs=10, device="cpu", buffer_size=200), seed).matrix[-1].mean()
            for seed in range(3)]
    assert abs(np.mean(ours) - np.mean(theirs)) <= 0.05, (ours, theirs)
    assert min(ours + theirs) > 0.7  # well above fine-tuning's ~0.19: both really replay


def test_forgetting_avalanche_variant_is_avalanches_reported_forgetting(av, digits):
    """Avalanche's forgetting: accuracy right after training on a task minus the final one, averaged
    over tasks 1..T-1. clbench's `forgetting_avalanche` (forgetting(R, "first_minus_last")) on
    clbench's own matrix must equal the number Avalanche reports; the default (Chaudhry) differs."""
    scenario = digits["domain_il"]
    ref = avalanche_run(av, scenario, "Naive", 2, epochs=3)  # seed 2: a task improves after it was learned
    matrix = run(scenario, in_order(Finetune)(epochs=3, device="cpu", orders=list(ref.orders)), 2).matrix
    assert metrics.METRICS["forgetting_avalanche"](matrix) == pytest.approx(ref.stream_forgetting, abs=1e-12)
    T = len(scenario)
    for j, value in ref.exp_forgetting.items():
        assert matrix[j + 1, j] - matrix[T, j] == pytest.approx(value, abs=1e-12)
    assert abs(metrics.forgetting(matrix) - ref.stream_forgetting) > 1e-3


def test_adapter_runs_naive_exactly_as_avalanche_runs_it(av, digits):
    """`avalanche:Naive` through clbench's runner equals a stock Avalanche run on the same seed:
    the adapter feeds tasks as the experiences `benchmark_from_datasets` makes, and clbench's
    evaluation gives Avalanche's accuracies."""
    from clbench.fields import make_learner
    from clbench.registry import load_learner

    scenario = digits["class_il"]
    ref = avalanche_run(av, scenario, "Naive", 2, epochs=3)
    learner = make_learner(load_learner("avalanche:Naive"), {"epochs": "3", "device": "cpu"}, "avalanche:Naive")
    matrix = run(scenario, learner, 2).matrix
    np.testing.assert_array_equal(matrix[1:], ref.matrix)
    assert max_weight_difference(learner.strategy_.model, ref.model) == 0.0


# -- parity of the native learners with Avalanche's implementations ------------------------------
#
# Final accuracy (mean over tasks after the last one), mean over seeds 0-2, 10 epochs, Adam 1e-3,
# batches of 32, the MLP 100-100 from the same initial weights; clbench's fields are set to the
# conventions of Avalanche's implementation where the two differ (see each learner's docstring).
# `floor`: both must end above it, so the method visibly differs from fine-tuning (0.19 in class_il,
# 0.80-0.82 in domain_il) and the comparison is not two fine-tunings agreeing.

SI_LAMBDA = 1e4
NATIVE_PARITY = {  # name: (clbench fields, Avalanche strategy, its arguments, protocol, floor or ceiling)
    "si": (dict(c=SI_LAMBDA / 2, xi=1e-7, clip=0.001), "SynapticIntelligence",
           dict(si_lambda=SI_LAMBDA, eps=1e-7), "domain_il", ("below", 0.78)),
    "mas": (dict(lam=1.0, accumulate="average", alpha=0.5, importance_batch_size=32), "MAS",
            dict(lambda_reg=1.0, alpha=0.5), "domain_il", None),
    "lwf": (dict(alpha=1.0, temperature=2.0), "LwF", dict(alpha=1.0, temperature=2.0), "domain_il", None),
    "agem": (dict(memory_per_task=250, sample_size=256), "AGEM", dict(patterns_per_exp=250, sample_size=256),
             "class_il", ("above", 0.3)),
    "der": (dict(buffer_size=200, alpha=0.1, store="task_end"), "DER", dict(mem_size=200, alpha=0.1, beta=0.0),
            "class_il", ("above", 0.3)),
    "derpp": (dict(buffer_size=200, alpha=0.1, beta=0.5, store="task_end", shared_memory_batch=True), "DER",
              dict(mem_size=200, alpha=0.1, beta=0.5), "class_il", ("above", 0.7)),
    "er-ace": (dict(buffer_size=200, replay_batch_size=10, class_balanced=True, mask_logits=False), "ER_ACE",
               dict(mem_size=200, batch_size_mem=10), "class_il", ("above", 0.7)),
    "gdumb": (dict(buffer_size=200), "GDumb", dict(mem_size=200), "class_il", ("above", 0.7)),
}


@pytest.fixture
def avalanche_si_fixed(monkeypatch):
    """Avalanche 0.6's SynapticIntelligence snapshots the weights with `param.detach().cpu().flatten()`,
    which on the CPU is a view of the live parameter, not a copy: after the optimiser's in-place
    step the "old" and "new" weights are the same tensor, the path integral is 0 and SI is
    fine-tuning (test_avalanche_si_on_cpu_is_naive). The parity run copies the snapshot."""
    from avalanche.training.plugins.synaptic_intelligence import SynapticIntelligencePlugin

    def extract_weights(model, target, excluded_parameters):
        for name, param in SynapticIntelligencePlugin.allowed_parameters(model, excluded_parameters):
            target[name].data = param.detach().cpu().flatten().clone()

    monkeypatch.setattr(SynapticIntelligencePlugin, "extract_weights", staticmethod(extract_weights))


def test_avalanche_si_on_cpu_is_naive(av, digits):
    scenario = digits["domain_il"]
    si = avalanche_run(av, scenario, "SynapticIntelligence", 0, epochs=2, si_lambda=1e6, eps=1e-7)
    naive = avalanche_run(av, scenario, "Naive", 0, epochs=2)
    np.testing.assert_array_equal(si.matrix, naive.matrix)


def _report(name, protocol, ours, theirs):
    print(f"\nparity {name} ({protocol}): clbench {np.mean(ours):.3f} {np.round(ours, 3).tolist()}, "
          f"Avalanche {np.mean(theirs):.3f} {np.round(theirs, 3).tolist()}, "
          f"difference {np.mean(ours) - np.mean(theirs):+.3f}")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(NATIVE_PARITY))
def test_native_learner_matches_avalanche_in_final_accuracy(av, avalanche_si_fixed, name):
    from clbench.registry import load_learner

    fields, strategy, args, protocol, bound = NATIVE_PARITY[name]
    scenario = build_scenario(scenario_config("split-digits", protocol))
    theirs = [avalanche_run(av, scenario, strategy, seed, epochs=10, **args).matrix[-1].mean() for seed in range(3)]
    ours = [run(scenario, load_learner(name)(epochs=10, device="cpu", **fields), seed).matrix[-1].mean()
            for seed in range(3)]
    _report(name, protocol, ours, theirs)
    assert abs(np.mean(ours) - np.mean(theirs)) <= 0.05, (ours, theirs)
    if bound is not None:
        side, value = bound
        assert all((v > value) if side == "above" else (v < value) for v in ours + theirs), (ours, theirs)


def avalanche_icarl_final(av, scenario, seed: int, epochs: int, memory_size: int) -> float:
    """Avalanche's ICaRL on `scenario`: the backbone split into feature extractor and last layer, a
    stream from `nc_benchmark` (ICaRL reads the benchmark's classes per experience, which
    `benchmark_from_datasets` does not give) with the scenario's class order; final accuracy."""
    from avalanche.benchmarks.scenarios.deprecated.generators import nc_benchmark

    def dataset(tasks, split):
        x = torch.cat([getattr(t, f"x_{split}") for t in tasks])
        y = torch.cat([getattr(t, f"y_{split}") for t in tasks])
        return av.Dataset([torch.utils.data.TensorDataset(x, y)], data_attributes=[
            av.DataAttribute(y.tolist(), "targets"),
            av.DataAttribute([0] * len(y), "targets_task_labels", use_in_getitem=True)])

    seed_everything(seed)
    model = build_backbone("mlp", scenario.spec.input_shape, scenario.n_outputs, (100, 100))
    order = [c for task in scenario for c in task.classes]
    benchmark = nc_benchmark(dataset(scenario, "train"), dataset(scenario, "test"), n_experiences=len(scenario),
                             task_labels=False, fixed_class_order=order, seed=seed)
    with warnings.catch_warnings(record=True):
        strategy = av.training.ICaRL(
            feature_extractor=model[:-1], classifier=model[-1], optimizer=build_optimizer("adam", model.parameters(), 1e-3),
            memory_size=memory_size, buffer_transform=None, fixed_memory=True, train_mb_size=32, train_epochs=epochs,
            eval_mb_size=1024, device="cpu", evaluator=av.EvaluationPlugin(av.accuracy_metrics(experience=True), loggers=[]))
        for experience in benchmark.train_stream:
            strategy.train(experience, reset_optimizer_state=True)
        result = strategy.eval(benchmark.test_stream)
    return float(np.mean([result[f"Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp{j:03d}"] for j in range(len(scenario))]))


@pytest.mark.slow
def test_icarl_matches_avalanche_icarl_in_final_accuracy(av, digits):
    from clbench.learners.icarl import ICaRL

    scenario = digits["class_il"]
    theirs = [avalanche_icarl_final(av, scenario, seed, epochs=10, memory_size=200) for seed in range(3)]
    ours = [run(scenario, ICaRL(epochs=10, memory_size=200, device="cpu"), seed).matrix[-1].mean() for seed in range(3)]
    _report("icarl", "class_il", ours, theirs)
    assert abs(np.mean(ours) - np.mean(theirs)) <= 0.05, (ours, theirs)
    assert min(ours + theirs) > 0.7
