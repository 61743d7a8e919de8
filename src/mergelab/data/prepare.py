"""Prepare one task's dataset directory (HF datasets on-disk format), whatever its source."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping


def prepare_task(task: str, task_cfg: Mapping[str, Any], out_dir: str | Path, seed: int = 0,
                 mini: Mapping[str, Any] | None = None, cache_dir: str | None = None) -> None:
    source = task_cfg.get("source", "mini")
    if source == "mini":
        from .mini import build_task
        mini = dict(mini or {})
        build_task(task, out_dir, seed=seed, n_train=mini.get("n_train", 2400),
                   n_test=mini.get("n_test", 600))
        return
    from . import paper  # hub and local folders (paper scale)
    paper.prepare_task(task, task_cfg, out_dir, seed=seed, cache_dir=cache_dir)
