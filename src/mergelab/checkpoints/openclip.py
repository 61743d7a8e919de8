"""open_clip checkpoints (task-vector / TALL-masks ``.pt`` pickles holding a state dict, or
``.safetensors``): reading their image encoder, and their full-regime task vector."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from .. import convert
from ..io import load_tensors
from ..lazy import torch
from ..taskvectors import task_vector
from .sources import (_PICKLE_SUFFIXES, _VISION_ROOTS, CheckpointError, check_same_architecture,
                      safe_torch_load)


_OC_INNER_ROOTS = ("conv1.", "class_embedding", "positional_embedding", "ln_pre.", "ln_post.",
                   "transformer.resblocks.", "proj")


def open_clip_visual_state(obj: Any, name: str) -> dict[str, torch.Tensor]:
    """The ``visual.*`` weights of a loaded open_clip checkpoint object.

    Accepts a state dict (or ``{"state_dict": …}`` / ``{"model_state_dict": …}``)
    whose keys carry ``module.`` (DDP), ``model.`` (task-vectors ImageEncoder)
    and/or ``visual.`` prefixes, or none (a ``model.visual`` state dict).
    """
    for wrapper in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{name}: holds a {type(obj).__name__}, expected a state dict")
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise CheckpointError(f"{name}: no tensors in the state dict")
    for pre in ("module.", "model."):
        sd = {(k[len(pre):] if k.startswith(pre) else k): v for k, v in sd.items()}
    vis = {k: v for k, v in sd.items() if k.startswith("visual.")}
    if not vis:
        if any(k.startswith(convert.HF_PREFIX) for k in sd):
            raise CheckpointError(f"{name}: holds Hugging Face CLIP keys ('vision_model.*'); import it "
                                  "with kind 'hf'")
        if all(k.startswith(_OC_INNER_ROOTS) for k in sd):
            vis = {f"visual.{k}": v for k, v in sd.items()}
        else:
            raise CheckpointError(f"{name}: no open_clip image-encoder keys ('visual.*' or 'conv1.weight' …); "
                                  f"first keys: {list(sd)[:3]}")
    return vis


def load_open_clip_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """``visual.*`` weights of an open_clip checkpoint file (.pt pickle read safely, or .safetensors)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file does not exist")
    obj = load_tensors(path) if path.suffix == ".safetensors" else safe_torch_load(path)
    return open_clip_visual_state(obj, str(path))


def is_open_clip_file(source: str | os.PathLike | None) -> bool:
    """True for a local weights file holding open_clip image-encoder keys (``visual.*``, with
    or without ``module.``/``model.`` prefixes, or bare ``conv1.weight`` …), e.g. the
    pipeline's θ0 ``pretrained/clip.safetensors``; False for Hugging Face files, directories
    and hub ids. Pickles are only opened with ``weights_only=True``."""
    if source is None:
        return False
    p = Path(source)
    if not p.is_file() or not (p.suffix == ".safetensors" or p.suffix in _PICKLE_SUFFIXES):
        return False
    if p.suffix == ".safetensors":
        from safetensors import safe_open
        try:
            with safe_open(str(p), framework="pt") as fh:
                keys = list(fh.keys())
        except Exception as exc:
            raise CheckpointError(f"{p}: not a readable safetensors file ({exc})") from exc
    else:
        obj = safe_torch_load(p)
        for wrapper in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
        keys = [str(k) for k in obj] if isinstance(obj, Mapping) else []
    for pre in ("module.", "model."):
        keys = [k[len(pre):] if k.startswith(pre) else k for k in keys]
    if any(k.startswith(convert.HF_PREFIX) or k.startswith(_VISION_ROOTS) for k in keys):
        return False
    return any(k.startswith("visual.") for k in keys) or \
        (bool(keys) and all(k.startswith(_OC_INNER_ROOTS) for k in keys))


def open_clip_as_hf_vision(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """An open_clip weights file's image encoder in Hugging Face keys (``vision_model.*``)."""
    try:
        return convert.open_clip_to_hf_vision(load_open_clip_checkpoint(path))
    except convert.ConversionError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc


def _load_pretrained_open_clip(source: str | os.PathLike, cache_dir, offline) -> tuple[dict[str, torch.Tensor], str]:
    """θ0 for the open_clip kind: an open_clip file, or a Hugging Face CLIP (dir / hub id), converted."""
    from .hf import load_hf_clip_vision  # hf reads open_clip θ0 files too: import here, not at the top
    p = Path(source)
    if p.is_file() and (p.suffix == ".safetensors" or p.suffix in _PICKLE_SUFFIXES) \
            and is_open_clip_file(p):
        return load_open_clip_checkpoint(p), str(p)
    hf, hf_file, _ = load_hf_clip_vision(source, cache_dir, offline)
    try:
        return convert.hf_vision_to_open_clip(hf), hf_file
    except convert.ConversionError as exc:
        raise CheckpointError(f"{hf_file}: {exc}") from exc


def open_clip_task_vector(finetuned: str | os.PathLike, pretrained: str | os.PathLike,
                          cache_dir=None, offline: bool | None = None
                          ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    ft = load_open_clip_checkpoint(finetuned)
    pt, pt_file = _load_pretrained_open_clip(pretrained, cache_dir, offline)
    check_same_architecture(ft, pt, str(finetuned), pt_file)
    return task_vector(ft, pt), {"finetuned_file": str(finetuned), "pretrained_file": pt_file}
