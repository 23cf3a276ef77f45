"""Suite files: a grid of scenarios × learners × seeds in one TOML file.

```toml
name = "quick"                     # results go to results/quick/ (default: the file's stem)
seeds = [0, 1, 2]                  # or a range string "0-2", or "0,3,5"

[[scenario]]
name = "split-digits"              # a named scenario (clbench list scenarios) ...
protocol = ["class_il", "task_il"] # a list sweeps
eval_split = "val"                 # optional: evaluate on a validation split of the training data

[[scenario]]
builder = "split"                  # ... or a builder with its arguments
dataset = "digits"
n_tasks = 5
name = "split-digits-3"            # label, required for builder scenarios
protocol = "class_il"

[learner.finetune]                 # the table name is the label in results and tables
[learner.ewc]
lam = [10.0, 100.0]                # a list sweeps a field (list-typed fields: a list of lists)
[learner.mine]
class = "./my_method.py:MyMethod"  # short name, module:Class or file.py:Class (default: the table
lr = 0.05                          # name); file paths are relative to the suite file's folder
```

`load_suite` reads and validates a file and expands its grid into resolved run configs (the
same configs `clbench run` resolves, so the same run has the same id either way); `plan` says
which of them are finished under a results folder; `execute_plan` runs the rest on an executor
and writes each run as it arrives. Errors name the file, the line where possible, the key and
what is valid.
"""
from __future__ import annotations

import inspect
import itertools
import re
import sys
import typing
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clbench.config import coerce, learner_fields, make_learner, parse_assignments, resolve_fields
from clbench.errors import UsageError
from clbench.registry import (EVAL_SPLITS, NAMED_SCENARIOS, PROTOCOLS, load_object, resolve_reference,
                              scenario_config, unknown_name_error)
from clbench.results import run_dir_name, run_id, scan_runs, write_run

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TOP_LEVEL_KEYS = ("name", "description", "seeds", "scenario", "learner")
NAMED_SCENARIO_KEYS = ("name", "protocol", "eval_split")
SUITE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class PlannedRun:
    """One cell of the grid: its resolved config, its run id and a short label for people."""

    run_id: str
    config: dict[str, Any]
    label: str

    @property
    def dir_name(self) -> str:
        return run_dir_name(self.config, self.run_id)


@dataclass
class Suite:
    name: str
    path: Path
    seeds: list[int]
    runs: list[PlannedRun]
    description: str = ""
    n_scenarios: int = 0       # scenario variants (entries × protocols × sweeps)
    n_learners: int = 0        # learner variants (tables × sweeps)


@dataclass
class Plan:
    """The grid of a suite against a results folder: what is finished, what is to run, and
    which of the runs to do failed before (they are retried)."""

    root: Path
    runs: list[PlannedRun]
    done: dict[str, Path] = field(default_factory=dict)          # run id -> finished run directory
    failed_before: dict[str, Path] = field(default_factory=dict)  # run id -> failed run directory

    @property
    def todo(self) -> list[PlannedRun]:
        return [r for r in self.runs if r.run_id not in self.done]


# -- reading and validating ---------------------------------------------------------------------

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


class _Reader:
    """Validates one suite file; every error it raises names the file and, where known, the line."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = _Lines(text)

    def error(self, message: str, table: tuple = (), key: str | None = None) -> UsageError:
        line = self.lines.of(table, key) if (table or key) else None
        return UsageError(f"{self.path}:{line}: {message}" if line else f"{self.path}: {message}")


def _is_sequence_type(tp: Any) -> bool:
    """Whether a field's type takes a list (tuple[int, ...], list[str], Sequence[int] | None, ...)."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or type(tp).__name__ == "UnionType":
        return any(_is_sequence_type(a) for a in typing.get_args(tp) if a is not type(None))
    return origin in (list, tuple, Sequence, typing.Sequence) or tp in (list, tuple)


def _options(value: Any, tp: Any) -> list[Any] | None:
    """The values a suite entry sweeps, or None when `value` is a single value. A list sweeps;
    for a list-typed field only a list of lists does."""
    if not isinstance(value, list):
        return None
    if _is_sequence_type(tp) and not (value and all(isinstance(v, list) for v in value)):
        return None
    return value


