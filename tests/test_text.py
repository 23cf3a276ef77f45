"""Text streams: domains and their split, the text builder, bits per character, the Transformer LM,
and the sequence versions of the SGD learners."""
from __future__ import annotations

import io
import json
import math
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from clbench import metrics, text_data, text_fetch
from clbench.data import DataError, MissingDataError
from clbench.errors import UsageError
from clbench.configs import resolve
from clbench.models import build_backbone
from clbench.scenario_names import scenario_config
from clbench.results import matrix_from_rows, read_run, run_id, write_run
from clbench.runner import bits_by_position, bits_per_character, run
from clbench.scenario import Task, build_scenario, text

SMALL_MODEL = {"backbone": "transformer", "widths": (16, 1, 2), "epochs": 1, "batch_size": 8, "lr": 0.01}


def write_domain(folder: Path, documents: dict[str, str]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in documents.items():
        (folder / name).write_text(content, encoding="utf-8")
    return f"text:{folder}"


@pytest.fixture
def two_domains(tmp_path: Path) -> list[str]:
    letters = write_domain(tmp_path / "letters", {f"d{i}.txt": "abcab" * 200 for i in range(10)})
    digits = write_domain(tmp_path / "digits", {f"d{i}.txt": "0123 " * 200 for i in range(10)})
    return [letters, digits]


# -- bits per character ----------------------------------------------------------------------------

@dataclass
class FixedLM:
    """A 'model' whose next-byte logits depend only on the current byte: logits = table[x]."""

    table: torch.Tensor

    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        return self.table[x]


def text_task(x: list[list[int]], y: list[list[int]]) -> Task:
    xt, yt = torch.tensor(x), torch.tensor(y)
    return Task(0, "domain_il", tuple(range(256)), xt, yt, xt, yt)


def test_uniform_model_gives_8_bits() -> None:
    task = text_task([[1, 2, 3], [4, 5, 6]], [[2, 3, 4], [5, 6, 7]])
    bpc, n = bits_per_character(FixedLM(torch.zeros(256, 256)), task)
    assert bpc == pytest.approx(8.0, abs=1e-12)
    assert n == 6


def test_bpc_equals_a_hand_computation() -> None:
    # p(next | 0) puts 1/2 on byte 1; p(next | 1) puts 1/4 on byte 0 (the rest spread evenly).
    table = torch.zeros(256, 256)
    table[0] = math.log(0.5 / 255)
    table[0, 1] = math.log(0.5)
    table[1] = math.log(0.75 / 255)
    table[1, 0] = math.log(0.25)
    task = text_task([[0, 1, 0]], [[1, 0, 1]])
    bpc, n = bits_per_character(FixedLM(table), task)
    assert n == 3
    assert bpc == pytest.approx((1.0 + 2.0 + 1.0) / 3, abs=1e-6)  # -log2(1/2), -log2(1/4), -log2(1/2)


def test_bits_by_position_splits_the_same_cross_entropy_by_position() -> None:
    table = torch.zeros(256, 256)                      # as above: 1 bit after byte 0, 2 bits after byte 1
    table[0] = math.log(0.5 / 255)
    table[0, 1] = math.log(0.5)
    table[1] = math.log(0.75 / 255)
    table[1, 0] = math.log(0.25)
    task = text_task([[0, 1, 0], [1, 0, 1]], [[1, 0, 1], [0, 1, 0]])
    by_position = bits_by_position(FixedLM(table), task)
    assert by_position.tolist() == pytest.approx([1.5, 1.5, 1.5], abs=1e-6)   # each position: one window of each
    task = text_task([[0, 1, 0], [0, 1, 0]], [[1, 0, 1], [1, 0, 1]])
    assert bits_by_position(FixedLM(table), task).tolist() == pytest.approx([1.0, 2.0, 1.0], abs=1e-6)
    assert float(bits_by_position(FixedLM(table), task).mean()) == pytest.approx(bits_per_character(FixedLM(table), task)[0])


def test_logits_of_the_wrong_shape_are_refused() -> None:
    class Flat(FixedLM):
        def predict(self, x, task_id=None):
            return torch.zeros(len(x), 256)

    with pytest.raises(ValueError, match="next-token logits"):
        bits_per_character(Flat(torch.zeros(1)), text_task([[1, 2]], [[2, 3]]))


# -- the Transformer ---------------------------------------------------------------------------------

def test_transformer_sees_no_future_tokens() -> None:
    torch.manual_seed(0)
    model = build_backbone("transformer", (12,), 256, (32, 2, 4)).eval()
    tokens = torch.randint(256, (2, 12))
    changed = tokens.clone()
    t = 5
    changed[:, t + 1] = (changed[:, t + 1] + 7) % 256
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    assert a.shape == (2, 12, 256)
    assert torch.allclose(a[:, : t + 1], b[:, : t + 1], atol=1e-6)
    assert not torch.allclose(a[:, t + 1], b[:, t + 1], atol=1e-4)  # the changed position itself does see it


def test_transformer_ties_its_output_layer_to_the_embedding_and_rejects_bad_sizes() -> None:
    model = build_backbone("transformer", (8,), 256, (32, 2, 4))
    names = [n for n, _ in model.named_parameters()]
    assert not any("head" in n or "output" in n for n in names)  # no separate output matrix
    with torch.no_grad():
        model.embedding.weight[3] += 1.0  # moving byte 3's embedding moves its logit
        logits = model(torch.zeros(1, 4, dtype=torch.long))
    assert logits[0, 0, 3] != logits[0, 0, 4]
    with pytest.raises(Exception, match="width, depth, heads"):
        build_backbone("transformer", (8,), 256, (100, 100))
    with pytest.raises(Exception, match="heads"):
        build_backbone("transformer", (8,), 256, (30, 1, 4))


def test_untrained_transformer_is_near_8_bits() -> None:
    torch.manual_seed(1)
    model = build_backbone("transformer", (64,), 256, (192, 4, 4)).eval()
    assert 1e6 < sum(p.numel() for p in model.parameters()) < 3e6  # the default small configuration
    tokens = torch.randint(256, (4, 65))

    @dataclass
    class Wrapped:
        def predict(self, x, task_id=None):
            with torch.no_grad():
                return model(x)

    bpc, _ = bits_per_character(Wrapped(), text_task(tokens[:, :-1].tolist(), tokens[:, 1:].tolist()))
    assert abs(bpc - 8.0) < 0.5


# -- domains, split, windows ---------------------------------------------------------------------------

def test_split_by_document_is_seeded_disjoint_and_about_the_fraction() -> None:
    domain = text_data.TextDomain("d", "here", tuple((f"doc{i}", bytes([65 + i]) * 100) for i in range(20)))
    train, held = text_data.split_domain(domain, split_seed=0, eval_fraction=0.1)
    assert {n for n, _ in train}.isdisjoint({n for n, _ in held})
    assert len(train) + len(held) == 20 and len(held) == 2
    assert text_data.split_domain(domain, 0) == (train, held)
    assert text_data.split_domain(domain, 1) != (train, held)


def test_single_document_is_split_by_byte_offset() -> None:
    domain = text_data.TextDomain("d", "here", (("only", bytes(range(100))),))
    (_, train), = text_data.split_domain(domain, 0, 0.1)[0]
    (_, held), = text_data.split_domain(domain, 0, 0.1)[1]
    assert train == bytes(range(90)) and held == bytes(range(90, 100))


def test_windows_targets_are_the_next_bytes() -> None:
    x, y = text_data.windows(bytes(range(50)), n_bytes=40, context=8)
    assert x.shape == y.shape == (5, 8)
    assert x[0].tolist() == list(range(8)) and y[0].tolist() == list(range(1, 9))
    assert x[1, 0] == 8


def test_embedded_domains_need_no_fetch_and_differ_in_style() -> None:
    for name in text_data.EMBEDDED:
        domain = text_data.load_domain(name)
        assert domain.n_bytes > 200_000 and len(domain.documents) > 20
    assert b"def " in text_data.join(text_data.load_domain("stdlib").documents)[:100_000]
    assert b"," in text_data.load_domain("tables").documents[0][1]


def test_bad_domains_are_one_line_errors_naming_the_folder(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.md").write_text("not a .txt file")
    with pytest.raises(DataError, match=f"no text in {empty}"):
        text_data.load_domain(f"text:{empty}")
    latin = tmp_path / "latin"
    latin.mkdir()
    (latin / "a.txt").write_bytes("caf\u00e9".encode("latin-1"))
    with pytest.raises(DataError, match=f"a.txt in {latin} is not UTF-8"):
        text_data.load_domain(f"text:{latin}")
    with pytest.raises(MissingDataError, match="is not a folder"):
        text_data.load_domain(f"text:{tmp_path / 'absent'}")
    small = write_domain(tmp_path / "small", {"a.txt": "x" * 500, "b.txt": "y" * 500})
    with pytest.raises(DataError, match=f"{tmp_path / 'small'}.*fewer than train_bytes=4096"):
        text([small], train_bytes=4096, eval_bytes=64, context=16)
    for err in (DataError, MissingDataError):
        assert issubclass(err, Exception)


def test_a_fetched_domain_that_is_missing_says_how_to_get_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CLBENCH_DATA", str(tmp_path))
    with pytest.raises(MissingDataError, match="clbench fetch shakespeare"):
        text_data.load_domain("shakespeare")
    with pytest.raises(MissingDataError, match="clbench fetch sotu"):
        text_data.load_domain("sotu/1850-1899")
    with pytest.raises(Exception, match="did you mean 'kjv'"):
        text_data.load_domain("kjb")


def test_a_fetched_domain_with_other_text_fails_its_checksum(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CLBENCH_DATA", str(tmp_path))
    write_domain(tmp_path / "text" / "spdx", {"MIT.txt": "Permission is hereby granted"})
    with pytest.raises(DataError, match="sha256"):
        text_data.load_domain("spdx")


def test_sotu_recipe_writes_one_folder_per_half_century(tmp_path: Path) -> None:
    tarball = tmp_path / "sotu.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        for year in (1790, 1861, 2001):
            raw = json.dumps({"year": year, "name": "X", "party": "n", "text": f"Speech of {year}."}).encode()
            info = tarfile.TarInfo(f"package/data/{year}_x.json")
            info.size = len(raw)
            archive.addfile(info, io.BytesIO(raw))
    text_fetch._extract_sotu(tarball, tmp_path / "out")
    found = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.txt"))
    assert found == ["1790-1849/1790_x.txt", "1850-1899/1861_x.txt", "2000-2021/2001_x.txt"]
    assert [d.split("/")[1] for d in text_fetch.SOTU_DOMAINS] == ["1790-1849", "1850-1899", "1900-1949",
                                                                 "1950-1999", "2000-2021"]


# -- the text builder and the run's config ----------------------------------------------------------

def test_text_builder_makes_byte_windows_per_domain(two_domains: list[str]) -> None:
    scenario = text(two_domains, train_bytes=1024, eval_bytes=256, context=32)
    assert scenario.n_outputs == 256 and scenario.protocol == "domain_il" and len(scenario) == 2
    assert scenario.config["measure"] == "bpc"
    first = scenario[0]
    assert first.x_train.shape == (32, 32) and first.x_test.shape == (8, 32)
    assert torch.equal(first.x_train[:, 1:], first.y_train[:, :-1])
    assert set(first.x_train.unique().tolist()) <= set(b"abc\n")
    with pytest.raises(Exception, match="domain_il"):
        text(two_domains, protocol="class_il")


def test_run_config_records_the_text_checksum(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    domain = write_domain(folder, {f"d{i}.txt": "hello world " * 100 for i in range(5)})
    config = {"builder": "text", "name": "mine", "domains": [domain], "train_bytes": 512, "eval_bytes": 128,
              "context": 16, "protocol": "domain_il"}
    first = resolve(config, "transformer", {}, 0)
    assert first["scenario"]["measure"] == "bpc"
    assert first["scenario"]["text_sha256"] == {domain: text_data.load_domain(domain).sha256}
    (folder / "d0.txt").write_text("hello there " * 100)
    second = resolve(config, "transformer", {}, 0)
    assert run_id(first) != run_id(second)
    with pytest.raises(DataError, match="changed since this run was planned"):
        build_scenario(first["scenario"])


def test_named_text_streams() -> None:
    embedded = scenario_config("text-embedded")
    assert embedded["domains"] == ["stdlib", "pydoc", "tables"] and embedded["measure"] == "bpc"
    assert scenario_config("text-six")["domains"] == list(text_fetch.TEXT_RECIPES)
    assert scenario_config("text-sotu")["domains"] == list(text_fetch.SOTU_DOMAINS)


# -- learners on text ---------------------------------------------------------------------------------

@pytest.mark.parametrize("learner", ["transformer", "ewc", "replay", "joint"])
def test_sequence_learners_write_a_bpc_matrix(learner: str, two_domains: list[str], tmp_path: Path) -> None:
    from clbench.configs import execute

    config = resolve({"builder": "text", "name": "two", "domains": two_domains, "train_bytes": 4096,
                      "eval_bytes": 256, "context": 32, "protocol": "domain_il"}, learner,
                     {**SMALL_MODEL, **({"lam": 10.0, "fisher_samples": 16} if learner == "ewc" else {})}, 0)
    rows = execute(config).rows
    assert all("bpc" in r and "accuracy" not in r for r in rows)
    assert {r["n_samples"] for r in rows} == {256}
    path = write_run(tmp_path, config, rows)
    record, stored = read_run(path)
    matrix = matrix_from_rows(stored)
    assert np.allclose(matrix, matrix_from_rows(rows))
    assert np.all(np.abs(matrix[0] - 8.0) < 0.5)   # untrained: about 8 bits
    assert matrix[1, 0] < matrix[0, 0] - 1.0        # trained on a domain: far fewer bits on it
    assert matrix[2, 1] < matrix[0, 1] - 1.0


def test_forgetting_and_transfer_on_a_lower_is_better_matrix() -> None:
    # bpc after each domain (rows) on each domain (columns); worked by hand in the README's example.
    R = np.array([[8.0, 8.0, 8.0],
                  [3.0, 6.0, 7.5],
                  [4.0, 2.5, 7.0],
                  [5.0, 3.5, 2.0]])
    values = metrics.compute(R, ["acc", "learning_acc", "bwt", "forgetting", "fwt"], "domain_il", measure="bpc")
    assert values["acc"] == pytest.approx(3.5)            # final average bpc: (5 + 3.5 + 2) / 3
    assert values["learning_acc"] == pytest.approx(2.5)   # bpc right after learning: (3 + 2.5 + 2) / 3
    assert values["forgetting"] == pytest.approx(1.5)     # rise from the best earlier bpc: (2 + 1) / 2
    assert values["bwt"] == pytest.approx(-1.5)           # -((5 - 3) + (3.5 - 2.5)) / 2: forgetting is negative
    assert values["fwt"] == pytest.approx(1.5)            # ((8 - 6) + (8 - 7)) / 2: bits saved before training


def test_evaluation_windows_are_spread_over_the_held_out_text() -> None:
    text_bytes = bytes(range(256)) * 4  # 1024 bytes
    x, y = text_data.spread_windows(text_bytes, n_bytes=64, context=16)
    assert x.shape == y.shape == (4, 16)
    assert x[:, 0].tolist() == [0, 80, 144, 224]  # window starts 0, 336, 656, 992 (mod 256): first to last
    assert np.array_equal(x[:, 1:], y[:, :-1])
    whole, _ = text_data.spread_windows(text_bytes, n_bytes=10_000, context=16)
    assert whole.shape == (63, 16)  # all of it when shorter than the budget


@pytest.mark.slow
def test_the_battery_checks_a_sequence_learner_and_catches_a_peek_at_the_future() -> None:
    from clbench.learners.transformer import Transformer
    from clbench.testing import check_learner, is_sequence_learner

    tiny = {"widths": (16, 1, 2), "batch_size": 8, "lr": 0.01}
    assert is_sequence_learner(Transformer())
    results = {r.name: r for r in check_learner(Transformer(**tiny), raise_on_failure=False)}
    assert {"no_future_tokens", "learns_each_domain", "predict_returns_logits"} <= set(results)
    assert all(r.passed for r in results.values()), [(r.name, r.detail) for r in results.values() if not r.passed]

    @dataclass
    class Peeking(Transformer):
        """Adds the next token's embedding to each position's logits: a leak the battery must catch."""

        def predict(self, x, task_id=None):
            logits = super().predict(x, task_id)
            ahead = torch.roll(x, -1, dims=1)
            return logits + torch.nn.functional.one_hot(ahead, 256).float()

    peeking = {r.name: r for r in check_learner(Peeking(**tiny), raise_on_failure=False)}
    assert not peeking["no_future_tokens"].passed


def test_an_image_backbone_on_a_text_stream_is_refused_when_the_run_is_planned() -> None:
    with pytest.raises(Exception, match="needs a sequence model, not backbone 'mlp'.*backbone=transformer"):
        resolve(scenario_config("text-embedded"), "ewc", {}, 0)


def test_a_text_scenario_takes_no_stream_table(two_domains: list[str]) -> None:
    config = {"builder": "text", "name": "two", "domains": two_domains, "train_bytes": 1024, "eval_bytes": 256,
              "context": 32, "protocol": "domain_il", "stream": {"kind": "online"}}
    with pytest.raises(UsageError, match="runs task by task; it takes no stream table"):
        build_scenario(config)


@pytest.mark.parametrize("learner", ["transformer", "ewc", "replay"])
def test_a_text_run_resumed_from_its_checkpoint_gives_the_same_bpc(learner: str, two_domains: list[str],
                                                                   tmp_path: Path) -> None:
    from clbench.checkpoint import Checkpoint
    from clbench.configs import instantiate

    config = resolve({"builder": "text", "name": "two", "domains": two_domains + two_domains[:1], "train_bytes": 1024,
                      "eval_bytes": 256, "context": 32, "protocol": "domain_il"}, learner,
                     {**SMALL_MODEL, **({"lam": 10.0, "fisher_samples": 16} if learner == "ewc" else {})}, 0)
    scenario = build_scenario(config["scenario"])
    checkpoint = Checkpoint(tmp_path / "ckpt")
    whole = run(scenario, instantiate(config), 0, checkpoint=checkpoint).rows
    assert checkpoint.latest() == 2  # the state after task 2 of 3
    resumed = run(scenario, instantiate(config), 0, checkpoint=checkpoint).rows
    assert [(r["after_task"], r["eval_task"], r["bpc"]) for r in resumed] == \
        [(r["after_task"], r["eval_task"], r["bpc"]) for r in whole]
    assert all("peak_memory_mb" in r for r in whole)


def test_a_folder_domain_is_read_once_until_its_files_change(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("first text\n")
    reads = []
    real = text_data._folder_documents
    monkeypatch.setattr(text_data, "_folder_documents", lambda *args: reads.append(args) or real(*args))
    first = text_data.load_domain(f"text:{folder}")
    assert text_data.load_domain(f"text:{folder}").sha256 == first.sha256 and len(reads) == 1
    (folder / "a.txt").write_text("other text, longer\n")
    changed = text_data.load_domain(f"text:{folder}")
    assert len(reads) == 2 and changed.sha256 != first.sha256 and b"other" in changed.documents[0][1]
    (folder / "b.txt").write_text("a new document\n")
    assert len(text_data.load_domain(f"text:{folder}").documents) == 2 and len(reads) == 3
