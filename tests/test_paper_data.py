"""Paper datasets (mergelab.data.paper): every on-disk format a researcher may have, a fake
hub dataset with hub-style column names, the offline error, and the split rules."""
from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from mergelab.data import paper as P


def _img(i: int, size: int = 8) -> Image.Image:
    rng = np.random.default_rng(i)
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


def _hf_split(n: int, n_classes: int, image_col="image", label_col="label", names=None,
              offset=0, label_feature=None) -> datasets.Dataset:
    names = names or [f"class_{c}" for c in range(n_classes)]
    feats = datasets.Features({image_col: datasets.Image(),
                               label_col: label_feature or datasets.ClassLabel(names=names)})
    labels = [(i % n_classes) for i in range(n)]
    if isinstance(label_feature, datasets.Value) and label_feature.dtype == "bool":
        labels = [bool(v) for v in labels]
    return datasets.Dataset.from_dict(
        {image_col: [_img(offset + i) for i in range(n)], label_col: labels}, features=feats)


def _imagefolder(root: Path, splits: dict[str, int], classes=("cat", "dog", "sea_lake")) -> Path:
    k = 0
    for split, n in splits.items():
        for i in range(n):
            c = classes[i % len(classes)]
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            _img(k).save(d / f"{i:04d}.png")
            k += 1
    return root


def _load(out: Path):
    dsd = datasets.load_from_disk(str(out))
    src = json.loads((out / "mergelab_source.json").read_text())
    return dsd, src


def _check_standard(dsd, n_classes: int):
    assert set(dsd) == {"train", "validation", "test"}
    for ds in dsd.values():
        assert ds.column_names == ["image", "label"]
        assert isinstance(ds.features["image"], datasets.Image)
        assert isinstance(ds.features["label"], datasets.ClassLabel)
        assert ds.features["label"].num_classes == n_classes
        assert isinstance(ds[0]["image"], Image.Image)


# ---------------------------------------------------------------- local formats

def test_imagefolder_without_val_full_rule(tmp_path):
    root = _imagefolder(tmp_path / "src", {"train": 30, "test": 9})
    out = tmp_path / "data" / "MyTask"
    info = P.prepare_task("MyTask", {"source": "local", "path": str(root)}, out, seed=0)
    dsd, src = _load(out)
    _check_standard(dsd, 3)
    # sorted class folders = labels, underscores become spaces
    assert dsd["train"].features["label"].names == ["cat", "dog", "sea lake"]
    assert {k: len(v) for k, v in dsd.items()} == {"train": 27, "validation": 3, "test": 9}
    assert src["format"] == "imagefolder" and src["source"] == "local"
    assert src["split_rule"] == "full_train10" and info["sizes"]["validation"] == 3
    assert not list(out.parent.glob(".MyTask.tmp*"))  # temp dir cleaned up


def test_imagefolder_with_val_lora_own_validation(tmp_path):
    classes = [f"c{i}" for i in range(10)]  # 10 folders = EuroSAT's paper class list
    root = _imagefolder(tmp_path / "eurosat", {"train": 20, "val": 10, "test": 10}, classes)
    out = tmp_path / "data" / "EuroSAT"
    P.prepare_task("EuroSAT", {"source": "local", "path": str(root), "split_protocol": "lora"},
                   out)
    dsd, src = _load(out)
    _check_standard(dsd, 10)
    assert {k: len(v) for k, v in dsd.items()} == {"train": 20, "validation": 10, "test": 10}
    assert src["split_rule"] == "own_validation"
    # the standard CLIP class names replace the folder names (same count, sorted order)
    assert dsd["test"].features["label"].names[0] == "annual crop land"
    assert src["classnames_source"] == "explicit"


def test_imagefolder_val_ignored_under_full_protocol(tmp_path):
    root = _imagefolder(tmp_path / "dtd", {"train": 20, "val": 6, "test": 6})
    P.prepare_task("Custom", {"source": "local", "path": str(root)}, tmp_path / "out")
    dsd, src = _load(tmp_path / "out")
    assert len(dsd["validation"]) == 2 and len(dsd["train"]) == 18
    assert any("not used" in n for n in src["notes"])


