"""`check_learner`: the conformance battery any learner can run on itself, in the spirit of
scikit-learn's `check_estimator`. It checks the contract of `clbench.learner`: fields as
hyperparameters, no learned state at construction, logits of the right shape, a `predict` that
is deterministic and changes nothing, evaluation that cannot influence training, determinism
for a seed, and above-chance learning under all three protocols (under those the learner's
`protocols` attribute names, and a one-line refusal of the others). A sequence learner (a language
model, whose `predict` gives next-token logits (B, T, 256)) is checked on a small text stream
instead: the same contract, plus no look at future tokens and fewer bits per character on each
domain after learning it.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from clbench.errors import UsageError
from clbench.learner import supported_protocols
from clbench.registry import SEQUENCE_BACKBONES
from clbench.runner import evaluate, run, seed_everything
from clbench.scenario import Scenario, build_scenario, text
from clbench.scenario_names import PROTOCOLS

CHECK_TASKS = 3


LEARNS_MARGIN = 0.1  # a learning check wants accuracy above chance + this on every task right after it
LEARNS_TEXT_MARGIN = 1.0  # ... and on a text stream, bits per character that fall by more than this


@dataclass
class CheckResult:
    """One check's verdict. `warning`: the learner works but learned little (a learning check below
    its threshold, as a strongly regularised method may): reported with the numbers, not a failure."""

    name: str
    passed: bool
    detail: str = ""
    warning: bool = False

    @property
    def verdict(self) -> str:
        return "FAIL" if not self.passed else "WARN" if self.warning else "PASS"


def check_scenario(protocol: str) -> Scenario:
    """The small stream the battery runs on: the first three tasks of split-digits."""
    return build_scenario({"builder": "split", "dataset": "digits", "n_tasks": 5,
                           "protocol": protocol, "name": "check-digits"})[:CHECK_TASKS]


def check_text_scenario() -> Scenario:
    """The small text stream the battery runs sequence learners on: 8 KiB of each embedded domain."""
    return text(["pydoc", "stdlib", "tables"], train_bytes=8192, eval_bytes=2048, context=32, name="check-text")


def is_sequence_learner(learner: Any) -> bool:
    """Whether the battery checks `learner` as a language model: a sequence backbone, or `sequence = True`."""
    return bool(getattr(learner, "sequence", False)) or getattr(learner, "backbone", None) in SEQUENCE_BACKBONES


def _same(a: Any, b: Any) -> bool:
    """Deep equality of learner state: tensors, modules, optimisers and generators included."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and torch.equal(a.cpu(), b.cpu()))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, torch.nn.Module):
        return isinstance(b, torch.nn.Module) and a.training == b.training and _same(a.state_dict(), b.state_dict())
    if isinstance(a, torch.optim.Optimizer):
        return isinstance(b, torch.optim.Optimizer) and _same(a.state_dict(), b.state_dict())
    if isinstance(a, torch.Generator):
        return isinstance(b, torch.Generator) and torch.equal(a.get_state(), b.get_state())
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if hasattr(a, "__dict__") and not isinstance(a, type):
        return type(a) is type(b) and _same(vars(a), vars(b))
    try:
        return bool(a == b)
    except Exception:
        return a is b


def _snapshot(learner: Any) -> dict:
    return copy.deepcopy(vars(learner))


def _check_interface(make: Callable[[], Any]) -> CheckResult:
    learner = make()
    missing = [m for m in ("setup", "fit_task", "predict") if not callable(getattr(learner, m, None))]
    if missing:
        return CheckResult("interface", False, f"missing methods: {', '.join(missing)}")
    return CheckResult("interface", True, "setup, fit_task and predict exist")


