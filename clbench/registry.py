"""Names to objects: short names for built-ins, `package.module:Class`, `path/to/file.py:Class`,
the `clbench.learners` entry-point group, and `PREFIX:NAME` for a family of learners registered
in the `clbench.learner_prefixes` group (`avalanche:EWC`). Nothing here imports torch, so
`clbench list` stays fast: descriptions are read from source files without importing them.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import importlib.util
import re
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from clbench.errors import UsageError, one_line, unknown_name_error

BUILTIN_LEARNERS = {
    "finetune": "clbench.learners.finetune:Finetune",
    "joint": "clbench.learners.joint:Joint",
    "ewc": "clbench.learners.ewc:EWC",
    "replay": "clbench.learners.replay:Replay",
    "hope": "clbench.learners.hope:Hope",
    "transformer": "clbench.learners.transformer:Transformer",
    "token-mlp": "clbench.learners.token_mlp:TokenMLP",
    "token-mlp-replay": "clbench.learners.token_mlp:TokenMLPReplay",
    "token-mlp-ewc": "clbench.learners.token_mlp:TokenMLPEWC",
    "si": "clbench.learners.si:SI",
    "mas": "clbench.learners.mas:MAS",
    "lwf": "clbench.learners.lwf:LwF",
    "agem": "clbench.learners.agem:AGEM",
    "der": "clbench.learners.der:DER",
    "derpp": "clbench.learners.der:DERpp",
    "er-ace": "clbench.learners.er_ace:ERACE",
    "gdumb": "clbench.learners.gdumb:GDumb",
    "icarl": "clbench.learners.icarl:ICaRL",
    "hope-lm": "clbench.learners.hope_lm:HopeLM",
    "hope-lm-attention": "clbench.learners.hope_lm:HopeAttentionLM",
    "hope-lm-titans": "clbench.learners.hope_lm:TitansLM",
    "hope-lm-gated-delta": "clbench.learners.hope_lm:GatedDeltaLM",
}

SEQUENCE_BACKBONES = ("transformer",)  # backbones (clbench.models) that model token windows: for text streams
ENTRY_POINT_GROUP = "clbench.learners"

PREFIX_ENTRY_POINT_GROUP = "clbench.learner_prefixes"


class LearnerFamily(Protocol):
    """What a `clbench.learner_prefixes` entry point names: a family of learners reached as
    `PREFIX:NAME` (the entry point's name is the prefix). clbench registers Avalanche's strategies
    this way (`avalanche:EWC`, clbench.learners.avalanche); any package can register its own."""

    title: str  # the heading `clbench list learners` shows above the family's names

    def names(self) -> dict[str, str]:
        """Every NAME with a one-line summary, found without heavy imports (`clbench list` stays fast)."""

    def reference(self, name: str) -> str:
        """The canonical `module:Class` of NAME, or a UsageError saying what is valid or missing."""


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
    prefix, sep, rest = ref.partition(":")
    if sep and prefix in learner_families():
        return learner_families()[prefix].reference(rest)
    if ":" not in ref:
        if _is_file_ref(ref):
            raise _missing_class_error(ref)
        raise unknown_name_error("learner", ref, names)
    target, attr = _split_ref(ref)
    if _is_file_ref(target):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise UsageError(f"learner file not found: {target} (in {ref!r})")
        return f"{path}:{attr}"
    return ref


def _missing_class_error(ref: str) -> UsageError:
    """A file reference without `:Class`: say so, and list the classes the file defines."""
    path = Path(ref).expanduser()
    if not path.is_file():
        return UsageError(f"learner file not found: {ref} (give path/to/file.py:Class)")
    try:
        classes = [n.name for n in ast.parse(path.read_text(encoding="utf-8")).body if isinstance(n, ast.ClassDef)]
    except (SyntaxError, ValueError, OSError, UnicodeDecodeError):
        classes = []
    found = f"classes in {ref}: {', '.join(classes)}" if classes else f"{ref} defines no class at its top level"
    return UsageError(f"learner {ref!r} names a file but not the class in it: give {ref}:CLASS ({found})")


def _import_failure(err: BaseException, what: str) -> UsageError:
    """One line for a learner module that fails to import (a syntax error, a missing package)."""
    if isinstance(err, SyntaxError):
        where = f"{err.filename or what}, line {err.lineno}" if err.lineno else (err.filename or what)
        return UsageError(f"learner {what}: {type(err).__name__} in {where}: {err.msg}")
    return UsageError(f"learner {what}: importing it failed: {one_line(err)}")


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
        except Exception as err:  # the module itself is broken: one line, not its traceback
            raise _import_failure(err, f"module {target!r}") from None
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
    except Exception as err:  # a syntax error or failing import in a user's file: one line, not a traceback
        del sys.modules[name]
        raise _import_failure(err, f"file {path}") from None
    return module


def learner_label(ref: str, cls: type) -> str:
    """The name a learner goes by in results and tables: a short name or `PREFIX:NAME` as given,
    else (a `module:Class` or file reference) the class name in lower case."""
    prefix, sep, _ = ref.partition(":")
    return ref if not sep or prefix in learner_families() else cls.__name__.lower()


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
            return docstring_summary(node)
    return ""


def docstring_summary(node: ast.ClassDef) -> str:
    """The first sentence of a class's docstring, from its syntax tree."""
    paragraph = " ".join((ast.get_docstring(node) or "").split("\n\n")[0].split())
    return re.split(r"(?<! al)(?<! et)\. ", paragraph)[0].rstrip(".")


@functools.lru_cache(maxsize=None)
def learner_families() -> dict[str, LearnerFamily]:
    """prefix -> the learner family installed packages register in `clbench.learner_prefixes`."""
    families = {}
    for ep in entry_points(group=PREFIX_ENTRY_POINT_GROUP):
        try:
            families[ep.name] = ep.load()
        except Exception:  # a broken plugin must not break clbench; its names then stay unknown
            continue
    return families
