"""Writing a mini task to disk as a DatasetDict (train / validation / test), the protocol's
validation split, and a pixel-baseline sanity check."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..prepare import png_bytes
from .primitives import RES
from .tasks import GENERATOR_VERSION, get_task, task_arrays


def _image_dataset(images: np.ndarray, columns: dict, features: dict):
    import datasets
    feats = datasets.Features({"image": datasets.Image(), **features})
    data = {"image": [{"bytes": png_bytes(a), "path": None} for a in images], **columns}
    return datasets.Dataset.from_dict(data, features=feats)


def _atomic_save(obj, out_dir: str | Path, meta: dict) -> None:
    """save_to_disk into a temp dir beside out_dir, then rename it into place."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    old = None
    try:
        obj.save_to_disk(str(tmp))
        with open(tmp / "mini_meta.json", "w") as fh:
            json.dump(meta, fh, indent=2)
            fh.write("\n")
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old.{os.getpid()}"
            os.rename(out_dir, old)
        os.rename(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists():
            shutil.rmtree(old, ignore_errors=True)


def split_indices(n_train: int, val_fraction: float = 0.1, val_cap: int = 5000,
                  split_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Protocol split of a training set: validation = val_fraction (capped at val_cap),
    random with seed 0; returns (train indices, validation indices), each sorted."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = min(int(round(n_train * val_fraction)), val_cap)
    perm = np.random.default_rng(split_seed).permutation(n_train)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def build_task(name: str, out_dir: str | Path, seed: int = 0, n_train: int = 2400, n_test: int = 600,
               val_fraction: float = 0.1, val_cap: int = 5000) -> None:
    """Generate one mini task and save it as a DatasetDict (train / validation / test)."""
    import datasets
    task = get_task(name)
    xtr, ytr, xte, yte = task_arrays(name, seed, n_train, n_test)
    tr, va = split_indices(n_train, val_fraction, val_cap)
    label = {"label": datasets.ClassLabel(names=task.classnames)}
    dsd = datasets.DatasetDict({
        "train": _image_dataset(xtr[tr], {"label": ytr[tr].tolist()}, label),
        "validation": _image_dataset(xtr[va], {"label": ytr[va].tolist()}, label),
        "test": _image_dataset(xte, {"label": yte.tolist()}, label),
    })
    meta = {"task": name, "source": "mergelab mini suite", "generator_version": GENERATOR_VERSION,
            "seed": seed, "n_train_generated": n_train, "n_test": n_test, "val_fraction": val_fraction,
            "val_cap": val_cap, "split_seed": 0, "imitates": task.imitates,
            "classnames": task.classnames, "templates": task.templates}
    _atomic_save(dsd, out_dir, meta)


def pixel_baselines(name: str, seed: int = 0, n_train: int = 2400, n_test: int = 600) -> dict[str, float]:
    """Sanity check that a task is learnable but not trivial: test accuracy of a nearest-centroid
    classifier and of a ridge-regression linear classifier on raw pixels (2x2-average-pooled,
    standardised), both trained on the generated training set."""
    xtr, ytr, xte, yte = task_arrays(name, seed, n_train, n_test)

    def feats(x):
        x = x.astype(np.float64) / 255
        return x.reshape(len(x), RES // 2, 2, RES // 2, 2, 3).mean((2, 4)).reshape(len(x), -1)
    ftr, fte = feats(xtr), feats(xte)
    k = len(get_task(name).classnames)
    cent = np.stack([ftr[ytr == c].mean(0) for c in range(k)])
    nc = float((np.argmin(((fte[:, None] - cent[None]) ** 2).sum(-1), 1) == yte).mean())
    mu, sd = ftr.mean(0), ftr.std(0) + 1e-6
    a, b = (ftr - mu) / sd, (fte - mu) / sd
    a, b = np.hstack([a, np.ones((len(a), 1))]), np.hstack([b, np.ones((len(b), 1))])
    w = np.linalg.solve(a.T @ a + 10.0 * len(a) / 100 * np.eye(a.shape[1]), a.T @ np.eye(k)[ytr])
    return {"chance": 1.0 / k, "nearest_centroid": nc, "linear": float(((b @ w).argmax(1) == yte).mean())}
