"""Tasks and scenarios, and the builders that cut a dataset into a task stream.

A setting is a field value, not a subclass: the same builder gives class-, task- or
domain-incremental streams (van de Ven, Tuytelaars & Tolias 2022, "Three types of incremental
learning") through `protocol`. Labels are stored in the output space of the protocol:

- `class_il`: one output unit per class of the whole stream; nothing tells the learner the task.
- `task_il`:  the same output units, but the task id is known and evaluation only compares the
  units of that task (a multi-headed output).
- `domain_il`: one set of output units shared by all tasks (labels are positions within a task).
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, overload

import numpy as np

from clbench.data import ArrayDataset, DataError, as_float, load
from clbench.errors import UsageError
from clbench.lazy import lazy_import
from clbench.scenario_names import check_eval_split, check_protocol

torch = lazy_import("torch")  # a suite checks builder arguments without importing torch (clbench.lazy)
F = lazy_import("torch.nn.functional")


@dataclass(frozen=True)
class ScenarioSpec:
    """What a learner may know about a stream before it starts: shapes, sizes and the protocol."""

    n_tasks: int
    n_outputs: int
    input_shape: tuple[int, ...]
    protocol: str
    last_task_id: int | None = None  # the id of the stream's last task; None: unknown, so no task counts as last


@dataclass(frozen=True, eq=False)
class Task:
    """One task of a stream. `classes` are the output units its labels use.

    Learners receive the task through `for_training()`, which drops the test split, so a
    learner cannot look at test data even by mistake.
    """

    task_id: int
    protocol: str
    classes: tuple[int, ...]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    source_classes: tuple[int, ...] = ()  # the dataset's own class ids behind `classes`

    @property
    def known_task_id(self) -> int | None:
        """The task id where the protocol reveals it (task_il), else None."""
        return self.task_id if self.protocol == "task_il" else None

    def for_training(self) -> "Task":
        return replace(self, x_test=None, y_test=None)


@dataclass(frozen=True, eq=False)
class Scenario(Sequence):
    """An ordered, re-iterable, sliceable sequence of tasks plus its protocol and output size."""

    name: str
    protocol: str
    n_outputs: int
    tasks: tuple[Task, ...]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> ScenarioSpec:
        return ScenarioSpec(len(self.tasks), self.n_outputs, tuple(self.tasks[0].x_train.shape[1:]),
                            self.protocol, self.tasks[-1].task_id)

    def __len__(self) -> int:
        return len(self.tasks)

    @overload
    def __getitem__(self, index: int) -> Task: ...
    @overload
    def __getitem__(self, index: slice) -> "Scenario": ...
    def __getitem__(self, index):
        if isinstance(index, slice):
            return replace(self, tasks=self.tasks[index])
        return self.tasks[index]

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)


def _tensor(x: np.ndarray) -> torch.Tensor:
    """A tensor of `x` (images become float32 in [0, 1]); a copy when `x` is read-only."""
    x = np.ascontiguousarray(as_float(x))
    return torch.from_numpy(x if x.flags.writeable else x.copy())


def _dataset_config(dataset: ArrayDataset) -> dict[str, Any]:
    """What the scenario records about its data: the name, plus how it was split or checked."""
    return {"dataset": dataset.name, **({"dataset_info": dataset.info} if dataset.info else {})}


def split(dataset: ArrayDataset, n_tasks: int, protocol: str = "class_il",
          class_order: Sequence[int] | None = None, order_seed: int | None = None,
          name: str = "split") -> Scenario:
    """Classes into tasks: task t holds the t-th group of `class_order`.

    The class order is given explicitly, drawn from `order_seed`, or else the natural order
    0, 1, ..., K-1. Output unit k is the k-th class of that order, so each task owns a block
    of units.
    """
    check_protocol(protocol)
    n_classes = dataset.n_classes
    if class_order is not None:
        order = [int(c) for c in class_order]
        if sorted(order) != list(range(n_classes)):
            raise UsageError(f"class_order must be a permutation of 0..{n_classes - 1}, got {order}")
    elif order_seed is not None:
        order = np.random.default_rng(order_seed).permutation(n_classes).tolist()
    else:
        order = list(range(n_classes))
    if not 1 <= n_tasks <= n_classes:
        raise UsageError(f"n_tasks must be between 1 and {n_classes} for {dataset.name}, got {n_tasks}")
    groups = [list(map(int, g)) for g in np.array_split(order, n_tasks)]
    if protocol == "domain_il" and len({len(g) for g in groups}) != 1:
        raise UsageError(f"domain_il needs the same number of classes in every task; "
                         f"{n_classes} classes do not split into {n_tasks} equal tasks")
    unit_of = {c: u for u, c in enumerate(order)}
    tasks, first_unit = [], 0
    for t, group in enumerate(groups):
        if protocol == "domain_il":
            label_of = {c: i for i, c in enumerate(group)}
            units = tuple(range(len(group)))
        else:
            label_of = {c: unit_of[c] for c in group}
            units = tuple(range(first_unit, first_unit + len(group)))
        first_unit += len(group)
        lookup = np.full(n_classes, -1, dtype=np.int64)
        for c, label in label_of.items():
            lookup[c] = label
        tr = np.isin(dataset.y_train, group)
        te = np.isin(dataset.y_test, group)
        tasks.append(Task(t, protocol, units,
                          _tensor(dataset.x_train[tr]), _tensor(lookup[dataset.y_train[tr]]),
                          _tensor(dataset.x_test[te]), _tensor(lookup[dataset.y_test[te]]),
                          source_classes=tuple(group)))
    n_outputs = len(groups[0]) if protocol == "domain_il" else n_classes
    config = {"builder": "split", **_dataset_config(dataset), "n_tasks": n_tasks, "protocol": protocol,
              "class_order": order}
    return Scenario(name, protocol, n_outputs, tuple(tasks), config)


def permuted(dataset: ArrayDataset, n_tasks: int, protocol: str = "domain_il", perm_seed: int = 0,
             first_identity: bool = True, name: str = "permuted") -> Scenario:
    """Every task holds all classes with its own fixed pixel permutation (drawn from `perm_seed`).

    The first task keeps the original pixel order unless `first_identity=False`. Under
    `class_il` and `task_il` each task gets its own block of output units (task t, class c ->
    unit t*K + c); under `domain_il` all tasks share the K units.
    """
    check_protocol(protocol)
    if n_tasks < 1:
        raise UsageError(f"n_tasks must be at least 1, got {n_tasks}")
    k = dataset.n_classes
    n_pixels = int(np.prod(dataset.input_shape))
    rng = np.random.default_rng(perm_seed)
    tasks = []
    for t in range(n_tasks):
        perm = np.arange(n_pixels) if (t == 0 and first_identity) else rng.permutation(n_pixels)
        offset = 0 if protocol == "domain_il" else t * k

        def permute(x: np.ndarray) -> torch.Tensor:
            return _tensor(x.reshape(len(x), -1)[:, perm].reshape(x.shape))

        tasks.append(Task(t, protocol, tuple(range(offset, offset + k)),
                          permute(dataset.x_train), _tensor(dataset.y_train + offset),
                          permute(dataset.x_test), _tensor(dataset.y_test + offset),
                          source_classes=tuple(range(k))))
    n_outputs = k if protocol == "domain_il" else n_tasks * k
    config = {"builder": "permuted", **_dataset_config(dataset), "n_tasks": n_tasks, "protocol": protocol,
              "perm_seed": perm_seed, "first_identity": first_identity}
    return Scenario(name, protocol, n_outputs, tuple(tasks), config)


def rotate_images(x: np.ndarray, angle: float) -> np.ndarray:
    """Images (N, C, H, W) rotated counter-clockwise by `angle` degrees about their centre, as float32.

    Multiples of 90 degrees on square images are exact (pixels are moved, not resampled); other
    angles use bilinear interpolation (torch `affine_grid` + `grid_sample`), with zeros where the
    rotated image does not cover the frame.
    """
    x = np.ascontiguousarray(as_float(x))
    if angle % 360 == 0:
        return x.copy()
    with warnings.catch_warnings():  # x may be a read-only (cached) array; it is only read here
        warnings.simplefilter("ignore", UserWarning)
        images = torch.from_numpy(x)
    height, width = images.shape[-2:]
    if angle % 90 == 0 and height == width:
        return torch.rot90(images, k=int(angle // 90) % 4, dims=(-2, -1)).contiguous().numpy()
    theta = np.deg2rad(angle)
    cos, sin = float(np.cos(theta)), float(np.sin(theta))
    # affine_grid maps output coordinates to input coordinates in [-1, 1] (x right, y down), so an
    # image turned counter-clockwise on screen samples its input through the clockwise rotation.
    matrix = torch.tensor([[cos, -sin * height / width, 0.0], [sin * width / height, cos, 0.0]],
                          dtype=torch.float32)
    out = []
    for start in range(0, len(images), 4096):
        chunk = images[start:start + 4096]
        grid = F.affine_grid(matrix.expand(len(chunk), 2, 3), list(chunk.shape), align_corners=False)
        out.append(F.grid_sample(chunk, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    return torch.cat(out).clamp_(0.0, 1.0).numpy() if out else x.copy()


def rotated(dataset: ArrayDataset, n_tasks: int, protocol: str = "domain_il",
            angles: Sequence[float] | None = None, angle_step: float = 45.0,
            name: str = "rotated") -> Scenario:
    """Every task holds all classes, rotated by its own fixed angle (degrees, counter-clockwise).

    The angles are given explicitly (one per task) or are 0, `angle_step`, 2 * `angle_step`, ...
    (the first task is unrotated). Output units as in `permuted`: under `class_il` and `task_il`
    task t, class c -> unit t*K + c; under `domain_il` all tasks share the K units.
    """
    check_protocol(protocol)
    if n_tasks < 1:
        raise UsageError(f"n_tasks must be at least 1, got {n_tasks}")
    if angles is None:
        angles = [t * float(angle_step) for t in range(n_tasks)]
    angles = [float(a) for a in angles]
    if len(angles) != n_tasks:
        raise UsageError(f"angles must give one angle per task: {n_tasks} tasks, {len(angles)} angles")
    if len(dataset.input_shape) != 3:
        raise UsageError(f"rotated needs images (C, H, W); {dataset.name} has inputs of shape {dataset.input_shape}")
    k = dataset.n_classes
    tasks = []
    for t, angle in enumerate(angles):
        offset = 0 if protocol == "domain_il" else t * k
        tasks.append(Task(t, protocol, tuple(range(offset, offset + k)),
                          _tensor(rotate_images(dataset.x_train, angle)), _tensor(dataset.y_train + offset),
                          _tensor(rotate_images(dataset.x_test, angle)), _tensor(dataset.y_test + offset),
                          source_classes=tuple(range(k))))
    n_outputs = k if protocol == "domain_il" else n_tasks * k
    config = {"builder": "rotated", **_dataset_config(dataset), "n_tasks": n_tasks, "protocol": protocol,
              "angles": angles}
    return Scenario(name, protocol, n_outputs, tuple(tasks), config)


BYTE_VOCABULARY = 256  # text streams model bytes: 256 symbols


def text(domains: Sequence[str], train_bytes: int = 65536, eval_bytes: int = 16384, context: int = 128,
         split_seed: int = 0, eval_fraction: float = 0.1, eval_split: str = "test",
         text_sha256: dict[str, str] | None = None, protocol: str = "domain_il", name: str = "text") -> Scenario:
    """A continual language-modelling stream: task t is text domain `domains[t]` (clbench.text_data).

    Each domain is split by document (`split_seed`, `eval_fraction`; see `text_data.split_domain`).
    A task trains on the first `train_bytes` bytes of its training text, cut into consecutive windows
    of `context` bytes whose targets are the next bytes, and is evaluated on `eval_bytes` of its
    held-out text (all of it when shorter), in windows spread evenly over the held-out documents. Tokens are bytes, so all tasks share the 256
    output units (`domain_il`). `eval_split="val"` splits the training text once more, the same way,
    and evaluates on that part (for tuning). `text_sha256` (recorded by the run's config) must
    match each domain's text. The scenario's measure is bits per character (`bpc`).
    """
    from clbench import text_data

    if protocol != "domain_il":
        raise UsageError(f"text streams share the {BYTE_VOCABULARY} byte units across domains: protocol must be "
                         f"domain_il, got {protocol!r}")
    domains = [str(d) for d in ([domains] if isinstance(domains, str) else domains)]
    if not domains:
        raise UsageError("a text stream needs at least one domain")
    for key, value in (("train_bytes", train_bytes), ("eval_bytes", eval_bytes), ("context", context)):
        if not isinstance(value, int) or value < 1:
            raise UsageError(f"{key} must be a positive integer, got {value!r}")
    if train_bytes < context or eval_bytes < context:
        raise UsageError(f"train_bytes and eval_bytes must be at least one context ({context} bytes)")
    if not 0 < eval_fraction < 1:
        raise UsageError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    check_eval_split(eval_split)
    tasks, checksums = [], {}
    for t, domain_name in enumerate(domains):
        domain = text_data.load_domain(domain_name)
        checksums[domain_name] = domain.sha256
        if text_sha256 is not None and text_sha256.get(domain_name) != domain.sha256:
            raise DataError(f"text domain {domain_name!r} ({domain.where}) changed since this run was planned "
                            f"(sha256 {domain.sha256}, the run's config says {text_sha256.get(domain_name)}): "
                            f"plan the run again")
        train, held = text_data.split_domain(domain, split_seed, eval_fraction)
        if eval_split == "val":
            train, held = text_data.split_domain(text_data.TextDomain(domain_name, domain.where, train),
                                                 split_seed + 1, eval_fraction)
        train_text, held_text = text_data.join(train), text_data.join(held)
        if len(train_text) < train_bytes + 1:
            raise DataError(f"text domain {domain_name!r} ({domain.where}) has {len(train_text)} bytes of training "
                            f"text, fewer than train_bytes={train_bytes} (+1): lower train_bytes or add documents")
        if len(held_text) < context + 1:
            raise DataError(f"text domain {domain_name!r} ({domain.where}) holds out {len(held_text)} bytes, "
                            f"fewer than one context of {context} (+1): add documents or raise eval_fraction")
        x_train, y_train = text_data.windows(train_text, train_bytes, context)
        x_test, y_test = text_data.spread_windows(held_text, eval_bytes, context)
        tasks.append(Task(t, protocol, tuple(range(BYTE_VOCABULARY)), torch.from_numpy(x_train),
                          torch.from_numpy(y_train), torch.from_numpy(x_test), torch.from_numpy(y_test)))
    config = {"builder": "text", "domains": domains, "train_bytes": train_bytes, "eval_bytes": eval_bytes,
              "context": context, "split_seed": split_seed, "eval_fraction": eval_fraction, "protocol": protocol,
              "measure": "bpc", "text_sha256": checksums}
    return Scenario(name, protocol, BYTE_VOCABULARY, tuple(tasks), config)


BUILDERS = {"split": split, "permuted": permuted, "rotated": rotated, "text": text}
DATALESS_BUILDERS = ("text",)  # builders that read their own data (no `dataset`)
DATASET_OPTIONS = ("test_fraction", "split_seed")  # passed to the dataset source, not the builder


def build_scenario(config: dict[str, Any]) -> Scenario:
    """A scenario from its config: `builder`, `dataset`, the builder's arguments, `protocol`,
    and optionally `eval_split="val"` to evaluate on a held-out part of the training data.

    `dataset` is a source name of `clbench.data.SOURCES` or `npz:PATH`; `test_fraction` and
    `split_seed` set how `npz:` and `mnist10k` data without a test split are split.
    """
    from clbench.errors import unknown_name_error

    config = dict(config)
    builder_name = config.pop("builder", None)
    if builder_name not in BUILDERS:
        raise unknown_name_error("scenario builder", str(builder_name), BUILDERS)
    if builder_name in DATALESS_BUILDERS:  # reads its own data, checks eval_split itself
        config.pop("measure", None)  # declared by the builder itself
        name = config.pop("name", builder_name)
        if "stream" in config:  # a stream's anytime rows are accuracies
            raise UsageError(f"scenario {name!r}: a {builder_name} scenario runs task by task; it takes no stream table")
        data, eval_split, stream = (), config.get("eval_split", "test"), None
    else:
        options = {key: config.pop(key) for key in DATASET_OPTIONS if key in config}
        expected_sha256 = config.pop("dataset_sha256", None)
        dataset = load(config.pop("dataset", "digits"), **options)
        if expected_sha256 is not None and dataset.info.get("sha256") != expected_sha256:
            raise DataError(f"{dataset.info.get('file', dataset.name)} changed since this run was planned "
                            f"(sha256 {dataset.info.get('sha256')}, the run's config says {expected_sha256}): "
                            f"plan the run again")
        eval_split = config.pop("eval_split", "test")
        if check_eval_split(eval_split) == "val":
            dataset = dataset.validation()
        name = config.pop("name", builder_name)
        stream = config.pop("stream", None)
        if stream is not None:
            from clbench.streams import check_stream

            stream = check_stream(stream, f"scenario {name!r} stream")
        data = (dataset,)
    try:
        scenario = BUILDERS[builder_name](*data, name=name, **config)
    except TypeError as err:
        raise UsageError(f"bad arguments for scenario builder {builder_name!r}: {err}") from None
    scenario.config.update(name=name, eval_split=eval_split, **({"stream": stream} if stream else {}))
    return scenario
