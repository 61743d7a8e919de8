"""Prepare one task's dataset directory (HF datasets on-disk format), whatever its source."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping

import numpy as np


def png_bytes(image: np.ndarray) -> bytes:
    """One uint8 image (``[h, w]`` greyscale or ``[h, w, 3]`` RGB) as PNG bytes: how every
    prepared dataset stores its images (lossless, as the hub's parquet copies do)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def task_source(task_cfg: Mapping[str, Any]) -> str:
    """Where a task's data comes from: "mini", "hub" or "local" (config key
    ``data.tasks.<task>.source``; "mini" when unset, as in config/schema.yaml)."""
    return task_cfg.get("source", "mini")


def prepare_task(task: str, task_cfg: Mapping[str, Any], out_dir: str | Path, seed: int = 0,
                 mini: Mapping[str, Any] | None = None, cache_dir: str | None = None) -> None:
    if task_source(task_cfg) == "mini":
        from .mini import build_task
        mini = dict(mini or {})
        n_train = task_cfg.get("n_train") or mini.get("n_train", 2400)  # per task, else the suite's
        build_task(task, out_dir, seed=seed, n_train=n_train, n_test=mini.get("n_test", 600))
        return
    from . import paper  # hub and local folders (paper scale)
    paper.prepare_task(task, task_cfg, out_dir, seed=seed, cache_dir=cache_dir)
