"""The IDX layout of a local paper source (MNIST-family files): parsing against arrays the
test writes itself, the errors for corrupt files, the protocol's split rules on top, and the
real Fashion-MNIST files of Debian's dataset-fashion-mnist package when it is installed."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import datasets
import numpy as np
import pytest

from mergelab.data import paper as P
from mergelab.data.paper.idx import find_idx, read_idx, read_idx_split

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def _idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    """The IDX encoding written from the format's definition: 0x00 0x00, type 0x08
    (unsigned byte), ndim, then each dimension as a big-endian uint32, then the bytes."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    if magic is None:
        magic = 0x0800 | arr.ndim
    head = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return head + arr.tobytes()


def _write(path: Path, data: bytes, gz: bool) -> Path:
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def _split_arrays(n: int, n_classes: int, seed: int, h: int = 5, w: int = 4):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, h, w), dtype=np.uint8)
    labels = np.arange(n) % n_classes
    rng.shuffle(labels)
    return images, labels


def _idx_folder(root: Path, sizes: dict[str, int], n_classes: int = 10, gz: bool = True):
    """IDX files for the splits in ``sizes`` ("train", "t10k"); returns their arrays."""
    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for k, (prefix, n) in enumerate(sizes.items()):
        images, labels = _split_arrays(n, n_classes, seed=k)
        _write(root / f"{prefix}-images-idx3-ubyte", _idx_bytes(images), gz)
        _write(root / f"{prefix}-labels-idx1-ubyte", _idx_bytes(labels), gz)
        arrays[prefix] = (images, labels)
    return arrays


def _pixels(ds) -> np.ndarray:
    return np.stack([np.asarray(im) for im in ds["image"]])


# ---------------------------------------------------------------- parsing

@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_split_returns_the_written_arrays(tmp_path, gz):
    arrays = _idx_folder(tmp_path, {"train": 7, "t10k": 3}, n_classes=3, gz=gz)
    found = find_idx(tmp_path)
    assert set(found) == {"train", "test"}
    assert found["test"][0].name == "t10k-images-idx3-ubyte" + (".gz" if gz else "")
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = read_idx_split(*found[split])
        assert images.shape == arrays[prefix][0].shape and images.dtype == np.uint8
        assert np.array_equal(images, arrays[prefix][0])  # [n, h, w] in header order
        assert labels.dtype == np.int64 and np.array_equal(labels, arrays[prefix][1])


