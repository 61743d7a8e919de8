"""The offline mini suite, the pretraining corpus and the task loader (small builds, < 30 s)."""
from __future__ import annotations

import hashlib
import json
import math
import shutil

import numpy as np
import pytest

datasets = pytest.importorskip("datasets")

from mergelab.data import (DEFAULT_TASKS, MINI_TASKS, build_corpus, build_task, classnames,  # noqa: E402
                           load_task_splits, split_to_tensor, templates_for)
from mergelab.data import mini  # noqa: E402
from mergelab.io import ArtifactError  # noqa: E402

N_TRAIN, N_TEST = 60, 30


def _tree_bytes(path):
    return {p.relative_to(path).as_posix(): p.read_bytes()
            for p in sorted(path.rglob("*")) if p.is_file() and p.name != "state.json"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini")
    build_task("signs", root / "signs", seed=0, n_train=N_TRAIN, n_test=N_TEST)
    return root


def test_registry():
    assert len(DEFAULT_TASKS) == 8 and len(set(DEFAULT_TASKS)) == 8
    assert len(MINI_TASKS) >= 16
    assert set(DEFAULT_TASKS) <= set(MINI_TASKS)
    for name, t in MINI_TASKS.items():
        assert len(t.classnames) >= 2 and len(set(t.classnames)) == len(t.classnames), name
        # real tasks keep CLIP's own templates (MNIST has one)
        assert (1 if t.pools else 2) <= len(t.templates) <= 5 and all("{}" in s for s in t.templates), name
        assert templates_for(name) == t.templates
    with pytest.raises(KeyError, match="not a mini task"):
        templates_for("Cars")


@pytest.mark.parametrize("name", sorted(MINI_TASKS))
def test_generate_every_task(name):
    task = MINI_TASKS[name]
    x, y = task.generate(np.random.default_rng(1), 24)
    assert x.shape == (24, 32, 32, 3) and x.dtype == np.uint8
    assert y.dtype == np.int64 and y.min() >= 0 and y.max() < len(task.classnames)
    assert x.std() > 5  # not blank
    x2, y2 = task.generate(np.random.default_rng(1), 24)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    x3, _ = task.generate(np.random.default_rng(2), 24)
    assert not np.array_equal(x, x3)


def test_same_seed_identical_bytes(built, tmp_path):
    build_task("signs", tmp_path / "again", seed=0, n_train=N_TRAIN, n_test=N_TEST)
    assert _tree_bytes(built / "signs") == _tree_bytes(tmp_path / "again")
    build_task("signs", tmp_path / "other", seed=1, n_train=N_TRAIN, n_test=N_TEST)
    a = load_task_splits(tmp_path / "other")["test"]["image"]
    b = load_task_splits(built / "signs")["test"]["image"]
    assert np.asarray(a[0]).tobytes() != np.asarray(b[0]).tobytes()


def test_splits_sizes_disjoint_and_classlabel(built):
    dsd = load_task_splits(built / "signs")
    assert set(dsd) == {"train", "validation", "test"}
    assert len(dsd["validation"]) == round(0.1 * N_TRAIN)
    assert len(dsd["train"]) == N_TRAIN - len(dsd["validation"])
    assert len(dsd["test"]) == N_TEST
    assert classnames(dsd) == MINI_TASKS["signs"].classnames
    assert dsd["train"].features["label"].names == MINI_TASKS["signs"].classnames
    assert isinstance(dsd["test"].features["image"], datasets.Image)
    hashes = {s: {hashlib.sha1(im.numpy().tobytes()).hexdigest() for im in split_to_tensor(dsd[s], 32)[0]}
              for s in dsd}
    assert not hashes["train"] & hashes["validation"]
    assert not hashes["train"] & hashes["test"] and not hashes["validation"] & hashes["test"]
    meta = json.loads((built / "signs" / "mini_meta.json").read_text())
    assert meta["task"] == "signs" and meta["seed"] == 0


def test_split_rule_cap():
    tr, va = mini.split_indices(100_000, 0.1, 5000)
    assert len(va) == 5000 and len(tr) == 95_000 and not set(tr) & set(va)
    tr2, va2 = mini.split_indices(100_000, 0.1, 5000)
    assert np.array_equal(va, va2)  # seed 0, fixed


def test_split_to_tensor(built):
    dsd = load_task_splits(built / "signs")
    x, y = split_to_tensor(dsd["train"], 32)
    assert x.shape == (len(dsd["train"]), 3, 32, 32) and str(x.dtype) == "torch.uint8"
    assert y.tolist() == dsd["train"]["label"]
    x48, _ = split_to_tensor(dsd["test"], 48)
    assert tuple(x48.shape[1:]) == (3, 48, 48)
    sub = dsd["train"].select([4, 2])
    xs, ys = split_to_tensor(sub, 32)
    assert (xs[0] == x[4]).all() and ys.tolist() == [y[4].item(), y[2].item()]


def test_loader_errors(built, tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        load_task_splits(tmp_path / "nope")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    with pytest.raises(ArtifactError, match="junk"):
        load_task_splits(tmp_path / "junk")
    dsd = load_task_splits(built / "signs")
    # a split missing
    datasets.DatasetDict({"train": dsd["train"], "test": dsd["test"]}).save_to_disk(str(tmp_path / "noval"))
    with pytest.raises(ArtifactError, match=r"noval.*validation"):
        load_task_splits(tmp_path / "noval")
    # labels outside the ClassLabel range (written through the Arrow table, which skips checks)
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    bad = {s: datasets.Dataset(dsd[s].data.table, info=datasets.DatasetInfo(features=feats)) for s in dsd}
    datasets.DatasetDict(bad).save_to_disk(str(tmp_path / "badlab"))
    with pytest.raises(ArtifactError, match=r"badlab.*outside"):
        load_task_splits(tmp_path / "badlab")


def test_atomic_overwrite(tmp_path):
    out = tmp_path / "t"
    build_task("counting", out, n_train=20, n_test=10)
    build_task("counting", out, seed=3, n_train=20, n_test=10)
    assert json.loads((out / "mini_meta.json").read_text())["seed"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]  # no temp dirs left behind


def test_corpus_captions_and_no_test_overlap(tmp_path):
    weights = {"signs": 1.0, "shapes": 1.0, "generic": 0.5}
    build_corpus(tmp_path / "corpus", seed=0, n=120, family_weights=weights, caption_noise=0.2)
    ds = datasets.load_from_disk(str(tmp_path / "corpus"))
    assert len(ds) == 120 and {"image", "caption"} <= set(ds.column_names)
    caps = ds["caption"]
    assert all(isinstance(c, str) and len(c.split()) >= 2 for c in caps)
    assert set(ds["family"]) <= set(weights)
    words = " ".join(caps).lower()
    assert any(n.lower() in words for n in MINI_TASKS["signs"].classnames)
    x, _ = split_to_tensor(ds, 32)
    corpus_h = {hashlib.sha1(im.numpy().tobytes()).hexdigest() for im in x}
    for name in ("signs", "shapes"):
        xtr, _, xte, _ = mini.task_arrays(name, seed=0, n_train=60, n_test=120)
        test_h = {hashlib.sha1(np.ascontiguousarray(a.transpose(2, 0, 1)).tobytes()).hexdigest() for a in xte}
        assert not corpus_h & test_h
    with pytest.raises(ValueError, match="unknown corpus families"):
        build_corpus(tmp_path / "c2", n=10, family_weights={"nonsense": 1.0})


def test_corpus_mention_prob_per_family(tmp_path):
    """A per-family mention_prob: 0 = family-level captions only, 1 = every caption names the
    concept; families left out keep the default; bad names and values are refused."""
    signs, flowers = MINI_TASKS["signs"].classnames, MINI_TASKS["flowers"].classnames
    build_corpus(tmp_path / "c", seed=0, n=200, family_weights={"signs": 1.0, "flowers": 1.0},
                 caption_noise=0.0, mention_prob={"signs": 0.0, "flowers": 1.0})
    ds = datasets.load_from_disk(str(tmp_path / "c"))
    by_family = {f: [c.lower() for c, g in zip(ds["caption"], ds["family"]) if g == f] for f in ("signs", "flowers")}
    assert by_family["signs"] and by_family["flowers"]
    assert not any(n.lower() in c for c in by_family["signs"] for n in signs)
    assert all(any(n.lower() in c for n in flowers) for c in by_family["flowers"])
    with pytest.raises(ValueError, match="unknown corpus families"):
        build_corpus(tmp_path / "c2", n=10, mention_prob={"nonsense": 0.5})
    with pytest.raises(ValueError, match="mention_prob must be in"):
        build_corpus(tmp_path / "c3", n=10, mention_prob={"signs": 1.5})
    assert not (tmp_path / "c2").exists() and not (tmp_path / "c3").exists()
    # an empty map means the default for every family: the same corpus as the number 0.5
    build_corpus(tmp_path / "d0", seed=1, n=30, family_weights={"signs": 1.0}, mention_prob={})
    build_corpus(tmp_path / "d1", seed=1, n=30, family_weights={"signs": 1.0}, mention_prob=0.5)
    assert (datasets.load_from_disk(str(tmp_path / "d0"))["caption"]
            == datasets.load_from_disk(str(tmp_path / "d1"))["caption"])


def test_corpus_deterministic(tmp_path):
    for d in ("a", "b"):
        build_corpus(tmp_path / d, seed=5, n=40, family_weights={"flowers": 1.0, "generic": 1.0})
    assert _tree_bytes(tmp_path / "a") == _tree_bytes(tmp_path / "b")
    shutil.rmtree(tmp_path / "a")


# sha256 of every generated task's arrays and a corpus sample at GENERATOR_VERSION 1, recorded
# when data/mini.py became a package: images that change need a new GENERATOR_VERSION (and
# new values here), or existing datasets would silently differ from fresh ones
GENERATED_SHA256 = {1: {"tasks": "f5b27149646c9f193ff5d8ed6c4a42523b5bd128816b2d8193f125e5689acc50",
                        "corpus": "dad3cbc7c248a32d65113d4fa60727309fccf455c85683ec9926e15569ed4ee4"},
                    2: {"tasks": "20b23af6270a0069104c2f45eba8d3621eb07e43c8f9694f3c73a5f88e9793bf",
                        "corpus": "dad3cbc7c248a32d65113d4fa60727309fccf455c85683ec9926e15569ed4ee4"}}


def _generated_fingerprint(tmp_path) -> dict[str, str]:
    tasks = hashlib.sha256()
    for name in mini.ALL_TASKS:
        if MINI_TASKS[name].pools is None:  # real data is drawn, not generated
            for a in mini.task_arrays(name, seed=3, n_train=12, n_test=12):
                tasks.update(np.ascontiguousarray(a).tobytes())
    build_corpus(tmp_path / "c", seed=3, n=48, family_weights=dict.fromkeys(mini.corpus_families(), 1.0))
    ds = datasets.load_from_disk(str(tmp_path / "c"))
    corpus = hashlib.sha256(np.stack([np.asarray(im) for im in ds["image"]]).tobytes())
    corpus.update("\n".join(list(ds["caption"]) + list(ds["family"])).encode())
    return {"tasks": tasks.hexdigest(), "corpus": corpus.hexdigest()}


def test_generated_images_fingerprint(tmp_path):
    assert _generated_fingerprint(tmp_path) == GENERATED_SHA256[mini.GENERATOR_VERSION]


def test_shapes_task_redesign_leaves_the_corpus_alone():
    """Version 2 changed the shapes task only: the corpus the shipped CLIPs were pretrained
    on still draws all ten outlines, so mini-corpus-v3 stays reproducible bit for bit."""
    assert GENERATED_SHA256[2]["corpus"] == GENERATED_SHA256[1]["corpus"]
    assert GENERATED_SHA256[2]["tasks"] != GENERATED_SHA256[1]["tasks"]
    from mergelab.data.mini.corpus import _n_concepts
    assert _n_concepts("shapes") == 10
    assert MINI_TASKS["shapes"].classnames == ["circle", "square", "triangle", "star", "cross", "heart",
                                               "crescent", "ring"]
    x, y = MINI_TASKS["shapes"].generate(np.random.default_rng(0), 16)
    assert x.shape == (16, 32, 32, 3) and set(y.tolist()) == set(range(8))


def test_supervised_baseline_learns_and_is_seeded():
    """The from-scratch learnability check (docs/mini_suite.md): a few steps on cells (two
    classes a linear pixel classifier separates at 89 %) lower the loss below chance's ln 2,
    and the same seed gives the same numbers."""
    kwargs = dict(n_train=512, n_test=200, epochs=3, batch_size=64, lr=3e-3)
    a = mini.supervised_baseline("cells", **kwargs)
    assert a["chance"] == 0.5 and 0 <= a["test"] <= 1 and 0 <= a["train"] <= 1
    assert a["final_loss"] < math.log(2) and a["test"] > 0.7
    assert mini.supervised_baseline("cells", **kwargs) == a
    with pytest.raises(ValueError, match="n_train"):
        mini.supervised_baseline("cells", n_train=10, batch_size=64)
    with pytest.raises(ValueError, match="takes \\(224, 224\\) images"):  # a paper-scale encoder
        mini.supervised_baseline("cells", model_name="ViT-B-32-2blocks", **kwargs)


def test_per_task_n_train_overrides_the_suite_size(tmp_path):
    """data.tasks.<task>.n_train sizes one mini task; the others keep data.mini.n_train."""
    from mergelab.data.prepare import prepare_task
    mini = {"n_train": 40, "n_test": 10}
    prepare_task("counting", {"source": "mini", "n_train": 60}, tmp_path / "big", mini=mini)
    prepare_task("counting", {"source": "mini"}, tmp_path / "default", mini=mini)
    sizes = {name: sum(datasets.load_from_disk(str(tmp_path / name))[s].num_rows
                       for s in ("train", "validation")) for name in ("big", "default")}
    assert sizes == {"big": 60, "default": 40}
