"""The `[[scenario]]` tables of a suite file: a named scenario with its protocols, or a scenario
builder with its arguments, each swept over lists; every config of the grid with a label detail
naming what it sweeps.
"""
from __future__ import annotations

import inspect
import itertools
import typing
from typing import Any

from clbench.errors import UsageError, unknown_name_error
from clbench.fields import coerce
from clbench.scenario_names import NAMED_SCENARIOS, PROTOCOLS, check_eval_split, check_protocol, scenario_config
from clbench.suite_reader import Reader, show_value, sweep_values

NAMED_SCENARIO_KEYS = ("name", "protocol", "eval_split")


def scenario_entries(reader: Reader, entries: Any) -> list[tuple[dict[str, Any], str]]:
    """Every scenario config of the grid (entries × protocols × swept arguments), each with a
    label detail naming its swept arguments."""
    if entries is None:
        raise reader.error("no scenarios: add at least one [[scenario]] table with a name "
                           f"(one of {', '.join(NAMED_SCENARIOS)}) or a builder")
    if isinstance(entries, dict):
        raise reader.error("scenario must be an array of tables: write [[scenario]], not [scenario]",
                           ("scenario",))
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise reader.error("scenario must be an array of tables ([[scenario]])", (), "scenario")
    out: list[tuple[dict[str, Any], str]] = []
    owner: dict[tuple[str, str], int] = {}
    for index, entry in enumerate(entries):
        table = ("scenario", index)
        where = f"[[scenario]] #{index + 1}"
        configs = _builder_scenarios(reader, entry, table, where) if "builder" in entry else \
            _named_scenarios(reader, entry, table, where)
        for config, detail in configs:
            key = (config["name"], config["protocol"])
            if owner.setdefault(key, index) != index:
                raise reader.error(f"{where}: scenario {config['name']!r} with protocol {config['protocol']!r} is "
                                   f"already in [[scenario]] #{owner[key] + 1}; give this one another name",
                                   table, "name")
            out.append((config, detail))
    return out


def _protocols(reader: Reader, entry: dict[str, Any], table: tuple, where: str, default: str) -> list[str]:
    value = entry.get("protocol", default)
    values = value if isinstance(value, list) else [value]
    if not values:
        raise reader.error(f"{where} protocol: empty list (valid: {', '.join(PROTOCOLS)})", table, "protocol")
    try:
        return [check_protocol(v, f"{where} protocol:") for v in values]
    except UsageError as err:
        raise reader.error(str(err), table, "protocol") from None


def _named_scenarios(reader: Reader, entry: dict[str, Any], table: tuple, where: str):
    name = entry.get("name")
    if name is None:
        raise reader.error(f"{where}: give a name (one of {', '.join(NAMED_SCENARIOS)}) or a builder "
                           f"(clbench.scenario builders) with its arguments", table)
    if not isinstance(name, str) or name not in NAMED_SCENARIOS:
        raise reader.error(f"{where} name: {unknown_name_error('scenario', str(name), NAMED_SCENARIOS)}; "
                           f"for your own scenario give builder = ... and its arguments", table, "name")
    for key in entry:
        if key not in NAMED_SCENARIO_KEYS:
            raise reader.error(f"{where}: {key!r} is not a setting of named scenario {name!r} (valid: "
                               f"{', '.join(NAMED_SCENARIO_KEYS)}); to change its arguments use builder = "
                               f"{NAMED_SCENARIOS[name]['builder']!r} with a name of your own", table, key)
    protocols = _protocols(reader, entry, table, where, NAMED_SCENARIOS[name]["protocol"])
    split = entry.get("eval_split", "test")
    _check_eval_split(reader, split, table, where)
    extra = {"eval_split": "val"} if split == "val" else {}  # "test" is the default: same config, same run id
    return [({**scenario_config(name, p), **extra}, "") for p in protocols]


