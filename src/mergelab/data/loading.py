"""The one loader of prepared task datasets (Hugging Face ``datasets`` on-disk format).

A task directory holds a ``DatasetDict`` with splits ``train``, ``validation`` and ``test``,
columns ``image`` (``datasets.Image``) and ``label`` (``datasets.ClassLabel``). The mini
suite writes exactly this; hub datasets are converted to it once, so the same code serves both.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..io import ArtifactError
from ..lazy import torch

REQUIRED_SPLITS = ("train", "validation", "test")


def load_task_splits(path: str | Path, splits: tuple[str, ...] = REQUIRED_SPLITS):
    """Load and check a task's DatasetDict; every problem raises ArtifactError naming ``path``."""
    import datasets
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: task dataset directory does not exist "
                            "(run the rule that prepares this task)")
    try:
        dsd = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises FileNotFoundError / ValueError / arrow errors
        raise ArtifactError(f"{path}: not a readable datasets directory ({type(exc).__name__}: {exc}); "
                            "delete it and rerun the rule that produced it") from exc
    if not isinstance(dsd, datasets.DatasetDict):
        raise ArtifactError(f"{path}: holds a single Dataset, expected a DatasetDict with splits "
                            f"{', '.join(splits)}")
    missing = [s for s in splits if s not in dsd]
    if missing:
        raise ArtifactError(f"{path}: split(s) {', '.join(missing)} missing (has {', '.join(dsd) or 'none'})")
    names = None
    for split in splits:
        ds = dsd[split]
        for col in ("image", "label"):
            if col not in ds.column_names:
                raise ArtifactError(f"{path}: split '{split}' has no '{col}' column (has {ds.column_names})")
        feat = ds.features["label"]
        if not isinstance(feat, datasets.ClassLabel):
            raise ArtifactError(f"{path}: split '{split}' column 'label' is {type(feat).__name__}, "
                                "expected ClassLabel with the class names")
        if names is None:
            names = list(feat.names)
        elif list(feat.names) != names:
            raise ArtifactError(f"{path}: split '{split}' has different class names from the other splits")
        if len(ds):
            lab = np.asarray(ds.data.column("label").to_numpy(zero_copy_only=False))
            lo, hi = int(lab.min()), int(lab.max())
            if lo < 0 or hi >= feat.num_classes:
                raise ArtifactError(f"{path}: split '{split}' has labels in {lo}..{hi}, outside the "
                                    f"{feat.num_classes} classes 0..{feat.num_classes - 1} of its ClassLabel")
    return dsd


def classnames(dsdict) -> list[str]:
    """Class names from the ClassLabel feature (of any split; load_task_splits checks they agree)."""
    import datasets
    ds = dsdict if isinstance(dsdict, datasets.Dataset) else next(iter(dsdict.values()))
    feat = ds.features.get("label")
    if not isinstance(feat, datasets.ClassLabel):
        raise ArtifactError(f"dataset has no ClassLabel 'label' column (features: {ds.features})")
    return list(feat.names)


def _decode(item, image_size: int) -> np.ndarray:
    from PIL import Image
    if isinstance(item, dict):
        if item.get("bytes") is not None:
            im = Image.open(io.BytesIO(item["bytes"]))
        elif item.get("path"):
            im = Image.open(item["path"])
        else:
            raise ArtifactError("image entry with neither bytes nor path")
    elif isinstance(item, Image.Image):
        im = item
    else:
        raise ArtifactError(f"unsupported image entry of type {type(item).__name__}")
    im = im.convert("RGB")
    w, h = im.size
    if (w, h) != (image_size, image_size):
        # CLIP-style: resize the shorter side to image_size (bicubic), then centre-crop
        s = image_size / min(w, h)
        nw, nh = max(image_size, round(w * s)), max(image_size, round(h * s))
        im = im.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = (nw - image_size) // 2, (nh - image_size) // 2
        im = im.crop((left, top, left + image_size, top + image_size))
    return np.asarray(im, dtype=np.uint8)


def split_to_tensor(ds_split, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every image of a split once: (uint8 [N, 3, H, W], int64 labels [N]).

    Reads the encoded bytes straight from the Arrow table (no per-row feature decoding).
    A split without a 'label' column (e.g. the pretraining corpus) gets labels -1."""
    n = len(ds_split)
    out = np.empty((n, image_size, image_size, 3), np.uint8)
    if n:
        col = ds_split.data.column("image")
        # honour an index mapping (select/shuffle) by going through the formatted path if present
        if getattr(ds_split, "_indices", None) is not None:
            items = ds_split.with_format("arrow")["image"].to_pylist()
        else:
            items = col.to_pylist()
        for i, item in enumerate(items):
            out[i] = _decode(item, image_size)
    if "label" in ds_split.column_names:
        labels = torch.as_tensor(np.asarray(ds_split["label"], dtype=np.int64))
    else:
        labels = torch.full((n,), -1, dtype=torch.int64)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous(), labels


def templates_for(task_name: str) -> list[str]:
    """Prompt templates of a task (mini suite; paper-scale tasks are looked up elsewhere)."""
    from .mini import MINI_TASKS
    try:
        return list(MINI_TASKS[task_name].templates)
    except KeyError:
        raise KeyError(f"no prompt templates for task '{task_name}': it is not a mini task "
                       f"(mini tasks: {', '.join(MINI_TASKS)})") from None