def parse_seeds(value: Any, where: str) -> list[int]:
    """Seeds from a list of ints, an int, or a string of ranges and values: "0-9", "0,3,5", "0-2,7"."""
    seeds: list[int] = []
    if isinstance(value, bool):
        raise UsageError(f"{where}: {value!r} is not a seed (valid: [0, 1, 2], \"0-9\" or \"0,3,5\")")
    if isinstance(value, int):
        seeds = [value]
    elif isinstance(value, list):
        for v in value:
            if not isinstance(v, int) or isinstance(v, bool):
                raise UsageError(f"{where}: {v!r} is not a seed (seeds are whole numbers >= 0)")
            seeds.append(v)
    elif isinstance(value, str):
        for part in value.replace(" ", "").split(","):
            match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if not match:
                raise UsageError(f"{where}: {value!r} is not a seed list (valid: \"0-9\", \"0,3,5\" or \"0-2,7\")")
            first, last = int(match.group(1)), int(match.group(2) or match.group(1))
            if last < first:
                raise UsageError(f"{where}: range {part!r} runs backwards")
            seeds.extend(range(first, last + 1))
    else:
        raise UsageError(f"{where}: {value!r} is not a seed list (valid: [0, 1, 2], \"0-9\" or \"0,3,5\")")
    if not seeds:
        raise UsageError(f"{where}: no seeds given")
    if any(s < 0 for s in seeds):
        raise UsageError(f"{where}: seeds must be >= 0, got {min(seeds)}")
    duplicates = sorted({s for s in seeds if seeds.count(s) > 1})
    if duplicates:
        raise UsageError(f"{where}: seed {duplicates[0]} is given twice")
    return seeds


def parse_overrides(items: Iterable[str]) -> dict[str, dict[str, str]]:
    """`--set learners.ewc.lam=1000` -> {"ewc": {"lam": "1000"}}; `learners.*.epochs=1` sets a
    field of every learner that has it."""
    out: dict[str, dict[str, str]] = {}
    for key, value in parse_assignments(list(items)).items():
        parts = key.split(".")
        if len(parts) != 3 or parts[0] not in ("learners", "learner") or not all(parts):
            raise UsageError(f"--set {key}={value}: expected learners.LABEL.FIELD=VALUE "
                             f"(e.g. learners.ewc.lam=1000; LABEL * sets every learner)")
        out.setdefault(parts[1], {})[parts[2]] = value
    return out


@dataclass
class _LearnerEntry:
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
            detail = ", ".join(f"{k}={_show(values[k])}" for k in swept)
            out.append((values, f" ({detail})" if detail else ""))
        return out


def _show(value: Any) -> str:
    return "[" + ",".join(map(str, value)) + "]" if isinstance(value, (list, tuple)) else str(value)


