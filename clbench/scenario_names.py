"""Scenarios by name, and the three protocols a scenario runs under (van de Ven, Tuytelaars &
Tolias 2022): what `--scenario NAME`, `--protocol` and a suite's `[[scenario]] name = ...` mean,
and the one place that checks a protocol and an evaluation split.
"""
from __future__ import annotations

from typing import Any

from clbench.errors import UsageError, unknown_name_error

PROTOCOLS = ("class_il", "task_il", "domain_il")
EVAL_SPLITS = ("test", "val")  # what a scenario is evaluated on (`eval_split`); "val" is for tuning

# Named scenarios: a builder from clbench.scenario, its dataset and arguments, and a default protocol.
NAMED_SCENARIOS: dict[str, dict[str, Any]] = {
    "split-digits": {"builder": "split", "dataset": "digits", "n_tasks": 5, "protocol": "class_il"},
    "permuted-digits": {"builder": "permuted", "dataset": "digits", "n_tasks": 5, "protocol": "domain_il"},
    "rotated-digits": {"builder": "rotated", "dataset": "digits", "n_tasks": 4, "angle_step": 90.0,
                       "protocol": "domain_il"},
    # The standard image benchmarks (files in $CLBENCH_DATA, see clbench.data). Split MNIST and
    # Split CIFAR-100 follow van de Ven, Tuytelaars & Tolias 2022 (5 tasks of 2 digits; 10 tasks of
    # 10 classes); Permuted MNIST has their 10 tasks; Rotated uses 0/45/90/135 degrees.
    "split-mnist": {"builder": "split", "dataset": "mnist", "n_tasks": 5, "protocol": "class_il"},
    "permuted-mnist": {"builder": "permuted", "dataset": "mnist", "n_tasks": 10, "protocol": "domain_il"},
    "rotated-mnist": {"builder": "rotated", "dataset": "mnist", "n_tasks": 4, "angle_step": 45.0,
                      "protocol": "domain_il"},
    "split-fmnist": {"builder": "split", "dataset": "fashion-mnist", "n_tasks": 5, "protocol": "class_il"},
    "permuted-fmnist": {"builder": "permuted", "dataset": "fashion-mnist", "n_tasks": 10, "protocol": "domain_il"},
    "rotated-fmnist": {"builder": "rotated", "dataset": "fashion-mnist", "n_tasks": 4, "angle_step": 45.0,
                       "protocol": "domain_il"},
    "split-cifar10": {"builder": "split", "dataset": "cifar10", "n_tasks": 5, "protocol": "class_il"},
    "split-cifar100": {"builder": "split", "dataset": "cifar100", "n_tasks": 10, "protocol": "class_il"},
    # Continual language modelling (clbench.text_data): byte-level text domains in turn, measured in
    # bits per character. The embedded stream needs no fetch; the others need `clbench fetch <domain>`.
    "text-embedded": {"builder": "text", "domains": ["stdlib", "pydoc", "tables"], "train_bytes": 32768,
                      "eval_bytes": 8192, "context": 128, "protocol": "domain_il", "measure": "bpc"},
    "text-six": {"builder": "text", "domains": ["shakespeare", "kjv", "austen", "sotu", "python-docs", "spdx"],
                 "train_bytes": 1048576, "eval_bytes": 65536, "context": 256, "protocol": "domain_il",
                 "measure": "bpc"},
    "text-sotu": {"builder": "text", "domains": ["sotu/1790-1849", "sotu/1850-1899", "sotu/1900-1949",
                                                 "sotu/1950-1999", "sotu/2000-2021"],
                  "train_bytes": 524288, "eval_bytes": 65536, "context": 256, "protocol": "domain_il",
                  "measure": "bpc"},
}

# Streams (clbench.streams) over the digits and the MNIST family: online (one pass, batches of 10,
# boundaries signalled), blurry (10% of each task in its neighbours' segments) and task-free
# (a smoothly changing mixture; no boundary signalled). Anytime evaluation every 10 steps.
for _base in ("split-digits", "permuted-digits", "split-mnist", "permuted-mnist", "split-fmnist"):
    for _kind, _label in (("online", "online"), ("blurry", "blurry"), ("gradual", "taskfree")):
        NAMED_SCENARIOS[f"{_label}-{_base}"] = {**NAMED_SCENARIOS[_base], "stream": {"kind": _kind}}


def check_protocol(protocol: Any, where: str = "") -> str:
    """`protocol` if it is one of PROTOCOLS, else a UsageError naming `where` and the valid ones."""
    if not isinstance(protocol, str) or protocol not in PROTOCOLS:
        raise UsageError(f"{where}{' ' if where else ''}{unknown_name_error('protocol', str(protocol), PROTOCOLS)}")
    return protocol


def check_eval_split(split: Any, where: str = "") -> str:
    """`split` if it is one of EVAL_SPLITS, else a UsageError naming `where` and the valid ones."""
    if split not in EVAL_SPLITS:
        raise UsageError(f"{where}{' ' if where else ''}eval_split: {split!r} is not valid "
                         f"(valid: {', '.join(EVAL_SPLITS)})")
    return split


def scenario_config(name: str, protocol: str | None = None) -> dict[str, Any]:
    """The builder config of a named scenario, with its protocol (or the one given)."""
    if name not in NAMED_SCENARIOS:
        raise unknown_name_error("scenario", name, NAMED_SCENARIOS)
    config = {"name": name, **NAMED_SCENARIOS[name]}
    if protocol is not None:
        config["protocol"] = check_protocol(protocol)
    return config
