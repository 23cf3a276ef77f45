"""The `[learner.LABEL]` tables of a suite file: which learner each label runs, the field values it
sets or sweeps, and `--set learners.LABEL.FIELD=VALUE` on top. Every value is checked against the
learner's field types and its own checks before anything runs.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clbench.errors import UsageError, unknown_name_error
from clbench.fields import check_field, field_types, learner_fields, make_learner, resolve_fields
from clbench.registry import load_object, resolve_reference
from clbench.suite_reader import Reader, show_value, sweep_values


@dataclass
class LearnerEntry:
    """One `[learner.LABEL]` table: its canonical reference, class and field values to sweep."""

    label: str
    ref: str                                # canonical reference
    cls: type
    options: dict[str, list[Any]]           # field -> values (one value, or a sweep)

    def variants(self) -> list[tuple[dict[str, Any], str]]:
        """Every combination of swept values, with a label detail naming the swept fields."""
        keys = list(self.options)
        swept = [k for k in keys if len(self.options[k]) > 1]
        out = []
        for combo in itertools.product(*(self.options[k] for k in keys)):
            values = dict(zip(keys, combo))
            detail = ", ".join(f"{k}={show_value(values[k])}" for k in swept)
            out.append((values, f" ({detail})" if detail else ""))
        return out


def learner_entries(reader: Reader, tables: Any, folder: Path,
                    set_values: dict[str, dict[str, str]]) -> list[LearnerEntry]:
    """The suite's learner tables, checked; file references are relative to `folder`."""
    if not isinstance(tables, dict) or not tables:
        raise reader.error("no learners: add at least one [learner.NAME] table, e.g. [learner.finetune]",
                           (), "learner" if tables is not None else None)
    for label in set_values:
        if label != "*" and label not in tables:
            key = next(iter(set_values[label]))
            raise unknown_name_error("learner", label, tables, f" in --set learners.{label}.{key} (the suite's "
                                     f"learners are its [learner.NAME] tables)")
    entries = [_entry(reader, label, body, folder, set_values) for label, body in tables.items()]
    for key in set_values.get("*", {}):
        if not any(key in learner_fields(e.cls) for e in entries):
            raise UsageError(f"--set learners.*.{key}: no learner of the suite has a field {key!r}")
    return entries


def _entry(reader: Reader, label: str, body: Any, folder: Path, set_values: dict[str, dict[str, str]]) -> LearnerEntry:
    table = ("learner", label)
    if not isinstance(body, dict):
        raise reader.error(f"learner.{label} must be a table ([learner.{label}] with its fields), "
                           f"got {body!r}", ("learner",), label)
    if "/" in label or label.startswith("."):
        raise reader.error(f"[learner.{label}]: a learner label names result folders, so it cannot hold "
                           f"'/' or start with '.'", table)
    ref = body.get("class", label)
    if not isinstance(ref, str) or not ref:
        raise reader.error(f"[learner.{label}] class: {ref!r} is not a learner reference (a short name, "
                           f"module:Class or file.py:Class)", table, "class")
    target, sep, attr = ref.rpartition(":")
    if sep and target.endswith(".py") and not Path(target).expanduser().is_absolute():
        ref = f"{(folder / target).resolve()}:{attr}"
    where = f"[learner.{label}] class" if "class" in body else f"[learner.{label}]"
    try:
        canonical = resolve_reference(ref)
        cls = load_object(canonical)
    except UsageError as err:
        raise reader.error(f"{where}: {err}", table, "class") from None
    except Exception as err:  # the user's module failed to import
        raise reader.error(f"{where}: importing {ref!r} failed: {type(err).__name__}: {err}",
                           table, "class") from None
    hints = field_types(cls)
    where = f"[learner.{label}]"
    options: dict[str, list[Any]] = {}
    for key, value in body.items():
        if key == "class":
            continue
        values = sweep_values(value, hints.get(key, Any))
        if values is not None and not values:
            raise reader.error(f"{where} {key}: empty list, nothing to sweep", table, key)
        try:
            options[key] = [resolve_fields(cls, {key: v}, label, where)[key]
                            for v in (values if values is not None else [value])]
        except UsageError as err:
            raise reader.error(str(err), table, key) from None
    for scope in ("*", label):
        for key, text in set_values.get(scope, {}).items():
            if scope == "*" and key not in learner_fields(cls):
                continue
            check_field(cls, key, label, f"--set learners.{scope}.{key}")
            options[key] = [resolve_fields(cls, {key: text}, label, f"--set learners.{scope}")[key]]
    entry = LearnerEntry(label, canonical, cls, options)
    for values, _ in entry.variants():
        try:
            make_learner(cls, values, label, where)
        except UsageError as err:
            raise reader.error(str(err), table) from None
    return entry