def load_suite(path: str | Path, overrides: Iterable[str] = (), seeds: str | None = None) -> Suite:
    """Read, validate and expand a suite file. `overrides` are `--set learners.LABEL.FIELD=VALUE`
    items; `seeds` ("0-9", "0,3,5") replaces the file's seeds."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"suite file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read suite file {path}: {err}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{path}: not valid TOML: {err}") from None
    reader = _Reader(path, text)

    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise reader.error(str(unknown_name_error("key", key, TOP_LEVEL_KEYS, " at the top of a suite file")),
                               (), key)
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not SUITE_NAME.match(name):
        raise reader.error(f"name: {name!r} is not a valid suite name (letters, digits, '_', '-', '.'; "
                           f"it names the results folder)", (), "name")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise reader.error(f"description: {description!r} is not a string", (), "description")
    if seeds is not None:
        seed_list = parse_seeds(seeds, "--seeds")
    else:
        try:
            seed_list = parse_seeds(data.get("seeds", [0]), "seeds")
        except UsageError as err:
            raise reader.error(str(err), (), "seeds") from None

    scenarios = _scenarios(reader, data.get("scenario"))
    set_values = parse_overrides(overrides)
    learners = _learners(reader, data.get("learner"), path.parent, set_values)

    runs: list[PlannedRun] = []
    seen: set[str] = set()
    for scenario, scenario_detail in scenarios:
        for entry in learners:
            for values, detail in entry.variants():
                for seed in seed_list:
                    config = _resolve(reader, scenario, entry, values, seed)
                    rid = run_id(config)
                    if rid in seen:
                        continue
                    seen.add(rid)
                    label = (f"{entry.label}{detail} {scenario['name']}{scenario_detail}/"
                             f"{scenario['protocol']} seed {seed}")
                    runs.append(PlannedRun(rid, config, label))
    return Suite(name, path, seed_list, runs, description, n_scenarios=len(scenarios),
                 n_learners=sum(len(e.variants()) for e in learners))


def _resolve(reader: _Reader, scenario: dict[str, Any], entry: _LearnerEntry, values: dict[str, Any],
             seed: int) -> dict[str, Any]:
    from clbench.experiment import resolve

    try:
        return resolve(scenario, entry.ref, values, seed, where=f"[learner.{entry.label}]", name=entry.label)
    except UsageError as err:
        raise reader.error(str(err), ("learner", entry.label)) from None


def _scenarios(reader: _Reader, entries: Any) -> list[tuple[dict[str, Any], str]]:
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


def _protocols(reader: _Reader, entry: dict[str, Any], table: tuple, where: str, default: str) -> list[str]:
    value = entry.get("protocol", default)
    values = value if isinstance(value, list) else [value]
    if not values:
        raise reader.error(f"{where} protocol: empty list (valid: {', '.join(PROTOCOLS)})", table, "protocol")
    for v in values:
        if not isinstance(v, str) or v not in PROTOCOLS:
            raise reader.error(f"{where} protocol: {unknown_name_error('protocol', str(v), PROTOCOLS)}",
                               table, "protocol")
    return values


def _named_scenarios(reader: _Reader, entry: dict[str, Any], table: tuple, where: str):
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


def _builder_scenarios(reader: _Reader, entry: dict[str, Any], table: tuple, where: str):
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
    first = 0 if builder in getattr(scenario_module, "DATALESS_BUILDERS", ()) else 1  # skip the dataset argument
    arguments = {p.name: p for p in parameters[first:] if p.name not in ("name", "protocol", "text_sha256")}
    dataset_options = tuple(getattr(scenario_module, "DATASET_OPTIONS", ()))
    valid = ["builder", "name", "protocol", "dataset", "eval_split", *dataset_options, *arguments]
    options: dict[str, list[Any]] = {}
    for key, value in entry.items():
        if key in ("builder", "name", "protocol"):
            continue
        if key not in valid:
            raise reader.error(f"{where}: {unknown_name_error('key', key, valid, f' for builder {builder!r}')}",
                               table, key)
        tp = str if key in ("dataset", "eval_split") else hints.get(key, Any)
        values = _options(value, tp)
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
            config = {"name": name, "builder": builder, **values, "protocol": protocol}
            detail = ", ".join(f"{k}={_show(values[k])}" for k in swept)
            out.append((config, f" ({detail})" if detail else ""))
    return out


def _check_eval_split(reader: _Reader, split: Any, table: tuple, where: str) -> None:
    if split not in EVAL_SPLITS:
        raise reader.error(f"{where} eval_split: {split!r} is not valid (valid: {', '.join(EVAL_SPLITS)})",
                           table, "eval_split")


def _default_protocol(function: Any) -> str:
    """The protocol a scenario builder uses when none is given."""
    protocol = inspect.signature(function).parameters.get("protocol")
    if protocol is None or protocol.default is inspect.Parameter.empty:
        return "class_il"
    return protocol.default


def _learners(reader: _Reader, tables: Any, folder: Path, set_values: dict[str, dict[str, str]]) -> list[_LearnerEntry]:
    if not isinstance(tables, dict) or not tables:
        raise reader.error("no learners: add at least one [learner.NAME] table, e.g. [learner.finetune]",
                           (), "learner" if tables is not None else None)
    for label in set_values:
        if label != "*" and label not in tables:
            key = next(iter(set_values[label]))
            raise unknown_name_error("learner", label, tables, f" in --set learners.{label}.{key} (the suite's "
                                     f"learners are its [learner.NAME] tables)")
    entries = []
    for label, body in tables.items():
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
        hints = _hints(cls)
        fields = learner_fields(cls)
        options: dict[str, list[Any]] = {}
        for key, value in body.items():
            if key == "class":
                continue
            where = f"[learner.{label}]"
            if key not in fields:
                if not fields:
                    raise reader.error(f"{where}: learner {ref!r} has no settable fields (make it a dataclass "
                                       f"to accept {key} = ...)", table, key)
                raise reader.error(f"{where} {unknown_name_error('field', key, fields, f' of learner {label!r}')}",
                                   table, key)
            values = _options(value, hints.get(key, Any))
            if values is not None and not values:
                raise reader.error(f"{where} {key}: empty list, nothing to sweep", table, key)
            checked = []
            for v in values if values is not None else [value]:
                try:
                    checked.append(resolve_fields(cls, {key: v}, label, where)[key])
                except UsageError as err:
                    raise reader.error(str(err), table, key) from None
            options[key] = checked
        for scope in ("*", label):
            for key, text in set_values.get(scope, {}).items():
                if key not in fields:
                    if scope == "*":
                        continue
                    raise unknown_name_error("field", key, fields, f" of learner {label!r} in --set "
                                                                   f"learners.{label}.{key}")
                options[key] = [resolve_fields(cls, {key: text}, label, f"--set learners.{scope}")[key]]
        entry = _LearnerEntry(label, canonical, cls, options)
        for values, _ in entry.variants():
            try:
                make_learner(cls, values, label, f"[learner.{label}]")
            except UsageError as err:
                raise reader.error(str(err), table) from None
        entries.append(entry)
    for key, _ in set_values.get("*", {}).items():
        if not any(key in learner_fields(e.cls) for e in entries):
            raise UsageError(f"--set learners.*.{key}: no learner of the suite has a field {key!r}")
    return entries


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # unresolvable annotations: fall back to checking values at construction
        return {}


# -- what is done, and running the rest ----------------------------------------------------------

def plan(suite: Suite, root: Path, force: bool = False) -> Plan:
    """The suite's grid against `root` (normally results/<suite name>): finished runs are done
    (unless `force`); failed runs are to do again."""
    stored = scan_runs(root)
    out = Plan(Path(root), list(suite.runs))
    for run in suite.runs:
        if run.run_id in stored:
            path, status = stored[run.run_id]
            if status == "ok" and not force:
                out.done[run.run_id] = path
            elif status != "ok":
                out.failed_before[run.run_id] = path
    return out


@dataclass
class Finished:
    """A run came back from an executor and was written to `path`."""

    run: PlannedRun
    outcome: Any  # clbench.executors.Outcome
    path: Path


@dataclass
class Started:
    run: PlannedRun


def execute_plan(runs: Sequence[PlannedRun], root: Path, executor) -> Iterator[Started | Finished | None]:
    """Run `runs` on `executor` and write each run under `root` as soon as it returns, finished
    or failed (with its reason and traceback). Yields `Started`, `Finished`, or None about twice
    a second while nothing happens (for a live display)."""
    from clbench.executors import RunStarted

    by_id = {r.run_id: r for r in runs}
    for event in executor.execute([(r.run_id, r.config) for r in runs]):
        if event is None:
            yield None
        elif isinstance(event, RunStarted):
            yield Started(by_id[event.run_id])
        else:
            run = by_id[event.run_id]
            yield Finished(run, event, write_outcome(root, run.config, event))


def write_outcome(root: Path, config: dict[str, Any], outcome) -> Path:
    """Write a run's outcome atomically: rows and timing when it finished; when it failed, the
    rows up to the failure, the reason in run.json and the traceback in traceback.txt."""
    extra: dict[str, Any] = {"seconds": round(outcome.seconds, 3), "worker": outcome.worker}
    if outcome.environment:
        extra["environment"] = outcome.environment
    files = {}
    if outcome.status != "ok":
        extra["error"] = outcome.error
        extra["traceback"] = outcome.traceback
        files["traceback.txt"] = outcome.traceback or outcome.error or ""
    return write_run(root, config, outcome.rows, status=outcome.status, extra=extra, files=files)
