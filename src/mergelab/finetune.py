"""Per-task fine-tuning of the image encoder with a frozen zero-shot head.

- full: every image-encoder weight (AdamW, cosine with warm-up, gradient clipping);
- lora: peft LoRA on the q/k/v/out projections of every vision attention layer of
  the Hugging Face CLIP vision tower.
The best model is the last one (paper recipe); the validation accuracy is logged.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from .engine import Head, accuracy, cosine_lr, progress
from .io import ArtifactError, provenance, save_json, save_tensors
from .models import build_encoder, normalize_images, pick_device, seed_everything
from .splits import iterate, load_split


def _train_loop(encoder, head: Head, params, x, y, cfg: Mapping[str, Any], epochs: float,
                seed: int, dev: torch.device, desc: str, num_workers: int = 0) -> dict[str, Any]:
    bs = min(cfg["batch_size"], len(x))
    steps_per_epoch = max(1, math.ceil(len(x) / bs))
    total = max(1, int(round(epochs * steps_per_epoch)))
    if cfg.get("max_steps"):
        total = min(total, cfg["max_steps"])
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    head = head.to(dev)
    gen = torch.Generator().manual_seed(seed)
    warmup = min(cfg["warmup_steps"], total // 5) if total < 5 * cfg["warmup_steps"] else cfg["warmup_steps"]
    step, losses, t0 = 0, [], time.time()
    encoder.train()
    bar = progress(total=total, desc=desc)
    while step < total:
        for xb, yb in iterate(x, y, bs, shuffle=True, generator=gen, num_workers=num_workers):
            if step >= total:
                break
            for g in opt.param_groups:
                g["lr"] = cosine_lr(step, total, cfg["lr"], warmup)
            logits = head.logits(encoder(normalize_images(xb, dev)).float())
            loss = F.cross_entropy(logits, yb.to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg["grad_clip"])
            opt.step()
            losses.append(loss.item())
            step += 1
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{sum(losses[-20:]) / 20:.3f}")
    bar.close()
    encoder.eval()
    return {"steps": total, "seconds": time.time() - t0, "images_per_second":
            total * bs / max(1e-9, time.time() - t0), "loss_first": losses[0],
            "loss_last": sum(losses[-10:]) / len(losses[-10:])}


def finetune(regime: str, task: str, task_dir: str | Path, head_path: str | Path,
             pretrained: str | Path, model_cfg: Mapping[str, Any], cfg: Mapping[str, Any],
             data_cfg: Mapping[str, Any], epochs: float, seed: int, out_weights: str | Path,
             out_metrics: str | Path, device: str = "auto", eval_batch: int = 256) -> dict[str, Any]:
    seed_everything(seed)
    dev = pick_device(device)
    head = Head.load(head_path)
    x, y, n_classes = load_split(str(task_dir), "train", data_cfg["image_size"],
                                 data_cfg.get("max_train_per_task"))
    if head.weight.shape[0] != n_classes:
        raise ArtifactError(f"{head_path}: head has {head.weight.shape[0]} classes, "
                            f"dataset {task_dir} has {n_classes}")
    encoder = build_encoder(regime, model_cfg, pretrained).to(dev)
    if regime == "full":
        params = [p for p in encoder.parameters() if p.requires_grad]
        stats = _train_loop(encoder, head, params, x, y, cfg, epochs, seed, dev,
                            f"finetune full {task}", data_cfg.get("num_workers", 0))
        weights = {k: v.detach().cpu() for k, v in encoder.weights().items()}
    elif regime == "lora":
        from peft import LoraConfig, get_peft_model
        lcfg = LoraConfig(r=cfg["rank"], lora_alpha=cfg["alpha"], lora_dropout=cfg["dropout"],
                          target_modules=list(cfg["target_modules"]), bias="none")
        encoder.model = get_peft_model(encoder.model, lcfg)
        params = [p for p in encoder.parameters() if p.requires_grad]
        stats = _train_loop(encoder, head, params, x, y, cfg, epochs, seed, dev,
                            f"finetune lora {task}", data_cfg.get("num_workers", 0))
        weights = lora_factors(encoder.model, cfg["rank"], cfg["alpha"])
    else:
        raise ValueError(f"unknown regime '{regime}'")
    xv, yv, _ = load_split(str(task_dir), "validation", data_cfg["image_size"],
                           data_cfg.get("max_eval_per_task"))
    stats["val_accuracy"] = accuracy(encoder, head, xv, yv, eval_batch, dev)
    save_tensors(weights, out_weights, metadata={"regime": regime, "task": task,
                                                  "lora_rank": str(cfg.get("rank", "")),
                                                  "lora_alpha": str(cfg.get("alpha", ""))})
    stats["provenance"] = provenance({"regime": regime, "task": task, "finetune": dict(cfg),
                                      "epochs": epochs, "model": dict(model_cfg)}, seed=seed)
    save_json(stats, out_metrics)
    return stats


def lora_factors(peft_model, rank: int, alpha: float) -> dict[str, torch.Tensor]:
    """LoRA factors keyed by the base weight they update: ``<key>.lora_A`` [r, d_in],
    ``<key>.lora_B`` [d_out, r]; the dense update is (alpha / r) · B · A."""
    out: dict[str, torch.Tensor] = {}
    for name, module in peft_model.named_modules():
        if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
            base = name.replace("base_model.model.", "", 1) + ".weight"
            out[f"{base}.lora_A"] = module.lora_A["default"].weight.detach().cpu().clone()
            out[f"{base}.lora_B"] = module.lora_B["default"].weight.detach().cpu().clone()
    if not out:
        raise RuntimeError("no LoRA modules found in the fine-tuned model")
    return out
