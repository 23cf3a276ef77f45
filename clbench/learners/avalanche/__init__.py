"""Avalanche's strategies as clbench learners, `--learner avalanche:EWC`: a plugin of clbench.

Avalanche: Lomonaco et al. 2021, "Avalanche: an End-to-End Library for Continual Learning" (CVPR
Workshops); avalanche-lib 0.6. This package is a learner family of the `clbench.learner_prefixes`
entry-point group (registered in clbench's pyproject.toml, as any package can register its own):
`names()` lists the strategies without importing Avalanche, `reference(name)` resolves
`avalanche:NAME`, and `clbench.learners.avalanche.EWC` is the adapter class built on first use
(`adapter.py`). Needs the `avalanche` extra (`pip install 'clbench[avalanche]'`).
"""
from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

from clbench.errors import UsageError, unknown_name_error
from clbench.registry import docstring_summary

PREFIX = "avalanche:"
title = "Avalanche strategies (--learner avalanche:NAME; keyword arguments with --set)"


def reference(name: str) -> str:
    """The canonical reference of the adapter for Avalanche strategy `name` (`avalanche:name`)."""
    strategies = names()
    if not strategies:
        raise UsageError(f"{PREFIX}{name} needs Avalanche, which is not installed: "
                         f"pip install 'clbench[avalanche]' (scripts/setup.sh installs it)")
    if name not in strategies:
        raise unknown_name_error("Avalanche strategy", name, strategies, f" (after {PREFIX!r})")
    return f"{__name__}:{name}"


def __getattr__(name: str) -> type:
    """`clbench.learners.avalanche.EWC`: the adapter class of an Avalanche strategy, built on first use."""
    if name.startswith("_") or name not in names():
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from clbench.learners.avalanche.adapter import learner_class

    return learner_class(name)


@functools.lru_cache(maxsize=None)
def names() -> dict[str, str]:
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
            found[node.name] = docstring_summary(node)
    return found


def _base_name(node: ast.expr) -> str:
    if isinstance(node, ast.Subscript):  # Generic[...] bases, e.g. SupervisedTemplate[TExperience, ...]
        node = node.value
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""
