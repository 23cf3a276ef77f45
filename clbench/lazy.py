"""Modules imported on first use.

`import torch` costs seconds. Planning a suite needs the learner classes (their fields, defaults
and checks) and the scenario builders (their arguments), but runs nothing; so the modules that
define them bind `torch` to a `LazyModule`, and torch is imported when a run first touches it.
`clbench suite` then plans and lists (`--dry-run`) without importing torch, and with `--jobs N`
or Ray only the workers import it (tests/test_suite.py plans every shipped suite and checks that
torch stayed out).
"""
from __future__ import annotations

import functools
import importlib
import types
from typing import Any


class LazyModule(types.ModuleType):
    """Stands for the module `name` and imports it at the first attribute access. It then takes
    a copy of the module's namespace and becomes a plain module object, so later lookups cost what
    they cost on the module itself; a name the module gains later is fetched from it when asked
    for. A name the module rebinds later keeps, here, the value it had at the first access."""

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self.__name__)
        namespace = self.__dict__
        namespace.update(module.__dict__)
        namespace["__getattr__"] = lambda name: getattr(module, name)  # names added later (PEP 562)
        self.__class__ = types.ModuleType
        return getattr(module, attr)


@functools.lru_cache(maxsize=None)
def lazy_import(name: str) -> types.ModuleType:
    """`torch = lazy_import("torch")`: like `import torch`, but the import happens on first use. One
    stand-in per module, shared by every module that asks, so the namespace is copied once."""
    return LazyModule(name)
