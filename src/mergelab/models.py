"""Models: open_clip CLIPs (full fine-tuning track) and Hugging Face CLIP vision
towers (LoRA track), behind one small "image encoder" interface.

The embedded mini suite uses ``mergelab-tiny``, an open_clip model config kept in
``mergelab/model_configs`` and registered with open_clip, so exactly the same code
path serves ``ViT-B-32`` and friends at paper scale. ``ViT-B-32-2blocks`` there is
ViT-B-32 with two transformer blocks per tower (its widths, patch, image size and key
names): `make test` runs the smoke configs on it (tests/test_smoke.py).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .io import ArtifactError, load_tensors
from .shipped import CONFIG_DIR

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

_registered = False


def register_configs() -> None:
    """Make the repo's open_clip model configs known to open_clip (idempotent)."""
    global _registered
    if not _registered:
        import open_clip
        open_clip.add_model_config(CONFIG_DIR)
        _registered = True


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA if visible, else CPU. With ``MERGELAB_GPU_SLOTS=N`` set (local
    multi-GPU runs, mergelab/gpuslots.py), ``auto`` and a bare ``cuda`` take a free one
    of N slots and return that slot's device, so concurrent jobs use distinct GPUs."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"config 'device: {name}' asks for CUDA but no GPU is visible; "
                           "use 'device: auto' or 'cpu'")
    if name == "cuda":
        from . import gpuslots
        if gpuslots.configured_slots():
            slot = gpuslots.acquire()
            index = gpuslots.device_index(slot, torch.cuda.device_count())
            torch.cuda.set_device(index)  # implicit .cuda() calls land there too
            logging.getLogger(__name__).info("GPU slot %d -> cuda:%d", slot, index)
            return torch.device(f"cuda:{index}")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


# --------------------------------------------------------------------------- open_clip

def open_clip_config(name: str) -> dict[str, Any]:
    register_configs()
    import open_clip
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise ValueError(f"config 'model.name: {name}': unknown open_clip model "
                         f"(known e.g. ViT-B-32, ViT-B-16, ViT-L-14, mergelab-tiny)")
    return cfg


def create_open_clip(name: str, pretrained: str | None = None, cache_dir: str | None = None,
                     quick_gelu: bool | None = None) -> nn.Module:
    """An open_clip CLIP. ``pretrained`` is an open_clip tag (e.g. ``openai``), the tag of
    weights shipped with mergelab (mergelab/shipped.py), or None."""
    register_configs()
    import open_clip
    from . import shipped
    if shipped.is_shipped(name, pretrained):
        model = create_open_clip(name, None, quick_gelu=quick_gelu)
        path = shipped.verified_weights(pretrained)
        missing, unexpected = model.load_state_dict(load_tensors(path), strict=False)
        if missing or unexpected:
            raise ArtifactError(f"{path}: does not match open_clip '{name}' (missing "
                                f"{missing[:4]}, unexpected {unexpected[:4]})")
        return model
    kwargs: dict[str, Any] = {}
    if cache_dir:
        kwargs["cache_dir"] = cache_dir
    if quick_gelu is not None and pretrained is None:
        kwargs["force_quick_gelu"] = quick_gelu
    root = logging.getLogger()
    level = root.level
    if pretrained is None:  # silence open_clip's "no pretrained weights" warning
        root.setLevel(logging.ERROR)
    try:
        model = open_clip.create_model(name, pretrained=pretrained, **kwargs)
    except Exception as exc:  # network / cache problems surface with the model named
        if pretrained:
            raise RuntimeError(
                f"could not load open_clip '{name}' pretrained '{pretrained}' "
                f"(cache_dir={cache_dir!r}): {exc}. Offline? Download once with internet "
                f"(open_clip.create_model('{name}', pretrained='{pretrained}', cache_dir=...)) "
                "and point config 'model.cache_dir' at that cache.") from exc
        raise
    finally:
        root.setLevel(level)
    return model


def tokenizer(name: str):
    register_configs()
    import open_clip
    return open_clip.get_tokenizer(name)


def load_clip(model_cfg: Mapping[str, Any], weights: str | Path) -> nn.Module:
    """The pipeline's pretrained CLIP: architecture from config, weights from safetensors."""
    model = create_open_clip(model_cfg["name"])
    sd = load_tensors(weights)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ArtifactError(f"{weights}: does not match open_clip '{model_cfg['name']}' "
                            f"(missing {missing[:4]}, unexpected {unexpected[:4]}); "
                            "a checkpoint of another architecture?")
    return model.eval()