def _check_fields(make: Callable[[], Any]) -> CheckResult:
    learner = make()
    if not dataclasses.is_dataclass(learner):
        return CheckResult("hyperparameters_are_fields", False,
                           "not a dataclass: hyperparameters must be dataclass fields with defaults "
                           "(so --set and suite files can set them)")
    no_default = [f.name for f in dataclasses.fields(learner)
                  if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if no_default:
        return CheckResult("hyperparameters_are_fields", False, f"fields without defaults: {no_default}")
    return CheckResult("hyperparameters_are_fields", True, f"{len(dataclasses.fields(learner))} fields")


def _check_no_state_at_construction(make: Callable[[], Any]) -> CheckResult:
    state = [k for k in vars(make()) if k.endswith("_") and not k.startswith("__")]
    if state:
        return CheckResult("no_learned_state_at_construction", False, f"attributes set in __init__: {state}")
    return CheckResult("no_learned_state_at_construction", True, "")


def _check_predict(make: Callable[[], Any], scenario: Scenario) -> list[CheckResult]:
    learner = make()
    seed_everything(0)
    learner.setup(scenario.spec, 0)
    learner.fit_task(scenario[0].for_training())
    task = scenario[0]
    x = task.x_test[:16]
    before = _snapshot(learner)
    first = learner.predict(x, task_id=task.known_task_id)
    second = learner.predict(x, task_id=task.known_task_id)
    results = []
    expected = (len(x), *x.shape[1:2], scenario.n_outputs) if _measure(scenario) == "bpc" else (len(x), scenario.n_outputs)
    shape_ok = (isinstance(first, torch.Tensor) and tuple(first.shape) == expected
                and first.is_floating_point() and bool(torch.isfinite(first).all()))
    got = tuple(first.shape) if isinstance(first, torch.Tensor) else type(first).__name__
    results.append(CheckResult("predict_returns_logits", shape_ok,
                               f"expected finite float logits of shape {expected}, got {got}"
                               if not shape_ok else f"shape {expected}"))
    same = isinstance(second, torch.Tensor) and torch.equal(first, second)
    results.append(CheckResult("predict_is_deterministic", same, "" if same else "two calls gave different logits"))
    unchanged = _same(before, _snapshot(learner))
    results.append(CheckResult("predict_has_no_side_effects", unchanged,
                               "" if unchanged else "the learner's attributes changed during predict"))
    return results


def _check_evaluation_isolated(make: Callable[[], Any], scenario: Scenario) -> CheckResult:
    evaluated = run(scenario, make(), seed=0).matrix[-1]
    learner = make()
    seed_everything(0)
    learner.setup(scenario.spec, 0)
    for task in scenario:
        learner.fit_task(task.for_training())
    silent = np.array([evaluate(learner, task, _measure(scenario))[0] for task in scenario])
    ok = np.array_equal(evaluated, silent)
    return CheckResult("evaluation_does_not_change_training", ok,
                       "" if ok else f"final row with evaluation after every task {evaluated.round(4).tolist()} "
                                     f"differs from evaluating only at the end {silent.round(4).tolist()}")


def _check_deterministic(make: Callable[[], Any], scenario: Scenario) -> CheckResult:
    a, b = run(scenario, make(), seed=3).matrix, run(scenario, make(), seed=3).matrix
    ok = np.array_equal(a, b)
    return CheckResult("same_seed_same_matrix", ok, "" if ok else "two runs with seed 3 gave different matrices")


def _check_learns(make: Callable[[], Any], protocol: str) -> CheckResult:
    scenario = check_scenario(protocol)
    matrix = run(scenario, make(), seed=0).matrix
    chance = np.array([1 / len(t.classes) for t in scenario])
    threshold = chance + LEARNS_MARGIN
    diag = np.diag(matrix[1:])
    ok = bool(np.all(diag > threshold))
    detail = (f"accuracy on each task right after learning it: {np.round(diag, 3).tolist()}; threshold: above "
              f"{np.round(threshold, 3).tolist()} (chance within a task + {LEARNS_MARGIN})")
    if not ok:
        low = [i + 1 for i in np.flatnonzero(diag <= threshold)]
        detail += f"; below it on task {', '.join(map(str, low))}: low learning, not an interface fault"
    return CheckResult(f"learns_under_{protocol}", True, detail, warning=not ok)


def _check_refuses(make: Callable[[], Any], protocol: str) -> CheckResult:
    """A learner that declares `protocols` without `protocol` refuses it with a one-line UsageError."""
    try:
        run(check_scenario(protocol), make(), seed=0)
    except UsageError as err:
        one_line = "\n" not in str(err) and bool(str(err))
        return CheckResult(f"refuses_{protocol}", one_line, str(err) if one_line else f"not one line: {err!r}")
    return CheckResult(f"refuses_{protocol}", False, f"declares protocols {supported_protocols(make())} "
                                                     f"but ran under {protocol} without an error")


def _measure(scenario: Scenario) -> str:
    return scenario.config.get("measure", "accuracy")


def _check_no_future_tokens(make: Callable[[], Any], scenario: Scenario) -> CheckResult:
    learner = make()
    seed_everything(0)
    learner.setup(scenario.spec, 0)
    learner.fit_task(scenario[0].for_training())
    x = scenario[0].x_test[:4]
    t = x.shape[1] // 2
    changed = x.clone()
    changed[:, t + 1:] = (changed[:, t + 1:] + 1) % scenario.n_outputs
    a, b = learner.predict(x), learner.predict(changed)
    ok = bool(torch.allclose(a[:, :t + 1], b[:, :t + 1], atol=1e-5))
    return CheckResult("no_future_tokens", ok, "" if ok else
                       f"changing tokens after position {t} changed the logits at positions up to {t}")


def _check_learns_text(make: Callable[[], Any], scenario: Scenario) -> CheckResult:
    matrix = run(scenario, make(), seed=0).matrix
    drop = matrix[0] - np.diag(matrix[1:])
    ok = bool(np.all(drop > LEARNS_TEXT_MARGIN))
    detail = (f"bits per character on each domain before training {np.round(matrix[0], 3).tolist()} and right after "
              f"learning it {np.round(np.diag(matrix[1:]), 3).tolist()}; threshold: a fall of more than "
              f"{LEARNS_TEXT_MARGIN} bit")
    if not ok:
        low = [i + 1 for i in np.flatnonzero(drop <= LEARNS_TEXT_MARGIN)]
        detail += f"; below it on domain {', '.join(map(str, low))}: low learning, not an interface fault"
    return CheckResult("learns_each_domain", True, detail, warning=not ok)


def check_learner(learner: Any, raise_on_failure: bool = True,
                  on_result: Callable[[CheckResult], None] | None = None,
                  sequence: bool | None = None) -> list[CheckResult]:
    """Run the conformance battery on a learner instance (it is copied, never trained itself).

    `sequence` checks it as a language model on a text stream (default: `is_sequence_learner`).
    Returns one `CheckResult` per check, each also passed to `on_result` as soon as it is known
    (a live display); with `raise_on_failure`, raises AssertionError naming every failed check.
    Interface faults fail; a learning check below its threshold is a warning (`CheckResult.warning`).
    """
    def make() -> Any:
        return copy.deepcopy(learner)

    results = [_check_interface(make)]
    if on_result is not None:
        on_result(results[0])
    sequence = is_sequence_learner(learner) if sequence is None else sequence
    if results[0].passed:
        scenario = check_text_scenario() if sequence else check_scenario("class_il")
        checks: list[tuple[str, Callable[[], Any]]] = [
            ("hyperparameters_are_fields", lambda: _check_fields(make)),
            ("no_learned_state_at_construction", lambda: _check_no_state_at_construction(make)),
            ("predict", lambda: _check_predict(make, scenario)),
            ("evaluation_does_not_change_training", lambda: _check_evaluation_isolated(make, scenario)),
            ("same_seed_same_matrix", lambda: _check_deterministic(make, scenario)),
        ]
        if sequence:
            checks += [("no_future_tokens", lambda: _check_no_future_tokens(make, scenario)),
                       ("learns_each_domain", lambda: _check_learns_text(make, scenario))]
        else:
            checks += [(f"learns_under_{p}", lambda p=p: _check_learns(make, p)) for p in supported_protocols(learner)]
            checks += [(f"refuses_{p}", lambda p=p: _check_refuses(make, p))
                       for p in PROTOCOLS if p not in supported_protocols(learner)]
        for name, check in checks:
            try:
                outcome = check()
            except Exception as err:  # the verdict names the failure instead of stopping the battery
                outcome = CheckResult(name, False, f"raised {type(err).__name__}: {err}")
            outcome = outcome if isinstance(outcome, list) else [outcome]
            results += outcome
            for r in outcome:
                if on_result is not None:
                    on_result(r)
    failed = [r for r in results if not r.passed]
    if failed and raise_on_failure:
        raise AssertionError("check_learner failed: " + "; ".join(f"{r.name}: {r.detail}" for r in failed))
    return results