def _builder_scenarios(reader: Reader, entry: dict[str, Any], table: tuple, where: str):
    from clbench import data, scenario as scenario_module

    builder = entry["builder"]
    builders = scenario_module.BUILDERS
    if not isinstance(builder, str) or builder not in builders:
        raise reader.error(f"{where} builder: {unknown_name_error('scenario builder', str(builder), builders)}",
                           table, "builder")
    name = entry.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise reader.error(f"{where}: a builder scenario needs a name, its label in results and tables "
                           f"(e.g. name = \"{builder}-digits\")", table, "name" if "name" in entry else "builder")
    function = builders[builder]
    parameters = list(inspect.signature(function).parameters.values())
    hints = typing.get_type_hints(function)
    dataless = builder in scenario_module.DATALESS_BUILDERS  # reads its own data, runs task by task
    arguments = {p.name: p for p in parameters[0 if dataless else 1:]  # past the dataset argument
                 if p.name not in ("name", "protocol", "text_sha256")}
    data_keys = () if dataless else ("dataset", "stream", *scenario_module.DATASET_OPTIONS)
    valid = list(dict.fromkeys(["builder", "name", "protocol", "eval_split", *data_keys, *arguments]))
    stream = {}
    if "stream" in entry and "stream" in valid:  # a stream table (clbench.streams), checked whole, never swept
        from clbench.streams import check_stream

        try:
            stream = {"stream": check_stream(entry["stream"], f"{where} stream")}
        except UsageError as err:
            raise reader.error(str(err), table, "stream") from None
    options: dict[str, list[Any]] = {}
    for key, value in entry.items():
        if key in ("builder", "name", "protocol") or (key == "stream" and key in valid):
            continue
        if key not in valid:
            raise reader.error(f"{where}: {unknown_name_error('key', key, valid, f' for builder {builder!r}')}",
                               table, key)
        tp = str if key in ("dataset", "eval_split") else hints.get(key, Any)
        values = sweep_values(value, tp)
        if values is not None and not values:
            raise reader.error(f"{where} {key}: empty list, nothing to sweep", table, key)
        checked = []
        for v in values if values is not None else [value]:
            try:
                checked.append(coerce(v, tp, f"{where} {key}"))
            except UsageError as err:
                raise reader.error(str(err), table, key) from None
        options[key] = checked
    for p in arguments.values():
        if p.default is inspect.Parameter.empty and p.name not in options:
            raise reader.error(f"{where}: builder {builder!r} needs {p.name} = ...", table, "builder")
    for dataset in options.get("dataset", []):
        sources = getattr(data, "SOURCES", None)
        if sources is not None and dataset not in sources and not dataset.startswith("npz:"):
            raise reader.error(f"{where} dataset: {unknown_name_error('dataset', dataset, [*sources, 'npz:PATH'])}",
                               table, "dataset")
    for split in options.get("eval_split", []):
        _check_eval_split(reader, split, table, where)
    protocols = _protocols(reader, entry, table, where, _default_protocol(function))
    keys = list(options)
    swept = [k for k in keys if len(options[k]) > 1]
    out = []
    for protocol in protocols:
        for combo in itertools.product(*(options[k] for k in keys)):
            values = dict(zip(keys, combo))
            config = {"name": name, "builder": builder, **values, "protocol": protocol, **stream}
            detail = ", ".join(f"{k}={show_value(values[k])}" for k in swept)
            out.append((config, f" ({detail})" if detail else ""))
    return out


def _check_eval_split(reader: Reader, split: Any, table: tuple, where: str) -> None:
    try:
        check_eval_split(split, where)
    except UsageError as err:
        raise reader.error(str(err), table, "eval_split") from None


def _default_protocol(function: Any) -> str:
    """The protocol a scenario builder uses when none is given."""
    protocol = inspect.signature(function).parameters.get("protocol")
    if protocol is None or protocol.default is inspect.Parameter.empty:
        return "class_il"
    return protocol.default
