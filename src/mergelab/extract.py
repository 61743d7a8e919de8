"""Task-vector extraction from fine-tuned weights (full) or LoRA factors (lora)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from .io import ArtifactError, check_finite, load_tensors, save_tensors
from .models import build_encoder
from .taskvectors import task_vector


def lora_dense(factors: Mapping[str, torch.Tensor], rank: int, alpha: float,
               source: str = "adapter") -> dict[str, torch.Tensor]:
    """ΔW = (alpha / r) · B · A per module, keyed by the base weight."""
    out = {}
    for key in sorted(k[: -len(".lora_A")] for k in factors if k.endswith(".lora_A")):
        a, b = factors[f"{key}.lora_A"].float(), factors.get(f"{key}.lora_B")
        if b is None:
            raise ArtifactError(f"{source}: '{key}.lora_A' has no matching '{key}.lora_B'")
        if a.shape[0] != rank or b.shape[1] != rank:
            raise ArtifactError(f"{source}: LoRA module '{key}' has rank {a.shape[0]}, "
                                f"the config expects rank {rank} (finetune.lora.rank)")
        out[key] = (alpha / rank) * (b.float() @ a)
    if not out:
        raise ArtifactError(f"{source}: no LoRA factors ('*.lora_A'/'*.lora_B') found")
    return out


def extract(regime: str, finetuned: str | Path, pretrained: str | Path,
            model_cfg: Mapping[str, Any], out_path: str | Path,
            lora_cfg: Mapping[str, Any] | None = None) -> dict[str, Any]:
    ft = load_tensors(finetuned)
    check_finite(ft, str(finetuned))
    if regime == "full":
        theta0 = build_encoder("full", model_cfg, pretrained).weights()
        try:
            tau = task_vector(ft, theta0)
        except ArtifactError as exc:
            raise ArtifactError(f"{finetuned}: {exc}") from None
        meta = {"regime": "full"}
    elif regime == "lora":
        assert lora_cfg is not None
        tau = lora_dense(ft, lora_cfg["rank"], lora_cfg["alpha"], str(finetuned))
        theta0 = build_encoder("lora", model_cfg, pretrained).weights()
        for k, v in tau.items():
            if k not in theta0 or theta0[k].shape != v.shape:
                raise ArtifactError(f"{finetuned}: LoRA module '{k}' does not fit the model "
                                    "(another architecture?)")
        meta = {"regime": "lora", "lora_rank": str(lora_cfg["rank"]),
                "lora_alpha": str(lora_cfg["alpha"])}
    else:
        raise ValueError(f"unknown regime '{regime}'")
    save_tensors(tau, out_path, metadata=meta)
    return {"keys": len(tau), "numel": sum(v.numel() for v in tau.values())}
