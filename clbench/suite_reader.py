"""Reading a suite file: its text and where each table and key sits, so that every error names
the file and the line; and how a suite entry sweeps values (a list sweeps; for a list-typed field
only a list of lists does). Shared by the scenario and learner parts of a suite file.
"""
from __future__ import annotations

import re
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clbench.errors import UsageError


class _Lines:
    """Where tables and keys sit in a TOML text, so that errors can name a line. A light scan of
    `[table]`, `[[array]]` and `key =` lines; keys written as inline tables or dotted keys are
    found at their table's line, or not at all (then the error names no line)."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*=""")
    _PART = re.compile(r""""[^"]*"|'[^']*'|[^.\s]+""")

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple, int] = {}
        table: tuple = ()
        counts: dict[tuple, int] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            header = self._HEADER.match(line)
            if header:
                parts = tuple(p.strip("\"'") for p in self._PART.findall(header.group(2)))
                if header.group(1) == "[[":
                    index = counts.get(parts, 0)
                    counts[parts] = index + 1
                    parts = parts + (index,)
                table = parts
                self.lines.setdefault((table, None), number)
                continue
            key = self._KEY.match(line)
            if key:
                self.lines.setdefault((table, key.group(1).strip("\"'")), number)

    def of(self, table: tuple, key: str | None = None) -> int | None:
        return self.lines.get((table, key)) or self.lines.get((table, None))


class Reader:
    """Validates one suite file; every error it raises names the file and, where known, the line."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = _Lines(text)

    def error(self, message: str, table: tuple = (), key: str | None = None) -> UsageError:
        line = self.lines.of(table, key) if (table or key) else None
        return UsageError(f"{self.path}:{line}: {message}" if line else f"{self.path}: {message}")


def is_sequence_type(tp: Any) -> bool:
    """Whether a field's type takes a list (tuple[int, ...], list[str], Sequence[int] | None, ...)."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or type(tp).__name__ == "UnionType":
        return any(is_sequence_type(a) for a in typing.get_args(tp) if a is not type(None))
    return origin in (list, tuple, Sequence, typing.Sequence) or tp in (list, tuple)


def sweep_values(value: Any, tp: Any) -> list[Any] | None:
    """The values a suite entry sweeps, or None when `value` is a single value. A list sweeps;
    for a list-typed field only a list of lists does."""
    if not isinstance(value, list):
        return None
    if is_sequence_type(tp) and not (value and all(isinstance(v, list) for v in value)):
        return None
    return value


def show_value(value: Any) -> str:
    return "[" + ",".join(map(str, value)) + "]" if isinstance(value, (list, tuple)) else str(value)
