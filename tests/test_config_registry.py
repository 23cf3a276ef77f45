from __future__ import annotations

import textwrap
from importlib.metadata import EntryPoint

import pytest

from clbench import registry
from clbench.fields import coerce, make_learner, parse_assignments, resolve_fields
from clbench.errors import UsageError
from clbench.scenario_names import scenario_config
from clbench.learners.ewc import EWC
from clbench.learners.replay import Replay


def test_short_names_module_refs_and_file_refs(tmp_path):
    assert registry.load_learner("ewc") is EWC
    assert registry.load_learner("clbench.learners.replay:Replay") is Replay
    path = tmp_path / "my_method.py"
    path.write_text(textwrap.dedent('''
        from dataclasses import dataclass
        from clbench.learner import SGDLearner

        @dataclass
        class MyMethod(SGDLearner):
            """My method: fine-tuning with a twist."""
            twist: float = 0.5
    '''))
    cls = registry.load_learner(f"{path}:MyMethod")
    assert cls.__name__ == "MyMethod" and cls().twist == 0.5
    assert registry.describe(registry.resolve_reference(f"{path}:MyMethod")) == "My method: fine-tuning with a twist"
    assert registry.source_sha256(registry.resolve_reference(f"{path}:MyMethod")) is not None
    assert registry.source_sha256("clbench.learners.ewc:EWC") is None


def test_entry_point_learners_are_listed_and_loaded(monkeypatch):
    ep = EntryPoint(name="thirdparty", value="clbench.learners.replay:Replay", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep] if group == registry.ENTRY_POINT_GROUP else [])
    registry.installed_learners.cache_clear()
    try:
        assert registry.learner_names()["thirdparty"] == "clbench.learners.replay:Replay"
        assert registry.load_learner("thirdparty") is Replay
    finally:
        registry.installed_learners.cache_clear()


@pytest.mark.parametrize("ref, message", [
    ("ewcc", "did you mean 'ewc'"),
    ("replya", "did you mean 'replay'"),
    ("clbench.learners.nothere:X", "cannot import module"),
    ("clbench.learners.ewc:EWCC", "did you mean 'EWC'"),
    ("./missing.py:X", "learner file not found"),
    ("a:", "must be a short name"),
])
def test_unknown_references_suggest_close_names(ref, message):
    with pytest.raises(UsageError, match=message):
        registry.load_learner(ref)


def test_named_scenarios_and_protocol_override():
    assert scenario_config("split-digits")["protocol"] == "class_il"
    assert scenario_config("split-digits", "task_il")["protocol"] == "task_il"
    with pytest.raises(UsageError, match="did you mean 'split-digits'"):
        scenario_config("split-digit")
    with pytest.raises(UsageError, match="unknown protocol"):
        scenario_config("split-digits", "classil")


def test_describe_reads_docstrings_without_importing():
    assert registry.describe("clbench.learners.ewc:EWC").startswith("EWC")


@pytest.mark.parametrize("value, tp, expected", [
    ("0.5", float, 0.5), ("3", float, 3.0), (2, float, 2.0), ("7", int, 7),
    ("true", bool, True), ("off", bool, False), ("adam", str, "adam"),
    ("200,100", tuple[int, ...], (200, 100)), ("[50]", tuple[int, ...], (50,)), ([8, 8], tuple[int, ...], (8, 8)),
    ("none", int | None, None), ("4", int | None, 4),
])
def test_coerce_by_field_type(value, tp, expected):
    assert coerce(value, tp, "--set k") == expected


@pytest.mark.parametrize("value, tp", [("abc", float), ("1.5", int), ("maybe", bool), (True, int), ("x,y", tuple[int, ...]), (3, str)])
def test_coerce_rejects_wrong_types(value, tp):
    with pytest.raises(UsageError, match="is not a valid"):
        coerce(value, tp, "--set k")


def test_overrides_are_validated_against_fields():
    assert parse_assignments(["lr=0.05", "widths=200,200"]) == {"lr": "0.05", "widths": "200,200"}
    assert resolve_fields(EWC, {"lam": "10", "online": "yes"}, "ewc") == {"lam": 10.0, "online": True}
    with pytest.raises(UsageError, match="unknown field 'lamda' of learner 'ewc'; did you mean 'lam'"):
        resolve_fields(EWC, {"lamda": "1"}, "ewc")
    with pytest.raises(UsageError, match="expected key=value"):
        parse_assignments(["lr"])
    with pytest.raises(UsageError, match="gamma must be in"):
        make_learner(EWC, {"gamma": "2"}, "ewc")
    learner = make_learner(EWC, {"widths": "64", "lr": "0.01"}, "ewc")
    assert learner.widths == (64,) and learner.lr == 0.01


def test_a_learner_family_registered_as_an_entry_point_resolves_its_prefix(monkeypatch):
    """`PREFIX:NAME` comes from a `clbench.learner_prefixes` entry point, with no special case in the core."""
    import types

    family = types.SimpleNamespace(title="Mine", names=lambda: {"Fast": "a fast one"},
                                   reference=lambda name: "clbench.learners.replay:Replay")
    monkeypatch.setattr(registry, "learner_families", lambda: {"mine": family})
    assert registry.resolve_reference("mine:Fast") == "clbench.learners.replay:Replay"
    assert registry.learner_label("mine:Fast", Replay) == "mine:Fast"
    assert registry.learner_label("clbench.learners.replay:Replay", Replay) == "replay"
