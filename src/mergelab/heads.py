"""Zero-shot classification heads from a CLIP text encoder and the task's templates.

Two text towers (config ``model.head_text_encoder``):

* ``open_clip`` (default): the open_clip text encoder of θ0 (``model.name``);
* ``hf``: the text tower + ``text_projection`` of the Hugging Face ``CLIPModel`` named by
  ``model.hf_name`` (hub id or local ``save_pretrained`` directory), with that model's own
  tokenizer, for the LoRA track whose image encoder is that model's vision tower.

Both build the head the same way: every template per class is encoded, each embedding
L2-normalised, the class's embeddings averaged and renormalised; the logit scale is the
model's ``logit_scale.exp()``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from .engine import Head, head_from_texts, text_head
from .io import ArtifactError, load_tensors
from .models import create_open_clip, pick_device, tokenizer
from .splits import task_classnames


def templates_for(task: str, task_cfg: Mapping[str, Any]) -> list[str]:
    from .data.prepare import task_source
    if task_source(task_cfg) == "mini":
        from .data.loading import templates_for as mini_templates
        return list(mini_templates(task))
    from .data.paper import templates_for as paper_templates
    return list(paper_templates(task, task_cfg))


def load_hf_clip(hf_name: str, cache_dir: str | None = None):
    """(CLIPModel, tokenizer) of a Hugging Face CLIP id or local directory, in eval mode."""
    from transformers import AutoTokenizer, CLIPModel
    try:
        model = CLIPModel.from_pretrained(hf_name, cache_dir=cache_dir)
    except (OSError, ValueError) as exc:
        raise ArtifactError(
            f"config 'model.hf_name: {hf_name}': cannot load a Hugging Face CLIPModel "
            f"(cache_dir={cache_dir!r}): {exc}. model.head_text_encoder 'hf' needs the whole "
            "CLIPModel (text tower included), e.g. openai/clip-vit-base-patch32; download it "
            "once with internet (hf download <id> --cache-dir <model.cache_dir>).") from exc
    try:
        tok = AutoTokenizer.from_pretrained(hf_name, cache_dir=cache_dir)
    except (OSError, ValueError, TypeError) as exc:
        raise ArtifactError(
            f"config 'model.hf_name: {hf_name}': no usable tokenizer there ({exc}); "
            "model.head_text_encoder 'hf' needs the model's tokenizer files (vocab.json, "
            "merges.txt, tokenizer_config.json) beside its weights") from exc
    return model.eval(), tok


@torch.no_grad()
def hf_text_embeddings(model, tok, texts: Sequence[str], device: torch.device) -> torch.Tensor:
    """Projected text embeddings [len(texts), projection_dim] (not normalised) of a HF CLIPModel."""
    max_len = int(model.config.text_config.max_position_embeddings)
    enc = tok(list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
    out = model.text_model(input_ids=enc["input_ids"].to(device),
                           attention_mask=enc["attention_mask"].to(device))
    return model.text_projection(out.pooler_output).float()


@torch.no_grad()
def hf_text_head(model, tok, classnames: Sequence[str], templates: Sequence[str],
                 device: torch.device) -> Head:
    """A zero-shot head from a HF CLIPModel's text tower, built like ``engine.text_head``."""
    model = model.to(device).eval()
    return head_from_texts(lambda texts: hf_text_embeddings(model, tok, texts, device),
                           classnames, templates, model.logit_scale.exp().item())


def build_head(task: str, task_cfg: Mapping[str, Any], task_dir: str | Path,
               model_cfg: Mapping[str, Any], pretrained: str | Path, out_path: str | Path,
               device: str = "auto") -> None:
    names = task_classnames(task_dir)
    templates = templates_for(task, task_cfg)
    dev = pick_device(device)
    encoder = model_cfg.get("head_text_encoder") or "open_clip"
    if encoder == "hf":
        if not model_cfg.get("hf_name"):
            raise ArtifactError("config 'model.head_text_encoder: hf' needs 'model.hf_name' "
                                "(the Hugging Face CLIPModel whose text tower builds the heads)")
        model, tok = load_hf_clip(model_cfg["hf_name"], model_cfg.get("cache_dir"))
        head = hf_text_head(model, tok, names, templates, dev)
        source = f"hf:{model_cfg['hf_name']}"
    elif encoder == "open_clip":
        model = create_open_clip(model_cfg["name"])
        model.load_state_dict(load_tensors(pretrained))
        head = text_head(model, tokenizer(model_cfg["name"]), names, templates, dev)
        source = f"open_clip:{model_cfg['name']}"
    else:
        raise ArtifactError(f"config 'model.head_text_encoder': unknown text tower {encoder!r} "
                            "(open_clip | hf)")
    head.save(out_path, metadata={"task": task, "classes": str(len(names)),
                                  "templates": str(len(templates)), "text_encoder": source})
