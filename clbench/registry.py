"""Names to objects: short names for built-ins, `package.module:Class`, `path/to/file.py:Class`,
the `clbench.learners` entry-point group, and `avalanche:Strategy` for Avalanche's strategies.
Nothing here imports torch or Avalanche, so `clbench list` stays fast: descriptions and the
names of Avalanche's strategies are read from source files without importing them.
"""
from __future__ import annotations

import ast
import difflib
import functools
import hashlib
import importlib
import importlib.util
import re
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Iterable

from clbench.errors import UsageError

BUILTIN_LEARNERS = {
    "finetune": "clbench.learners.finetune:Finetune",
    "joint": "clbench.learners.joint:Joint",
    "ewc": "clbench.learners.ewc:EWC",
    "replay": "clbench.learners.replay:Replay",
    "hope": "clbench.learners.hope:Hope",
    "transformer": "clbench.learners.transformer:Transformer",
    "hope-lm": "clbench.learners.hope_lm:HopeLM",
    "hope-lm-attention": "clbench.learners.hope_lm:HopeAttentionLM",
    "hope-lm-titans": "clbench.learners.hope_lm:TitansLM",
    "hope-lm-gated-delta": "clbench.learners.hope_lm:GatedDeltaLM",
    "token-mlp": "clbench.learners.token_mlp:TokenMLP",
    "token-mlp-replay": "clbench.learners.token_mlp:TokenMLPReplay",
    "token-mlp-ewc": "clbench.learners.token_mlp:TokenMLPEWC",
}

# Named scenarios: a builder from clbench.scenario, its dataset and arguments, and a default protocol.
NAMED_SCENARIOS: dict[str, dict[str, Any]] = {
    "split-digits": {"builder": "split", "dataset": "digits", "n_tasks": 5, "protocol": "class_il"},
    "permuted-digits": {"builder": "permuted", "dataset": "digits", "n_tasks": 5, "protocol": "domain_il"},
    "rotated-digits": {"builder": "rotated", "dataset": "digits", "n_tasks": 4, "angle_step": 90.0,
                       "protocol": "domain_il"},
    # The standard image benchmarks (files in $CLBENCH_DATA, see clbench.data). Split MNIST and
    # Split CIFAR-100 follow van de Ven, Tuytelaars & Tolias 2022 (5 tasks of 2 digits; 10 tasks of
    # 10 classes); Permuted MNIST has their 10 tasks; Rotated uses 0/45/90/135 degrees.
    "split-mnist": {"builder": "split", "dataset": "mnist", "n_tasks": 5, "protocol": "class_il"},
    "permuted-mnist": {"builder": "permuted", "dataset": "mnist", "n_tasks": 10, "protocol": "domain_il"},
    "rotated-mnist": {"builder": "rotated", "dataset": "mnist", "n_tasks": 4, "angle_step": 45.0,
                      "protocol": "domain_il"},
    "split-fmnist": {"builder": "split", "dataset": "fashion-mnist", "n_tasks": 5, "protocol": "class_il"},
    "permuted-fmnist": {"builder": "permuted", "dataset": "fashion-mnist", "n_tasks": 10, "protocol": "domain_il"},
    "rotated-fmnist": {"builder": "rotated", "dataset": "fashion-mnist", "n_tasks": 4, "angle_step": 45.0,
                       "protocol": "domain_il"},
    "split-cifar10": {"builder": "split", "dataset": "cifar10", "n_tasks": 5, "protocol": "class_il"},
    "split-cifar100": {"builder": "split", "dataset": "cifar100", "n_tasks": 10, "protocol": "class_il"},
    # Continual language modelling (clbench.text_data): byte-level text domains in turn, measured in
    # bits per character. The embedded stream needs no fetch; the others need `clbench fetch <domain>`.
    "text-embedded": {"builder": "text", "domains": ["stdlib", "pydoc", "tables"], "train_bytes": 32768,
                      "eval_bytes": 8192, "context": 128, "protocol": "domain_il", "measure": "bpc"},
    "text-six": {"builder": "text", "domains": ["shakespeare", "kjv", "austen", "sotu", "python-docs", "spdx"],
                 "train_bytes": 1048576, "eval_bytes": 65536, "context": 256, "protocol": "domain_il",
                 "measure": "bpc"},
    "text-sotu": {"builder": "text", "domains": ["sotu/1790-1849", "sotu/1850-1899", "sotu/1900-1949",
                                                 "sotu/1950-1999", "sotu/2000-2021"],
                  "train_bytes": 524288, "eval_bytes": 65536, "context": 256, "protocol": "domain_il",
                  "measure": "bpc"},
}

