"""Task data for the training and evaluation loops (one place to cap, decode and
check splits).

Small datasets (the mini suite) are decoded once into a uint8 tensor
[N, 3, H, W]. Large ones (paper scale) stay on disk as a :class:`LazyImages`
that decodes, resizes (shorter side, bicubic) and centre-crops each batch on
demand, the same preprocessing as open_clip's evaluation transform; batches of
either kind come out of :func:`iterate`.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .io import ArtifactError

#: splits with more images than this (at the configured size) are decoded lazily
IN_MEMORY_MAX_BYTES = 2 * 1024**3


def decode_image(img, size: int) -> np.ndarray:
    """PIL image -> uint8 [3, size, size]: RGB, shorter side to ``size`` (bicubic), centre crop."""
    from PIL import Image
    img = img.convert("RGB")
    w, h = img.size
    if (w, h) != (size, size):
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((nw, nh), Image.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


class LazyImages:
    """Images of an HF dataset split, decoded per batch: ``lazy[idx]`` -> uint8 tensor."""

    def __init__(self, ds, image_size: int):
        self.ds = ds
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, idx) -> torch.Tensor:
        idx = torch.as_tensor(idx).reshape(-1).tolist()
        rows = self.ds.select(idx)["image"] if len(idx) > 1 else [self.ds[idx[0]]["image"]]
        return torch.from_numpy(np.stack([decode_image(im, self.image_size) for im in rows]))


class _BatchDataset(torch.utils.data.Dataset):
    def __init__(self, images, labels, batches):
        self.images, self.labels, self.batches = images, labels, batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        idx = self.batches[i]
        return self.images[idx], self.labels[idx]


def iterate(images, labels: torch.Tensor, batch_size: int, shuffle: bool = False,
            generator: torch.Generator | None = None, num_workers: int = 0,
            drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches (uint8 images, labels) from a tensor or a LazyImages, in a seeded order."""
    n = len(labels)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - (n % batch_size) if drop_last and n >= batch_size else n
    chunks = [order[i:i + batch_size] for i in range(0, stop, batch_size)]
    if isinstance(images, torch.Tensor) or num_workers == 0:
        for idx in chunks:
            yield images[idx], labels[idx]
        return
    loader = torch.utils.data.DataLoader(_BatchDataset(images, labels, chunks), batch_size=None,
                                         shuffle=False, num_workers=num_workers)
    yield from loader


@lru_cache(maxsize=64)
def load_split(task_dir: str, split: str, image_size: int, cap: int | None = None):
    """(images, int64 labels [N], number of classes) of one split; ``images`` is a
    uint8 tensor [N,3,H,W] when it fits in IN_MEMORY_MAX_BYTES, else a LazyImages."""
    from .data.loading import classnames, load_task_splits, split_to_tensor
    dsd = load_task_splits(task_dir)
    if split not in dsd:
        raise ArtifactError(f"{task_dir}: dataset has no '{split}' split (has {list(dsd)})")
    ds = dsd[split]
    if cap is not None and len(ds) > cap:
        ds = ds.select(range(cap))
    n_classes = len(classnames(dsd))
    if len(ds) * 3 * image_size * image_size <= IN_MEMORY_MAX_BYTES:
        x, y = split_to_tensor(ds, image_size)
    else:
        x, y = LazyImages(ds, image_size), torch.as_tensor(ds["label"], dtype=torch.long)
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ArtifactError(f"{task_dir}: split '{split}' has labels outside 0..{n_classes - 1}")
    return x, y, n_classes


def task_classnames(task_dir: str | Path) -> list[str]:
    from .data.loading import classnames, load_task_splits
    return classnames(load_task_splits(str(task_dir)))
