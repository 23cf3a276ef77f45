"""`clbench.lazy`: a module bound lazily is imported at first use and then behaves as the module."""
from __future__ import annotations

import subprocess
import sys
import types

from clbench.lazy import lazy_import


def test_lazy_module_imports_on_first_attribute_access():
    code = ("import sys\nfrom clbench.lazy import lazy_import\n"
            "colorsys = lazy_import('colorsys')\n"
            "before = 'colorsys' in sys.modules\n"
            "value = colorsys.rgb_to_hsv(1.0, 0.0, 0.0)\n"
            "print(before, 'colorsys' in sys.modules, value)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().split(maxsplit=2) == ["False", "True", "(0.0, 1.0, 1.0)"], out.stderr


def test_lazy_module_gives_the_module_attributes_including_ones_added_later():
    import json

    lazy = lazy_import("json")
    assert lazy.dumps is json.dumps
    assert "dumps" in vars(lazy) and type(lazy) is types.ModuleType  # later lookups are plain ones
    json.added_after_first_use = marker = object()
    try:
        assert lazy.added_after_first_use is marker
    finally:
        del json.added_after_first_use
