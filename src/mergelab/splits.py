"""Task data as tensors for the training and evaluation loops (one place to cap,
decode and check splits)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from .io import ArtifactError


@lru_cache(maxsize=64)
def load_split(task_dir: str, split: str, image_size: int,
               cap: int | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(uint8 images [N,3,H,W], int64 labels [N], number of classes) of one split."""
    from .data.loading import classnames, load_task_splits, split_to_tensor
    dsd = load_task_splits(task_dir)
    if split not in dsd:
        raise ArtifactError(f"{task_dir}: dataset has no '{split}' split (has {list(dsd)})")
    ds = dsd[split]
    if cap is not None and len(ds) > cap:
        ds = ds.select(range(cap))
    x, y = split_to_tensor(ds, image_size)
    n_classes = len(classnames(dsd))
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ArtifactError(f"{task_dir}: split '{split}' has labels outside 0..{n_classes - 1}")
    return x, y, n_classes


def task_classnames(task_dir: str | Path) -> list[str]:
    from .data.loading import classnames, load_task_splits
    return classnames(load_task_splits(str(task_dir)))
