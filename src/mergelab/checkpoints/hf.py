"""Hugging Face CLIP fine-tuned image encoders (e.g. FusionBench's
``tanganke/clip-vit-base-patch32_<task>``): reading them, and their full-regime task vector
in open_clip keys."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

from .. import convert
from ..lazy import torch
from ..taskvectors import task_vector
from .openclip import is_open_clip_file, open_clip_as_hf_vision
from .sources import (_VISION_ROOTS, CheckpointError, _load_sharded, _load_weight_file,
                      check_same_architecture, resolve_source)


_HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json",
                    "pytorch_model.bin", "pytorch_model.bin.index.json")


def load_hf_clip_vision(path_or_id: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                        offline: bool | None = None) -> tuple[dict[str, torch.Tensor], str, dict | None]:
    """Image-encoder weights of a Hugging Face CLIP (``CLIPVisionModel``, ``…WithProjection``
    or ``CLIPModel``): (state dict with ``vision_model.*`` [+ ``visual_projection.weight``],
    name of the file read, vision config dict from config.json or None)."""
    root = Path(path_or_id) if Path(path_or_id).exists() else None
    if root is None:
        try:
            root = resolve_source(path_or_id, cache_dir, ["*.json", "*.safetensors"], offline,
                                  required=_HF_WEIGHT_FILES)
        except CheckpointError:
            root = None
        if root is None or not any((root / f).exists() for f in _HF_WEIGHT_FILES):
            # an old repo without safetensors
            root = resolve_source(path_or_id, cache_dir, ["*.json", "pytorch_model*.bin"], offline,
                                  required=_HF_WEIGHT_FILES)
    if root.is_file():
        weight_file, config = root, None
    else:
        weight_file = next((root / f for f in _HF_WEIGHT_FILES if (root / f).exists()), None)
        if weight_file is None:
            raise CheckpointError(f"{root}: no Hugging Face weights ({', '.join(_HF_WEIGHT_FILES)})")
        config = _hf_vision_config(root / "config.json")
    sd = _load_sharded(weight_file) if weight_file.name.endswith(".index.json") else _load_weight_file(weight_file)
    vis = normalize_hf_vision_keys(sd)
    if not vis:
        raise CheckpointError(f"{weight_file}: no 'vision_model.*' keys (first keys: {list(sd)[:3]}); "
                              "not a Hugging Face CLIP checkpoint")
    return vis, str(weight_file), config


def normalize_hf_vision_keys(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The image-encoder weights of a HF CLIP state dict, keyed ``vision_model.*`` /
    ``visual_projection.weight``.

    transformers >= 5 saves a ``CLIPVisionModel`` without the ``vision_model.``
    prefix (``embeddings.*``, ``encoder.*`` …); older versions (and FusionBench's
    checkpoints) and ``CLIPModel`` / ``…WithProjection`` keep it. Text-tower keys,
    ``logit_scale`` and the ``position_ids`` buffer are dropped.
    """
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.startswith(_VISION_ROOTS):
            k = convert.HF_PREFIX + k
        if (k.startswith(convert.HF_PREFIX) or k == convert.HF_PROJ) \
                and k != "vision_model.embeddings.position_ids":
            out[k] = v
    return out


def _hf_vision_config(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        cfg = json.loads(path.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{path}: invalid JSON ({exc})") from exc
    if not isinstance(cfg, dict):
        return None
    if isinstance(cfg.get("vision_config"), dict):  # CLIPModel
        return cfg["vision_config"]
    return cfg if cfg.get("model_type") == "clip_vision_model" else None


#: transformers.CLIPVisionConfig defaults of the fields that define the architecture
#: (config.json files written by save_pretrained omit fields equal to the default)
_ARCH_DEFAULTS = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                  "num_attention_heads": 12, "patch_size": 32, "image_size": 224,
                  "hidden_act": "quick_gelu"}


def hf_full_task_vector(finetuned: str | os.PathLike, pretrained: str | os.PathLike,
                        cache_dir: str | os.PathLike | None = None, offline: bool | None = None,
                        ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """τ = θt − θ0 of a Hugging Face fine-tuned CLIP image encoder, in open_clip keys.

    A ``CLIPVisionModel`` checkpoint (FusionBench) has no ``visual_projection``: its
    projection was not fine-tuned, so its update is zero (θ0's projection is used).
    """
    ft, ft_file, ft_cfg = load_hf_clip_vision(finetuned, cache_dir, offline)
    if is_open_clip_file(pretrained):  # θ0 as open_clip weights, e.g. the pipeline's own θ0
        pt, pt_file, pt_cfg = open_clip_as_hf_vision(pretrained), str(pretrained), None
    else:
        pt, pt_file, pt_cfg = load_hf_clip_vision(pretrained, cache_dir, offline)
    meta = {"finetuned_file": ft_file, "pretrained_file": pt_file}
    if convert.HF_PROJ not in pt:
        raise CheckpointError(f"{pt_file}: the pretrained model has no '{convert.HF_PROJ}'; use a "
                              "CLIPModel or CLIPVisionModelWithProjection (e.g. openai/clip-vit-base-patch32)")
    if convert.HF_PROJ not in ft:
        ft = {**ft, convert.HF_PROJ: pt[convert.HF_PROJ]}
        meta["visual_projection"] = "absent from the fine-tuned checkpoint: zero update"
    check_same_architecture(ft, pt, ft_file, pt_file)
    if ft_cfg and pt_cfg:  # what shapes cannot tell: heads, activation
        for f, default in _ARCH_DEFAULTS.items():
            a, b = ft_cfg.get(f, default), pt_cfg.get(f, default)
            if a != b:
                raise CheckpointError(f"{ft_file}: config '{f}' = {a!r} but the pretrained "
                                      f"model ({pt_file}) has {b!r}: another architecture?")
    try:
        tau = task_vector(convert.hf_vision_to_open_clip(ft), convert.hf_vision_to_open_clip(pt))
    except convert.ConversionError as exc:
        raise CheckpointError(f"{ft_file}: {exc}") from exc
    return tau, meta