SEQUENCE_BACKBONES = ("transformer",)  # backbones (clbench.models) that model token windows: for text streams
ENTRY_POINT_GROUP = "clbench.learners"
PROTOCOLS = ("class_il", "task_il", "domain_il")
EVAL_SPLITS = ("test", "val")  # what a scenario is evaluated on (`eval_split`); "val" is for tuning

# `avalanche:EWC` is any strategy class that `avalanche.training` exports, run through the adapter
# in clbench.learners.avalanche (whose module attribute `EWC` is built on first use).
AVALANCHE_PREFIX = "avalanche:"
AVALANCHE_ADAPTER = "clbench.learners.avalanche"


def unknown_name_error(kind: str, name: str, known: Iterable[str], context: str = "") -> UsageError:
    """An error for an unknown `name` that suggests the closest known names and lists them all."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return UsageError(f"unknown {kind} {name!r}{context}{hint} (valid: {', '.join(known)})")


def learner_names() -> dict[str, str]:
    """Every learner short name and the `module:Class` it stands for, entry points included."""
    names = dict(BUILTIN_LEARNERS)
    for name, value in installed_learners():
        names.setdefault(name, value)
    return names


@functools.lru_cache(maxsize=None)
def installed_learners() -> tuple[tuple[str, str], ...]:
    """(name, `module:Class`) of the learners installed packages register as entry points. Read
    once per process: the scan reads every installed package's metadata (~15 ms here), and a suite
    resolves a learner name for every run it plans."""
    return tuple((ep.name, ep.value) for ep in entry_points(group=ENTRY_POINT_GROUP))


def _split_ref(ref: str) -> tuple[str, str]:
    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not attr:
        raise UsageError(f"learner reference {ref!r} must be a short name, 'package.module:Class' "
                         f"or 'path/to/file.py:Class'")
    return target, attr


def _is_file_ref(target: str) -> bool:
    return target.endswith(".py")


def resolve_reference(ref: str) -> str:
    """The canonical `module:Class` or `/abs/path.py:Class` for a short name or reference."""
    names = learner_names()
    if ref in names:
        return names[ref]
    if ref.startswith(AVALANCHE_PREFIX):
        return avalanche_reference(ref[len(AVALANCHE_PREFIX):])
    if ":" not in ref:
        raise unknown_name_error("learner", ref, names)
    target, attr = _split_ref(ref)
    if _is_file_ref(target):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise UsageError(f"learner file not found: {target} (in {ref!r})")
        return f"{path}:{attr}"
    return ref


def load_object(ref: str) -> Any:
    """Import what a `module:Object` or `file.py:Object` reference names."""
    target, attr = _split_ref(ref)
    if _is_file_ref(target):
        module = _import_file(Path(target))
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as err:
            raise UsageError(f"cannot import module {target!r} (from {ref!r}): {err}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        public = [n for n in vars(module) if not n.startswith("_")]
        raise unknown_name_error(f"object in {target}", attr, public) from None


def _import_file(path: Path) -> Any:
    name = "clbench_user_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules[name]
        raise
    return module


def load_learner(ref: str) -> type:
    """The learner class for a short name, `module:Class` or `file.py:Class`."""
    return load_object(resolve_reference(ref))


def source_sha256(canonical_ref: str) -> str | None:
    """Hash of a user file learner's source, so that editing the file gives new run ids."""
    target, _ = _split_ref(canonical_ref)
    if not _is_file_ref(target):
        return None
    return hashlib.sha256(Path(target).read_bytes()).hexdigest()