def test_uncompressed_file_wins_over_gz(tmp_path):
    _idx_folder(tmp_path, {"train": 4}, gz=True)
    _idx_folder(tmp_path, {"train": 4}, gz=False)
    assert [f.name for f in find_idx(tmp_path)["train"]] == [
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte"]


def test_wrong_magic_names_file_and_numbers(tmp_path):
    images, _ = _split_arrays(3, 2, 0)
    f = _write(tmp_path / "x-images-idx3-ubyte", _idx_bytes(images, magic=0x0801), gz=False)
    with pytest.raises(P.PaperDataError, match=r"x-images-idx3-ubyte: magic number "
                                               r"0x00000801, expected 0x00000803"):
        read_idx(f, 3)
    f = _write(tmp_path / "int32", _idx_bytes(images, magic=0x0C03), gz=True)
    with pytest.raises(P.PaperDataError, match=r"int32.gz: magic number 0x00000c03"):
        read_idx(f, 3)


@pytest.mark.parametrize("cut, what", [(5, "truncated"), (-1, "trailing bytes"),
                                       (85, "shorter than its 16-byte header")])
def test_size_disagreeing_with_header_names_file(tmp_path, cut, what):
    images, _ = _split_arrays(4, 2, 0)
    data = _idx_bytes(images)
    data = data + b"\0" if cut < 0 else data[:len(data) - cut]
    f = _write(tmp_path / "train-images-idx3-ubyte", data, gz=False)
    with pytest.raises(P.PaperDataError, match=f"train-images-idx3-ubyte.*{what}"):
        read_idx(f, 3)


def test_truncated_gzip_names_file(tmp_path):
    images, _ = _split_arrays(50, 2, 0)
    f = _write(tmp_path / "train-images-idx3-ubyte", _idx_bytes(images), gz=True)
    f.write_bytes(f.read_bytes()[:-30])
    with pytest.raises(P.PaperDataError, match=r"train-images-idx3-ubyte.gz: cannot decompress"):
        read_idx(f, 3)


def test_count_mismatch_names_both_files(tmp_path):
    images, labels = _split_arrays(6, 2, 0)
    _write(tmp_path / "train-images-idx3-ubyte", _idx_bytes(images), gz=False)
    _write(tmp_path / "train-labels-idx1-ubyte", _idx_bytes(labels[:5]), gz=False)
    with pytest.raises(P.PaperDataError, match=r"train-images-idx3-ubyte \(6 images\) and "
                                               r".*train-labels-idx1-ubyte \(5 labels\)"):
        read_idx_split(*find_idx(tmp_path)["train"])


def test_images_without_labels_names_the_missing_file(tmp_path):
    _idx_folder(tmp_path, {"train": 4, "t10k": 2})
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(P.PaperDataError, match=r"FashionMNIST.*t10k-images-idx3-ubyte.gz has "
                                               r"no matching t10k-labels-idx1-ubyte"):
        P.prepare_task("FashionMNIST", {"source": "local", "path": str(tmp_path)},
                       tmp_path / "out")


# ---------------------------------------------------------------- prepare_task on IDX

def test_fashion_mnist_idx_full_protocol(tmp_path):
    arrays = _idx_folder(tmp_path / "fm", {"train": 30, "t10k": 10})
    out = tmp_path / "data" / "FashionMNIST"
    P.prepare_task("FashionMNIST", {"source": "local", "path": str(tmp_path / "fm")}, out,
                   seed=0)
    dsd = datasets.load_from_disk(str(out))
    src = json.loads((out / "mergelab_source.json").read_text())
    assert src["format"] == "idx" and src["split_rule"] == "full_train10"
    assert src["idx_files"]["test"] == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert {k: len(v) for k, v in dsd.items()} == {"train": 27, "validation": 3, "test": 10}
    names = dsd["test"].features["label"].names
    assert names == list(P.HUB_TASKS["FashionMNIST"].classnames)
    assert src["classnames_source"] == "explicit"
    # the full rule's seeded random_split of the train file, test in file order
    tr_idx, va_idx = P.full_split_indices(30, 0)
    images, labels = arrays["train"]
    assert np.array_equal(_pixels(dsd["validation"]), images[va_idx])
    assert dsd["train"]["label"] == labels[tr_idx].tolist()
    assert np.array_equal(_pixels(dsd["test"]), arrays["t10k"][0])
    assert dsd["test"]["label"] == arrays["t10k"][1].tolist()
    assert dsd["test"][0]["image"].mode == "L"


def test_mnist_idx_lora_protocol_validation_from_test(tmp_path):
    arrays = _idx_folder(tmp_path / "mnist", {"train": 12, "t10k": 10}, gz=False)
    out = tmp_path / "out"
    P.prepare_task("MNIST", {"source": "local", "path": str(tmp_path / "mnist"),
                             "split_protocol": "lora"}, out, seed=3)
    dsd = datasets.load_from_disk(str(out))
    val_idx, test_idx = P.test_split_indices(10, 3)
    assert len(dsd["train"]) == 12
    assert dsd["validation"]["label"] == arrays["t10k"][1][val_idx].tolist()
    assert dsd["test"]["label"] == arrays["t10k"][1][test_idx].tolist()


def test_custom_task_gets_digit_class_names(tmp_path):
    _idx_folder(tmp_path / "src", {"train": 10, "t10k": 4}, n_classes=4)
    out = tmp_path / "out"
    P.prepare_task("MyDigits", {"source": "local", "path": str(tmp_path / "src")}, out)
    assert datasets.load_from_disk(str(out))["train"].features["label"].names == \
        ["0", "1", "2", "3"]


def test_class_count_disagreeing_with_paper_list(tmp_path):
    _idx_folder(tmp_path / "src", {"train": 12, "t10k": 4}, n_classes=12)
    with pytest.raises(P.PaperDataError, match="12 classes but the paper's class list has 10"):
        P.prepare_task("FashionMNIST", {"source": "local", "path": str(tmp_path / "src")},
                       tmp_path / "out")


def test_corrupt_file_error_names_task_and_file(tmp_path):
    _idx_folder(tmp_path / "src", {"train": 10, "t10k": 4}, gz=False)
    f = tmp_path / "src" / "t10k-labels-idx1-ubyte"
    f.write_bytes(f.read_bytes()[:-1])
    with pytest.raises(P.PaperDataError, match=r"task 'KMNIST': IDX file .*t10k-labels-idx1-"
                                               r"ubyte: header says shape \(4,\)"):
        P.prepare_task("KMNIST", {"source": "local", "path": str(tmp_path / "src")},
                       tmp_path / "out")


def test_idx_train_only_is_missing_test_split(tmp_path):
    _idx_folder(tmp_path / "src", {"train": 10})
    with pytest.raises(P.PaperDataError, match="has no 'test' split"):
        P.prepare_task("FashionMNIST", {"source": "local", "path": str(tmp_path / "src")},
                       tmp_path / "out")


# ---------------------------------------------------------------- the real Debian files

def _need_debian_fashion():
    if not DEBIAN_FASHION.is_dir():
        pytest.skip(f"dataset-fashion-mnist (Debian) not installed: {DEBIAN_FASHION} absent")


def test_debian_fashion_mnist_files():
    _need_debian_fashion()
    found = find_idx(DEBIAN_FASHION)
    train_x, train_y = read_idx_split(*found["train"])
    test_x, test_y = read_idx_split(*found["test"])
    assert train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28)
    assert sorted(set(train_y.tolist())) == list(range(10))
    assert np.bincount(train_y).tolist() == [6000] * 10
    assert np.bincount(test_y).tolist() == [1000] * 10


@pytest.mark.slow
def test_debian_fashion_mnist_prepared(tmp_path):
    _need_debian_fashion()
    out = tmp_path / "FashionMNIST"
    info = P.prepare_task("FashionMNIST", {"source": "local", "path": str(DEBIAN_FASHION)}, out)
    assert info["sizes"] == {"train": 55000, "validation": 5000, "test": 10000}  # 10 %, capped
    assert info["num_classes"] == 10 and info["format"] == "idx"
    dsd = datasets.load_from_disk(str(out))
    test_x, test_y = read_idx_split(*find_idx(DEBIAN_FASHION)["test"])
    assert np.array_equal(np.asarray(dsd["test"][9999]["image"]), test_x[9999])
    assert dsd["test"].features["label"].names[0] == "T - shirt / top"
