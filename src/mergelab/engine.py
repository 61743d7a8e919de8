"""Shared training/evaluation machinery: batches, schedules, heads, accuracy."""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .io import ArtifactError, load_tensors, save_tensors
from .models import ImageEncoder, normalize_images


def progress(iterable=None, **kw):
    """tqdm to stderr (lands in the rule's log); quiet when not wanted."""
    kw.setdefault("file", sys.stderr)
    kw.setdefault("mininterval", 2.0)
    kw.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kw)


def batches(n: int, batch_size: int, shuffle: bool, generator: torch.Generator | None = None,
            drop_last: bool = False) -> Iterator[torch.Tensor]:
    idx = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - (n % batch_size) if drop_last and n >= batch_size else n
    for i in range(0, stop, batch_size):
        yield idx[i:i + batch_size]


def cosine_lr(step: int, total: int, base_lr: float, warmup: int) -> float:
    """Linear warm-up then cosine decay to 0 (the task-vector recipe)."""
    if warmup > 0 and step < warmup:
        return base_lr * (step + 1) / warmup
    progress_ = (step - warmup) / max(1, total - warmup)
    return 0.5 * base_lr * (1 + math.cos(math.pi * min(1.0, progress_)))


# ---------------------------------------------------------------------------- heads

class Head:
    """A frozen zero-shot classification head: logits = scale · normalize(f) @ Wᵀ."""

    def __init__(self, weight: torch.Tensor, logit_scale: float):
        self.weight = weight
        self.logit_scale = float(logit_scale)

    def to(self, device) -> "Head":
        return Head(self.weight.to(device), self.logit_scale)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.logit_scale * F.normalize(features, dim=-1) @ self.weight.T

    def save(self, path: str | Path, metadata: Mapping[str, str] | None = None) -> None:
        save_tensors({"weight": self.weight, "logit_scale": torch.tensor(self.logit_scale)},
                     path, metadata)

    @classmethod
    def load(cls, path: str | Path) -> "Head":
        t = load_tensors(path)
        if "weight" not in t or "logit_scale" not in t:
            raise ArtifactError(f"{path}: not a classification head (needs 'weight', 'logit_scale')")
        return cls(t["weight"].float(), float(t["logit_scale"]))


@torch.no_grad()
def head_from_texts(encode: Callable[[list[str]], torch.Tensor], classnames: Sequence[str],
                    templates: Sequence[str], logit_scale: float) -> Head:
    """Zero-shot head: per class, embed every template (``encode``: texts -> [n, d]),
    L2-normalize, average, renormalize."""
    rows = []
    for name in classnames:
        emb = F.normalize(encode([t.format(name) for t in templates]).float(), dim=-1)
        rows.append(F.normalize(emb.mean(dim=0), dim=-1))
    return Head(torch.stack(rows).cpu(), float(logit_scale))


@torch.no_grad()
def text_head(clip, tokenizer, classnames: list[str], templates: list[str],
              device: torch.device) -> Head:
    """Head from an open_clip model's text tower (see ``head_from_texts``)."""
    clip = clip.to(device).eval()
    return head_from_texts(lambda texts: clip.encode_text(tokenizer(texts).to(device)),
                           classnames, templates, clip.logit_scale.exp().item())


# ---------------------------------------------------------------------------- evaluation

@torch.no_grad()
def predict(encoder: ImageEncoder, head: Head, images, batch_size: int,
            device: torch.device, num_workers: int = 0) -> torch.Tensor:
    """Predicted labels for uint8 images [N,3,H,W]."""
    from .splits import iterate
    encoder.eval()
    head = head.to(device)
    preds = []
    dummy = torch.zeros(len(images), dtype=torch.long)
    for xb, _ in iterate(images, dummy, batch_size, num_workers=num_workers):
        preds.append(head.logits(encoder(normalize_images(xb, device)).float()).argmax(dim=-1).cpu())
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)


@torch.no_grad()
def predict_with_margin(encoder: ImageEncoder, head: Head, images, labels: torch.Tensor,
                        batch_size: int, device: torch.device,
                        num_workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted labels, margins) for uint8 images [N,3,H,W]; the margin is the true
    class's logit minus the largest other logit (mergelab.predictions)."""
    from .splits import iterate
    encoder.eval()
    head = head.to(device)
    preds, margins = [], []
    for xb, yb in iterate(images, labels, batch_size, num_workers=num_workers):
        logits = head.logits(encoder(normalize_images(xb, device)).float()).float().cpu()
        preds.append(logits.argmax(dim=-1))
        true = logits.gather(1, yb.view(-1, 1)).squeeze(1)
        others = logits.scatter(1, yb.view(-1, 1), float("-inf"))
        margins.append(true - others.max(dim=-1).values if logits.shape[1] > 1 else true)
    if not preds:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0)
    return torch.cat(preds), torch.cat(margins)


def accuracy(encoder: ImageEncoder, head: Head, images, labels: torch.Tensor,
             batch_size: int, device: torch.device, num_workers: int = 0) -> float:
    if len(labels) == 0:
        raise ArtifactError("cannot evaluate on an empty split")
    pred = predict(encoder, head, images, batch_size, device, num_workers)
    return (pred == labels).float().mean().item()
