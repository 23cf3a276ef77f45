"""Learner fields: a learner's hyperparameters as data. Lists a learner's fields and their types,
and checks and coerces the values users give them (`--set key=value` on the command line, typed
values from a suite file, the field values recorded in a run's config): the one place that says
whether a field exists and whether a value fits it.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

from clbench.errors import UsageError, unknown_name_error

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def learner_fields(cls: type) -> dict[str, dataclasses.Field]:
    """The settable fields of a learner class (its dataclass fields)."""
    if not dataclasses.is_dataclass(cls):
        return {}
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def field_types(cls: type) -> dict[str, Any]:
    """The annotated types of a learner's fields; {} when Python cannot evaluate the annotations
    (values are then checked by the learner's constructor alone)."""
    if not learner_fields(cls):
        return {}
    try:
        return typing.get_type_hints(cls)
    except Exception:
        return {}


def check_field(cls: type, key: str, learner_name: str, where: str = "--set") -> None:
    """A UsageError unless `key` is a settable field of `cls`, naming `where` and the valid fields."""
    fields = learner_fields(cls)
    if key in fields:
        return
    if not fields:
        raise UsageError(f"{where}: learner {learner_name!r} has no settable fields "
                         f"(make it a dataclass to accept {key}=...)")
    raise UsageError(f"{where}: {unknown_name_error('field', key, fields, f' of learner {learner_name!r}')}")


def type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, where: str) -> Any:
    """`value` (a string from the command line, or a parsed TOML value) as type `tp`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in options:
                return None
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(value, option, where)
            except UsageError:
                pass
        raise UsageError(f"{where}: {value!r} is not a valid {type_name(tp)}")
    if origin in (tuple, list):
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError:
                    raise UsageError(f"{where}: {value!r} is not a valid list") from None
            else:
                value = [v for v in text.strip("()").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"{where}: {value!r} is not a valid {type_name(tp)}")
        args = [a for a in typing.get_args(tp) if a is not Ellipsis] or [Any]
        return origin(coerce(v, args[0], where) for v in value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(value, tp if isinstance(tp, type) else object):
        return value
    raise UsageError(f"{where}: {value!r} is not a valid {type_name(tp)}")


def parse_assignments(items: list[str], where: str = "--set") -> dict[str, str]:
    """`["lr=0.05", "widths=200,200"]` -> `{"lr": "0.05", "widths": "200,200"}`."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{where} {item!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out


def resolve_fields(cls: type, overrides: dict[str, Any], learner_name: str, where: str = "--set") -> dict[str, Any]:
    """Check every override names a field of `cls` and coerce it to the field's type."""
    hints = field_types(cls)
    resolved = {}
    for key, value in overrides.items():
        check_field(cls, key, learner_name, where)
        resolved[key] = coerce(value, hints.get(key, Any), f"{where} {key}")
    return resolved


def make_learner(cls: type, overrides: dict[str, Any], learner_name: str, where: str = "--set") -> Any:
    """An instance of `cls` with validated overrides; a learner's own checks become UsageErrors."""
    fields = resolve_fields(cls, overrides, learner_name, where)
    try:
        return cls(**fields)
    except UsageError as err:
        raise UsageError(f"{where}: {err}") from None
    except (TypeError, ValueError) as err:
        raise UsageError(f"{where}: learner {learner_name!r} rejected {fields}: {err}") from None


def field_values(learner: Any) -> dict[str, Any]:
    """Every field of a learner instance as JSON-ready values (tuples become lists), except the
    `recorded_if_set` fields of its class and their bases while they hold their defaults: fields
    added after runs were recorded, whose default computes what those runs computed, so that
    their run ids stay valid."""
    if dataclasses.is_dataclass(learner):
        fields = learner_fields(type(learner))
        optional = {name for cls in type(learner).__mro__ for name in vars(cls).get("recorded_if_set", ())}
        values = {name: getattr(learner, name) for name, f in fields.items()
                  if name not in optional or getattr(learner, name) != f.default}
    else:
        values = {k: v for k, v in vars(learner).items() if not k.startswith("_") and not k.endswith("_")}
    return json.loads(json.dumps(values, default=str))
