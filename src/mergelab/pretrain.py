"""Contrastive pretraining of the tiny CLIP on the offline captioned corpus
(mini suite only; paper configs load open_clip's pretrained weights instead)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import torch

from .engine import batches, cosine_lr, progress
from .io import provenance, save_json, save_tensors
from .models import create_open_clip, normalize_images, pick_device, seed_everything, tokenizer


def pretrain(corpus_dir: str | Path, model_cfg: Mapping[str, Any], cfg: Mapping[str, Any],
             image_size: int, seed: int, out_weights: str | Path, out_metrics: str | Path,
             device: str = "auto") -> dict[str, Any]:
    import open_clip
    from datasets import load_from_disk

    from .data.loading import split_to_tensor

    seed_everything(seed)
    dev = pick_device(device)
    ds = load_from_disk(str(corpus_dir))
    images, _ = split_to_tensor(ds, image_size) if "label" in ds.column_names else \
        split_to_tensor(ds.add_column("label", [0] * len(ds)), image_size)
    tok = tokenizer(model_cfg["name"])
    texts = tok(list(ds["caption"]))
    model = create_open_clip(model_cfg["name"]).to(dev)
    model.train()
    loss_fn = open_clip.ClipLoss()
    named = [(n, p) for n, p in model.named_parameters() if n != "logit_scale"]
    decay = [p for n, p in named if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in named if not (p.ndim >= 2 and "embedding" not in n)]
    # the temperature gets its own learning rate: with a short schedule it otherwise stays
    # near its 1/0.07 initialisation and the text embeddings of a task's classes stay
    # nearly collinear (a poor frozen head)
    scale_lr = cfg.get("logit_scale_lr") or cfg["lr"]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"], "base_lr": cfg["lr"]},
                             {"params": no_decay, "weight_decay": 0.0, "base_lr": cfg["lr"]},
                             {"params": [model.logit_scale], "weight_decay": 0.0, "base_lr": scale_lr}],
                            lr=cfg["lr"])
    bs = cfg["batch_size"]
    steps_per_epoch = max(1, len(images) // bs)
    total = max(1, int(round(cfg["epochs"] * steps_per_epoch)))
    gen = torch.Generator().manual_seed(seed)
    step, t0, losses = 0, time.time(), []
    bar = progress(total=total, desc="pretrain")
    while step < total:
        for idx in batches(len(images), bs, shuffle=True, generator=gen, drop_last=True):
            if step >= total:
                break
            for g in opt.param_groups:
                g["lr"] = cosine_lr(step, total, g["base_lr"], cfg["warmup_steps"])
            img_f, txt_f, scale = model(normalize_images(images[idx], dev), texts[idx].to(dev))[:3]
            loss = loss_fn(img_f, txt_f, scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, 4.6052)
            losses.append(loss.item())
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.eval()
    save_tensors({k: v for k, v in model.state_dict().items()}, out_weights,
                 metadata={"model": model_cfg["name"], "source": "mergelab pretrain"})
    metrics = {
        "steps": total, "images": len(images), "seconds": time.time() - t0,
        "loss_first": losses[0], "loss_last": sum(losses[-20:]) / len(losses[-20:]),
        "loss_curve": loss_curve(losses),
        "provenance": provenance({"model": dict(model_cfg), "pretrain": dict(cfg)}, seed=seed),
    }
    save_json(metrics, out_metrics)
    return metrics


def loss_curve(losses: list[float], points: int = 100) -> list[list[float]]:
    """[step, mean loss of the window ending at step] at about `points` evenly spaced steps."""
    window = max(1, len(losses) // points)
    return [[i + window, sum(losses[i:i + window]) / len(losses[i:i + window])]
            for i in range(0, len(losses) - window + 1, window)]


def fetch_pretrained(model_cfg: Mapping[str, Any], out_weights: str | Path,
                     out_metrics: str | Path) -> dict[str, Any]:
    """Published weights saved as safetensors: open_clip's (e.g. ViT-B-32 'openai') at paper
    scale, or the weights shipped with mergelab (the mini suite's θ0)."""
    from . import shipped
    tag = model_cfg["pretrained"]
    model = create_open_clip(model_cfg["name"], tag, model_cfg.get("cache_dir"))
    source = f"mergelab shipped:{tag}" if shipped.is_shipped(model_cfg["name"], tag) else f"open_clip:{tag}"
    save_tensors(dict(model.state_dict()), out_weights,
                 metadata={"model": model_cfg["name"], "source": source})
    metrics = {"source": source, "provenance": provenance({"model": dict(model_cfg)})}
    if source.startswith("mergelab shipped"):
        metrics["card_sha256"] = shipped.read_card(tag)["sha256"]
    save_json(metrics, out_metrics)
    return metrics