def visual_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The image encoder's weights with open_clip's ``visual.`` prefix."""
    return {f"visual.{k}": v.detach().clone() for k, v in model.visual.state_dict().items()}


# --------------------------------------------------------------------------- encoders

class ImageEncoder(nn.Module):
    """Maps normalized image batches to (unnormalized) embedding vectors.

    ``state_keys`` name the weights a task vector may touch; ``load_weights``
    loads a (partial) state dict keyed like the task vectors.
    """

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def weights(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def load_weights(self, sd: Mapping[str, torch.Tensor]) -> None:
        raise NotImplementedError


class OpenClipEncoder(ImageEncoder):
    """open_clip ``model.visual``; keys ``visual.*``."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual(images)

    def weights(self) -> dict[str, torch.Tensor]:
        return {f"visual.{k}": v for k, v in self.visual.state_dict().items()}

    def load_weights(self, sd: Mapping[str, torch.Tensor]) -> None:
        inner = {}
        for k, v in sd.items():
            if not k.startswith("visual."):
                raise ArtifactError(f"tensor '{k}' is not an open_clip image-encoder key")
            inner[k[len("visual."):]] = v
        own = self.visual.state_dict()
        for k, v in inner.items():
            if k not in own:
                raise ArtifactError(f"tensor 'visual.{k}' does not exist in this image encoder")
            if own[k].shape != v.shape:
                raise ArtifactError(f"tensor 'visual.{k}' has shape {tuple(v.shape)}, "
                                    f"the encoder expects {tuple(own[k].shape)}")
        self.visual.load_state_dict(inner, strict=False)


class HFClipEncoder(ImageEncoder):
    """Hugging Face ``CLIPVisionModelWithProjection``; keys ``vision_model.*``,
    ``visual_projection.weight``. Used for the LoRA track."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=images).image_embeds

    def weights(self) -> dict[str, torch.Tensor]:
        return dict(self.model.state_dict())

    def load_weights(self, sd: Mapping[str, torch.Tensor]) -> None:
        own = self.model.state_dict()
        for k, v in sd.items():
            if k not in own:
                raise ArtifactError(f"tensor '{k}' does not exist in this HF CLIP vision tower")
            if own[k].shape != v.shape:
                raise ArtifactError(f"tensor '{k}' has shape {tuple(v.shape)}, "
                                    f"the encoder expects {tuple(own[k].shape)}")
        self.model.load_state_dict(dict(sd), strict=False)


def hf_encoder_from_open_clip(model_cfg: Mapping[str, Any], clip: nn.Module) -> HFClipEncoder:
    """A Hugging Face CLIP vision tower holding exactly the open_clip image encoder's weights."""
    from transformers import CLIPVisionModelWithProjection

    from .convert import hf_vision_config_from_open_clip, open_clip_to_hf_vision
    oc_cfg = open_clip_config(model_cfg["name"])
    hf_cfg = hf_vision_config_from_open_clip(oc_cfg)
    hf = CLIPVisionModelWithProjection(hf_cfg)
    sd = open_clip_to_hf_vision(visual_state(clip))
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    missing = [m for m in missing if "position_ids" not in m]
    if missing or unexpected:
        raise ArtifactError(f"open_clip -> HF conversion mismatch (missing {missing[:4]}, "
                            f"unexpected {unexpected[:4]})")
    return HFClipEncoder(hf.eval())


def hf_encoder_from_hub(hf_name: str, cache_dir: str | None = None) -> HFClipEncoder:
    from transformers import CLIPVisionModelWithProjection
    try:
        hf = CLIPVisionModelWithProjection.from_pretrained(hf_name, cache_dir=cache_dir)
    except OSError as exc:
        raise RuntimeError(
            f"could not load Hugging Face model '{hf_name}' (cache_dir={cache_dir!r}): {exc}. "
            "Offline? Download it once with internet (huggingface-cli download "
            f"{hf_name}) and set config 'model.cache_dir' / HF_HOME to that cache.") from exc
    return HFClipEncoder(hf.eval())


def build_encoder(regime: str, model_cfg: Mapping[str, Any], pretrained_weights: str | Path) -> ImageEncoder:
    """θ0 as the image encoder of ``regime`` ("full": open_clip; "lora": HF CLIP)."""
    if regime == "full":
        return OpenClipEncoder(load_clip(model_cfg, pretrained_weights).visual)
    if regime == "lora":
        if model_cfg.get("hf_name"):
            return hf_encoder_from_hub(model_cfg["hf_name"], model_cfg.get("cache_dir"))
        return hf_encoder_from_open_clip(model_cfg, load_clip(model_cfg, pretrained_weights))
    raise ValueError(f"unknown regime '{regime}' (expected 'full' or 'lora')")


def normalize_images(x_uint8: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """uint8 [N,3,H,W] -> float, CLIP-normalized."""
    x = x_uint8.to(device=device, dtype=torch.float32) / 255.0
    mean = torch.tensor(OPENAI_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def save_random_init(model_cfg: Mapping[str, Any], seed: int, out_weights: str | Path,
                     out_metrics: str | Path) -> dict[str, Any]:
    """θ0 = the open_clip architecture's own random initialisation, seeded with ``seed``
    (config ``model.random_init: true``): no pretraining, no corpus, no download. For smoke
    runs of the real architectures (config/smoke/)."""
    from .io import provenance, save_json, save_tensors
    if model_cfg.get("pretrained"):
        raise ArtifactError(f"config 'model.random_init: true' with 'model.pretrained: "
                            f"{model_cfg['pretrained']}': choose one")
    seed_everything(seed)
    model = create_open_clip(model_cfg["name"])
    save_tensors({k: v.detach().contiguous() for k, v in model.state_dict().items()}, out_weights,
                 metadata={"model": model_cfg["name"], "source": f"random init (seed {seed})"})
    metrics = {"source": "random_init", "parameters": sum(p.numel() for p in model.parameters()),
               "provenance": provenance({"model": dict(model_cfg)}, seed=seed)}
    save_json(metrics, out_metrics)
    return metrics