def describe(ref: str) -> str:
    """The first line of a learner class's docstring, read from its source without importing it."""
    target, attr = _split_ref(ref)
    if _is_file_ref(target):
        path: str | None = target
    else:
        try:
            spec = importlib.util.find_spec(target)
        except (ImportError, ValueError):
            spec = None
        path = spec.origin if spec else None
    if not path or not Path(path).is_file():
        return ""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == attr:
            return _first_sentence(node)
    return ""


def _first_sentence(node: ast.ClassDef) -> str:
    paragraph = " ".join((ast.get_docstring(node) or "").split("\n\n")[0].split())
    return re.split(r"(?<! al)(?<! et)\. ", paragraph)[0].rstrip(".")


def avalanche_reference(name: str) -> str:
    """The canonical reference of the adapter for Avalanche strategy `name` (`avalanche:name`)."""
    strategies = avalanche_strategies()
    if not strategies:
        raise UsageError(f"{AVALANCHE_PREFIX}{name} needs Avalanche, which is not installed: "
                         f"pip install 'clbench[avalanche]' (scripts/setup.sh installs it)")
    if name not in strategies:
        raise unknown_name_error("Avalanche strategy", name, strategies, " (after 'avalanche:')")
    return f"{AVALANCHE_ADAPTER}:{name}"


@functools.lru_cache(maxsize=None)
def avalanche_strategies() -> dict[str, str]:
    """The strategy classes `avalanche.training` exports, each with the first sentence of its
    docstring, read from Avalanche's installed source without importing it (an import takes ~10 s
    and changes the warning filters). Empty when Avalanche is not installed.

    A strategy is a class exported by a module that `avalanche/training/supervised/__init__.py`
    imports from (by name, or through the module's `__all__` for `import *`) whose base is a
    `...Template` class.
    """
    try:
        spec = importlib.util.find_spec("avalanche")
    except (ImportError, ValueError):
        return {}
    if spec is None or not spec.submodule_search_locations:
        return {}
    folder = Path(list(spec.submodule_search_locations)[0]) / "training" / "supervised"
    init = folder / "__init__.py"
    if not init.is_file():
        return {}
    found: dict[str, str] = {}
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            module = folder / (node.module.replace(".", "/") + ".py")
            names = None if node.names[0].name == "*" else {alias.name for alias in node.names}
            if module.is_file():
                found.update(_strategy_classes(module, names))
    return dict(sorted(found.items(), key=lambda item: item[0].lower()))


def _strategy_classes(path: Path, names: set[str] | None) -> dict[str, str]:
    """Strategy classes defined in `path` among `names` (None: the module's `__all__`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if names is None:
        names = set()
        for node in tree.body:
            if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
                    and isinstance(node.value, (ast.List, ast.Tuple))):
                names = {e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    found = {}
    for node in tree.body:
        if (isinstance(node, ast.ClassDef) and node.name in names
                and any(_base_name(base).endswith("Template") for base in node.bases)
                and not any("deprecated" in ast.unparse(d) for d in node.decorator_list)):
            found[node.name] = _first_sentence(node)
    return found


def _base_name(node: ast.expr) -> str:
    if isinstance(node, ast.Subscript):  # Generic[...] bases, e.g. SupervisedTemplate[TExperience, ...]
        node = node.value
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def scenario_config(name: str, protocol: str | None = None) -> dict[str, Any]:
    """The builder config of a named scenario, with its protocol (or the one given)."""
    if name not in NAMED_SCENARIOS:
        raise unknown_name_error("scenario", name, NAMED_SCENARIOS)
    config = {"name": name, **NAMED_SCENARIOS[name]}
    if protocol is not None:
        if protocol not in PROTOCOLS:
            raise unknown_name_error("protocol", protocol, PROTOCOLS)
        config["protocol"] = protocol
    return config
