"""Modules imported on first use.

`import torch` costs seconds. Planning a suite needs the learner classes (their fields, defaults
and checks) and the scenario builders (their arguments), but runs nothing; so the modules that
define them bind `torch` to a `LazyModule`, and torch is imported when a run first touches it.
`clbench suite` then plans, lists (`--dry-run`) and hands runs to workers without importing torch
in the suite process (tests/test_suite.py checks this for every shipped suite).
"""
from __future__ import annotations

import importlib
import types
from typing import Any


class LazyModule(types.ModuleType):
    """Stands for the module `name` and imports it at the first attribute access. The module's
    namespace is then copied in, so later accesses are plain attribute lookups, as fast as on the
    module itself; a name the module gains later is fetched from it when first asked for."""

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self.__name__)
        self.__dict__.update(module.__dict__)
        return getattr(module, attr)


def lazy_import(name: str) -> types.ModuleType:
    """`torch = lazy_import("torch")`: like `import torch`, but the import happens on first use."""
    return LazyModule(name)
