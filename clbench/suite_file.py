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
same configs `clbench run` resolves, so the same run has the same id either way); the scenario and
learner tables are read by `clbench.suite_scenarios` and `clbench.suite_learners`. Errors name the
file, the line where possible, the key and what is valid. Running a suite: `clbench.suite`.
"""
from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clbench.errors import UsageError, unknown_name_error
from clbench.fields import parse_assignments
from clbench.learner import supported_protocols
from clbench.results import run_dir_name, run_id
from clbench.suite_learners import LearnerEntry, learner_entries
from clbench.suite_reader import Reader
from clbench.suite_scenarios import scenario_entries

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

MAX_SEED = 2**64 - 1
TOP_LEVEL_KEYS = ("name", "description", "seeds", "scenario", "learner")
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
    left_out: tuple[str, ...] = ()  # "label scenario/protocol" pairs not run: the learner is not defined there


def check_seed(seed: int, where: str = "seed") -> int:
    """`seed` if it is in the one seed range of every run (0 ≤ seed < 2^64: torch seeds with an
    unsigned 64-bit number), else a UsageError naming it."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UsageError(f"{where}: {seed!r} is not a valid seed (valid: whole numbers 0 to 2^64-1 = {MAX_SEED})")
    return seed


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
            check_seed(last, where)
            seeds.extend(range(first, last + 1))
    else:
        raise UsageError(f"{where}: {value!r} is not a seed list (valid: [0, 1, 2], \"0-9\" or \"0,3,5\")")
    if not seeds:
        raise UsageError(f"{where}: no seeds given")
    for s in seeds:
        check_seed(s, where)
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


def load_suite(path: str | Path, overrides: Iterable[str] = (), seeds: str | None = None,
               learners: Iterable[str] = (), scenarios: Iterable[str] = ()) -> Suite:
    """Read, validate and expand a suite file. `overrides` are `--set learners.LABEL.FIELD=VALUE`
    items; `seeds` ("0-9", "0,3,5") replaces the file's seeds; `learners` (labels) and `scenarios`
    (names), when given, keep only those rows of the grid: the runs kept have the ids they have in
    the whole suite, so a part run now counts as done when the whole suite runs later."""
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
    reader = Reader(path, text)

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

    scenario_list = _only(scenario_entries(reader, data.get("scenario")), lambda s: s[0]["name"], scenarios,
                          "scenario", f" in --scenario (the scenario names of {path})")
    set_values = parse_overrides(overrides)
    learner_list = _only(learner_entries(reader, data.get("learner"), path.parent, set_values),
                         lambda e: e.label, learners, "learner", f" in --learner (the learner labels of {path})")

    runs: list[PlannedRun] = []
    seen: set[str] = set()
    left_out: list[str] = []  # learner/protocol pairs where the learner is not defined (see clbench.learner)
    for scenario, scenario_detail in scenario_list:
        for entry in learner_list:
            if scenario["protocol"] not in supported_protocols(entry.cls):
                left_out.append(f"{entry.label} {scenario['name']}{scenario_detail}/{scenario['protocol']}")
                continue
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
    return Suite(name, path, seed_list, runs, description, n_scenarios=len(scenario_list),
                 n_learners=sum(len(e.variants()) for e in learner_list), left_out=tuple(left_out))


def _only(items: list, name_of: Callable[[Any], str], wanted: Iterable[str], kind: str, context: str) -> list:
    """The items whose name is in `wanted` (all of them when `wanted` is empty); a wanted name that
    no item has is an error listing the names there are."""
    keep = {w.strip() for item in wanted for w in item.split(",") if w.strip()}
    if not keep:
        return items
    names = {name_of(item) for item in items}
    missing = sorted(keep - names)
    if missing:
        raise unknown_name_error(kind, missing[0], names, context)
    return [item for item in items if name_of(item) in keep]


def _resolve(reader: Reader, scenario: dict[str, Any], entry: LearnerEntry, values: dict[str, Any],
             seed: int) -> dict[str, Any]:
    from clbench.configs import resolve  # imports the learner registry and fields only

    try:
        return resolve(scenario, entry.ref, values, seed, where=f"[learner.{entry.label}]", name=entry.label)
    except UsageError as err:
        raise reader.error(str(err), ("learner", entry.label)) from None