def test_saved_datasetdict_with_hub_columns(tmp_path):
    names = [f"fine {i}" for i in range(5)]
    raw = datasets.DatasetDict({
        "train": _hf_split(40, 5, "img", "fine_label", names),
        "test": _hf_split(10, 5, "img", "fine_label", names, offset=100)})
    raw.save_to_disk(str(tmp_path / "saved"))
    out = tmp_path / "data" / "Other"
    P.prepare_task("Other", {"source": "local", "path": str(tmp_path / "saved")}, out)
    dsd, src = _load(out)
    _check_standard(dsd, 5)
    assert src["format"] == "saved_datasetdict"
    assert src["columns"] == {"image": "img", "label": "fine_label"}
    assert dsd["test"].features["label"].names == names
    assert dsd["test"]["label"] == raw["test"]["fine_label"]


@pytest.mark.parametrize("layout", ["flat", "hub"])
def test_parquet_folder(tmp_path, layout):
    root = tmp_path / "pq"
    root.mkdir()
    tr, te = _hf_split(20, 4), _hf_split(8, 4, offset=50)
    if layout == "flat":
        tr.to_parquet(str(root / "train.parquet"))
        te.to_parquet(str(root / "test.parquet"))
    else:  # the hub's own layout: data/<split>-00000-of-00001.parquet
        (root / "data").mkdir()
        tr.to_parquet(str(root / "data" / "train-00000-of-00001.parquet"))
        te.to_parquet(str(root / "data" / "test-00000-of-00001.parquet"))
    out = tmp_path / "data" / "PQ"
    P.prepare_task("PQ", {"source": "local", "path": str(root)}, out)
    dsd, src = _load(out)
    _check_standard(dsd, 4)
    assert src["format"] == "parquet"
    assert {k: len(v) for k, v in dsd.items()} == {"train": 18, "validation": 2, "test": 8}


def test_missing_split_names_path_and_split(tmp_path):
    root = _imagefolder(tmp_path / "only_train", {"train": 6})
    with pytest.raises(P.PaperDataError) as e:
        P.prepare_task("T", {"source": "local", "path": str(root)}, tmp_path / "out")
    assert "'test'" in str(e.value) and str(root) in str(e.value)
    assert not (tmp_path / "out").exists()
    raw = datasets.DatasetDict({"train": _hf_split(6, 2)})
    raw.save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(P.PaperDataError, match=r"no 'test' split"):
        P.prepare_task("T", {"source": "local", "path": str(tmp_path / "saved")}, tmp_path / "o2")


