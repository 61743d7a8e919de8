"""Import published fine-tuned checkpoints as mergelab task vectors.

Three kinds (details and the key mapping in docs/checkpoints.md):

``hf``        Hugging Face CLIP fine-tuned image encoders, e.g. FusionBench's
              ``tanganke/clip-vit-base-patch32_<task>`` (a ``CLIPVisionModel`` /
              ``CLIPModel`` directory or hub id). Full regime: τ = θt − θ0 in
              open_clip keys, θ0 = a Hugging Face CLIP of the same architecture
              (e.g. ``openai/clip-vit-base-patch32``).
``lora``      peft LoRA adapters, e.g. KnOTS' ``hoffman-lab/KnOTS-ViT-B-32_lora_R16_<task>``.
              LoRA regime: ΔW = scale · B · A per adapted module, keyed by the
              Hugging Face weight it updates, plus the factors file.
``open_clip`` open_clip checkpoints (task-vector / TALL-masks ``.pt`` pickles holding
              a state dict, or ``.safetensors``). Full regime, open_clip keys.

Safety: pickled files (``.pt``/``.bin``) are only ever read with
``torch.load(weights_only=True)``. A pickle that needs arbitrary code (a pickled
``nn.Module``) is refused with instructions to convert it on a trusted machine.

Modules: ``sources`` (local path or hub repo, safe file reading), ``hf``, ``lora``,
``openclip`` (one per kind); this one dispatches on the kind. Command line:
``python -m mergelab.cli import-checkpoint --kind ... --source ... --task ... --out ...``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..io import check_finite, save_tensors, sha256_file
from .hf import hf_full_task_vector, load_hf_clip_vision, normalize_hf_vision_keys
from .lora import load_lora_adapter, lora_task_vector
from .openclip import (is_open_clip_file, load_open_clip_checkpoint, open_clip_as_hf_vision,
                       open_clip_task_vector, open_clip_visual_state)
from .sources import (CONVERT_SNIPPET, CheckpointError, check_same_architecture, resolve_source,
                      safe_torch_load)

__all__ = ["KINDS", "KIND_ALIASES", "KIND_REGIME", "import_checkpoint", "lora_factors_path",
           "CheckpointError", "CONVERT_SNIPPET", "resolve_source", "safe_torch_load",
           "check_same_architecture", "load_hf_clip_vision", "normalize_hf_vision_keys",
           "hf_full_task_vector", "load_lora_adapter", "lora_task_vector",
           "open_clip_visual_state", "load_open_clip_checkpoint", "is_open_clip_file",
           "open_clip_as_hf_vision", "open_clip_task_vector"]

KINDS = ("hf", "lora", "open_clip")
#: accepted spellings of each kind
KIND_ALIASES = {"hf": "hf", "fusionbench": "hf", "huggingface": "hf",
                "lora": "lora", "peft": "lora", "knots": "lora",
                "open_clip": "open_clip", "openclip": "open_clip", "pickle": "open_clip",
                "task_vectors": "open_clip"}

#: the regime whose task vector each kind replaces
KIND_REGIME = {"hf": "full", "open_clip": "full", "lora": "lora"}


def lora_factors_path(out_path: str | os.PathLike) -> Path:
    """``<task>.safetensors`` -> ``<task>.lora.safetensors`` (taskvectors.py format)."""
    out_path = Path(out_path)
    stem = out_path.name[:-len(".safetensors")] if out_path.name.endswith(".safetensors") else out_path.name
    return out_path.with_name(f"{stem}.lora.safetensors")


def import_checkpoint(kind: str, source: str | os.PathLike, task: str, out_path: str | os.PathLike,
                      pretrained_path_or_id: str | os.PathLike | None, expected_rank: int | None = None,
                      cache_dir: str | os.PathLike | None = None, offline: bool | None = None,
                      ) -> dict[str, Any]:
    """Import one published checkpoint as the task vector of ``task``; write ``out_path``.

    kind: ``hf`` (alias ``fusionbench``), ``lora`` (``peft``, ``knots``) or
    ``open_clip`` (``pickle``). ``source`` / ``pretrained_path_or_id``: local paths or
    hub ids (``cache_dir`` is the Hugging Face cache; ``offline`` defaults to
    ``HF_HUB_OFFLINE``). For ``lora`` the pretrained model is optional and only used
    to check shapes; the factors go to ``<task>.lora.safetensors`` beside ``out_path``.
    Returns a summary (regime, number of keys, files written, metadata).
    """
    k = KIND_ALIASES.get(str(kind).lower())
    if k is None:
        raise ValueError(f"unknown checkpoint kind '{kind}' (expected one of {sorted(KIND_ALIASES)})")
    if k != "lora" and pretrained_path_or_id is None:
        raise ValueError(f"kind '{k}': a pretrained model (θ0) is required to form θt − θ0")
    out_path = Path(out_path)
    written = [str(out_path)]
    if k == "hf":
        tau, meta = hf_full_task_vector(source, pretrained_path_or_id, cache_dir, offline)
        regime = "full"
    elif k == "open_clip":
        if not Path(source).is_file():
            raise CheckpointError(f"{source}: open_clip checkpoint file does not exist")
        tau, meta = open_clip_task_vector(source, pretrained_path_or_id, cache_dir, offline)
        regime = "full"
    else:
        tau, factors, meta = lora_task_vector(source, expected_rank, pretrained_path_or_id, cache_dir, offline)
        regime = "lora"
    check_finite(tau, f"task vector imported from {source}")
    meta = {**meta, "task": str(task), "kind": k, "regime": regime, "source": str(source),
            "pretrained": str(pretrained_path_or_id or "")}
    for key in ("finetuned_file", "adapter_file"):
        if key in meta and Path(meta[key]).is_file():
            meta[key.replace("_file", "_sha256")] = sha256_file(meta[key])
    if regime == "lora":
        fpath = lora_factors_path(out_path)
        save_tensors(factors, fpath, metadata=meta)
        written.append(str(fpath))
    save_tensors(tau, out_path, metadata=meta)
    return {"task": str(task), "kind": k, "regime": regime, "n_keys": len(tau),
            "written": written, "metadata": meta}