def test_missing_local_path_and_unknown_layout(tmp_path):
    with pytest.raises(P.PaperDataError, match="does not exist"):
        P.prepare_task("T", {"source": "local", "path": str(tmp_path / "nope")}, tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(P.PaperDataError, match="no dataset found"):
        P.prepare_task("T", {"source": "local", "path": str(tmp_path / "empty")}, tmp_path / "o")


def test_label_out_of_range_names_task_and_label(tmp_path):
    # MNIST's paper class list has 10 names; an integer label 12 is outside it
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    mk = lambda labels: datasets.Dataset.from_dict(  # noqa: E731
        {"image": [_img(i) for i in range(len(labels))], "label": labels}, features=feats)
    raw = datasets.DatasetDict({"train": mk([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
                                "test": mk([1, 12, 3])})
    raw.save_to_disk(str(tmp_path / "mnist"))
    with pytest.raises(P.PaperDataError) as e:
        P.prepare_task("MNIST", {"source": "local", "path": str(tmp_path / "mnist")},
                       tmp_path / "out")
    msg = str(e.value)
    assert "MNIST" in msg and "label 12" in msg and "'test'" in msg


def test_val_class_folder_not_in_train(tmp_path):
    root = _imagefolder(tmp_path / "f", {"train": 6, "test": 3})
    (root / "test" / "zebra").mkdir()
    _img(0).save(root / "test" / "zebra" / "x.png")
    with pytest.raises(P.PaperDataError, match="zebra"):
        P.prepare_task("T", {"source": "local", "path": str(root)}, tmp_path / "out")


# ---------------------------------------------------------------- hub (faked)

@pytest.fixture
def fake_hub(monkeypatch):
    calls = []

    def install(dsd):
        def load_dataset(path, name=None, cache_dir=None, **kw):
            calls.append((path, name, cache_dir))
            return dsd
        monkeypatch.setattr(datasets, "load_dataset", load_dataset)
        return calls
    return install


def test_hub_column_mapping_img_fine_label(tmp_path, fake_hub):
    names = [f"thing_{i}" for i in range(100)]
    dsd = datasets.DatasetDict({
        "train": _hf_split(200, 100, "img", "fine_label", names),
        "test": _hf_split(50, 100, "img", "fine_label", names, offset=500)})
    calls = fake_hub(dsd)
    out = tmp_path / "data" / "CIFAR100"
    P.prepare_task("CIFAR100", {"source": "hub"}, out, seed=0, cache_dir=str(tmp_path / "hf"))
    assert calls == [("tanganke/cifar100", None, str(tmp_path / "hf"))]
    got, src = _load(out)
    _check_standard(got, 100)
    assert got["train"].features["label"].names[3] == "thing 3"
    assert src["columns"] == {"image": "img", "label": "fine_label"}
    assert src["hub_id"] == "tanganke/cifar100" and src["format"] == "hub"
    assert {k: len(v) for k, v in got.items()} == {"train": 180, "validation": 20, "test": 50}
    # validation = exactly random_split's second part with seed 0
    _, va = torch.utils.data.random_split(range(200), [180, 20],
                                          generator=torch.Generator().manual_seed(0))
    assert got["validation"]["label"] == [dsd["train"]["fine_label"][i] for i in va.indices]


def test_hub_bool_labels_and_hub_split_names(tmp_path, fake_hub):
    # PCAM: label is a bool, the hub's own validation split is 'valid'
    b = datasets.Value("bool")
    fake_hub(datasets.DatasetDict({"train": _hf_split(20, 2, label_feature=b),
                                   "valid": _hf_split(6, 2, label_feature=b),
                                   "test": _hf_split(8, 2, label_feature=b)}))
    P.prepare_task("PCAM", {"source": "hub"}, tmp_path / "pcam")
    got, src = _load(tmp_path / "pcam")
    assert got["test"].features["label"].names == list(P.HUB_TASKS["PCAM"].classnames)
    assert got["test"]["label"] == [0, 1] * 4
    # Food101: the hub's 'validation' split is the test set
    fake_hub(datasets.DatasetDict({"train": _hf_split(30, 3), "validation": _hf_split(7, 3)}))
    P.prepare_task("Food101", {"source": "hub"}, tmp_path / "food")
    got, src = _load(tmp_path / "food")
    assert len(got["test"]) == 7 and src["source_splits"]["test"] == "validation"
    # FER2013: webdataset columns jpg/cls with integer labels and an explicit class list
    feats = datasets.Features({"jpg": datasets.Image(), "cls": datasets.Value("int64"),
                               "__key__": datasets.Value("string")})
    mk = lambda n: datasets.Dataset.from_dict(  # noqa: E731
        {"jpg": [_img(i) for i in range(n)], "cls": [i % 7 for i in range(n)],
         "__key__": [str(i) for i in range(n)]}, features=feats)
    fake_hub(datasets.DatasetDict({"train": mk(21), "test": mk(7)}))
    P.prepare_task("FER2013", {"source": "hub"}, tmp_path / "fer")
    got, src = _load(tmp_path / "fer")
    assert got["train"].features["label"].names[0] == "angry" and src["num_classes"] == 7


def test_hub_lora_rule_takes_validation_from_test(tmp_path, fake_hub):
    dsd = datasets.DatasetDict({"train": _hf_split(30, 10), "test": _hf_split(50, 10, offset=99)})
    fake_hub(dsd)
    P.prepare_task("MNIST", {"source": "hub", "split_protocol": "lora"}, tmp_path / "m")
    got, src = _load(tmp_path / "m")
    assert {k: len(v) for k, v in got.items()} == {"train": 30, "validation": 10, "test": 40}
    assert src["split_rule"] == "lora_test20"
    # DTD under lora without a hub validation split falls back to the full rule, recorded
    fake_hub(datasets.DatasetDict({"train": _hf_split(47 * 2, 47),
                                   "test": _hf_split(47, 47)}))
    P.prepare_task("DTD", {"source": "hub", "split_protocol": "lora"}, tmp_path / "dtd")
    got, src = _load(tmp_path / "dtd")
    assert len(got["validation"]) == 9 and "no validation split" in src["notes"][0]


def test_emnist_variant_recorded(tmp_path, fake_hub):
    calls = fake_hub(datasets.DatasetDict({"train": _hf_split(20, 10),
                                           "test": _hf_split(10, 10)}))
    cfg = {"source": "hub", "hub_id": "tanganke/emnist_mnist"}
    P.prepare_task("EMNIST", cfg, tmp_path / "e")
    _, src = _load(tmp_path / "e")
    assert calls[-1][0] == "tanganke/emnist_mnist" and src["variant"] == "digits"
    assert P.templates_for("EMNIST", cfg) == ['a photo of the number: "{}".']
    assert "digit character" in P.templates_for("EMNIST", {"source": "hub"})[0]
    assert P.hub_task("EMNIST").variant == "letters"


def test_offline_error_names_hub_id_cache_and_command(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise ConnectionError("Couldn't reach 'tanganke/dtd' on the Hub (LocalEntryNotFoundError)")
    monkeypatch.setattr(datasets, "load_dataset", offline)
    cache = str(tmp_path / "hf_cache")
    with pytest.raises(P.PaperDataError) as e:
        P.prepare_task("DTD", {"source": "hub"}, tmp_path / "out", cache_dir=cache)
    msg = str(e.value)
    assert "tanganke/dtd" in msg and cache in msg
    assert "python -m mergelab.cli paper-data download --tasks DTD" in msg
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp*"))


def test_unknown_hub_task_needs_hub_id():
    with pytest.raises(P.PaperDataError, match="hub_id"):
        P.hub_task("NotATask", {"source": "hub"})
    assert P.hub_task("NotATask", {"hub_id": "me/x"}).hub_id == "me/x"


# ---------------------------------------------------------------- split rule, templates

def test_full_split_sizes_cap_and_determinism():
    tr, va = P.full_split_indices(1000, seed=0)
    assert len(va) == 100 and len(tr) == 900 and sorted(tr + va) == list(range(1000))
    tr, va = P.full_split_indices(73257, seed=0)  # SVHN train: capped at 5,000
    assert len(va) == 5000 and len(tr) == 68257
    assert P.full_split_indices(1000, seed=0) == P.full_split_indices(1000, seed=0)
    assert P.full_split_indices(1000, seed=0)[1] != P.full_split_indices(1000, seed=1)[1]
    ref = torch.utils.data.random_split(range(1000), [900, 100],
                                        generator=torch.Generator().manual_seed(0))
    assert P.full_split_indices(1000, 0) == (list(ref[0].indices), list(ref[1].indices))
    va, te = P.test_split_indices(10000, seed=0)
    assert len(va) == 2000 and len(te) == 8000 and not set(va) & set(te)


def test_split_rules_per_protocol():
    assert P.split_rule("Cars", "full") == "full_train10"
    assert P.split_rule("Cars", "lora") == "lora_test20"
    assert P.split_rule("RESISC45", "lora") == "own_validation"
    assert P.split_rule("CIFAR100", "lora") == "full_train10"


def test_templates_and_classnames_for_every_task():
    protocol_tasks = ["Cars", "DTD", "EuroSAT", "GTSRB", "MNIST", "RESISC45", "SVHN", "SUN397",
                      "STL10", "OxfordIIITPet", "Flowers102", "CIFAR100", "PCAM", "FER2013",
                      "CIFAR10", "Food101", "FashionMNIST", "RenderedSST2", "EMNIST", "KMNIST"]
    assert set(P.HUB_TASKS) == set(protocol_tasks)
    for t, hub in P.HUB_TASKS.items():
        tpl = P.templates_for(t)
        assert tpl and all(s.count("{}") == 1 for s in tpl), t
        assert len(set(tpl)) == len(tpl), t
        assert "/" in hub.hub_id
    n = {t: len(h.classnames) for t, h in P.HUB_TASKS.items() if h.classnames}
    assert n["GTSRB"] == 43 and n["EuroSAT"] == 10 and n["EMNIST"] == 26 and n["PCAM"] == 2
    assert len(P.templates_for("CIFAR10")) == 18 and len(P.templates_for("RESISC45")) == 18
    assert P.templates_for("EuroSAT")[0] == "a centered satellite photo of {}."
    assert P.templates_for("MNIST") == ['a photo of the number: "{}".']
    assert P.templates_for("SomethingElse") == ["a photo of a {}."]
    assert P.hub_task("SVHN").config == "cropped_digits"


def test_paper_data_command_lists_and_downloads(tmp_path, fake_hub, capsys):
    from mergelab.cli import run
    assert run(["paper-data", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == list(P.HUB_TASKS)
    assert "ufldl-stanford/svhn (cropped_digits)" in lines[list(P.HUB_TASKS).index("SVHN")]
    calls = fake_hub(datasets.DatasetDict({"train": _hf_split(5, 2), "test": _hf_split(3, 2)}))
    assert run(["paper-data", "download", "--tasks", "DTD", "MNIST", "--cache-dir", str(tmp_path)]) == 0
    assert calls == [("tanganke/dtd", None, str(tmp_path)), ("ylecun/mnist", None, str(tmp_path))]
    assert "  splits: train=5, test=3" in capsys.readouterr().out
