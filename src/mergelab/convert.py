"""The one key mapping between open_clip and Hugging Face CLIP image encoders.

open_clip (``model.visual``, keys with the ``visual.`` prefix) and
``transformers.CLIPVisionModelWithProjection`` hold the same ViT with different
names and two layout differences:

- open_clip fuses the attention input projections into one
  ``attn.in_proj_weight`` [3·w, w] / ``attn.in_proj_bias`` [3·w]; Hugging Face
  keeps ``q_proj``, ``k_proj``, ``v_proj`` (rows 0:w, w:2w, 2w:3w, in that order);
- open_clip's ``visual.proj`` is [width, embed] and applied as ``x @ proj``;
  Hugging Face's ``visual_projection.weight`` is the ``nn.Linear`` weight
  [embed, width] = projᵀ.

Everything else is a rename (table in docs/checkpoints.md). Conversions copy
values exactly (split / concatenate / transpose only), so a round trip is
bitwise identical.

Task-vector keys map the same way: ``hf_delta_to_open_clip`` turns a (possibly
partial) Hugging Face keyed update -- e.g. a LoRA update on ``q_proj`` only --
into open_clip keys, filling the q/k/v row blocks it does not touch with zeros.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from .lazy import torch

HF_PREFIX = "vision_model."
HF_PROJ = "visual_projection.weight"

#: open_clip suffix (after the prefix) -> HF key, outside the transformer blocks
_GLOBAL = (
    ("class_embedding", "vision_model.embeddings.class_embedding"),
    ("positional_embedding", "vision_model.embeddings.position_embedding.weight"),
    ("conv1.weight", "vision_model.embeddings.patch_embedding.weight"),
    ("ln_pre.weight", "vision_model.pre_layrnorm.weight"),
    ("ln_pre.bias", "vision_model.pre_layrnorm.bias"),
    ("ln_post.weight", "vision_model.post_layernorm.weight"),
    ("ln_post.bias", "vision_model.post_layernorm.bias"),
)
#: per transformer block: open_clip suffix (after ``transformer.resblocks.{i}.``)
#: -> HF suffix (after ``vision_model.encoder.layers.{i}.``), plain renames
_BLOCK = (
    ("ln_1.weight", "layer_norm1.weight"),
    ("ln_1.bias", "layer_norm1.bias"),
    ("attn.out_proj.weight", "self_attn.out_proj.weight"),
    ("attn.out_proj.bias", "self_attn.out_proj.bias"),
    ("ln_2.weight", "layer_norm2.weight"),
    ("ln_2.bias", "layer_norm2.bias"),
    ("mlp.c_fc.weight", "mlp.fc1.weight"),
    ("mlp.c_fc.bias", "mlp.fc1.bias"),
    ("mlp.c_proj.weight", "mlp.fc2.weight"),
    ("mlp.c_proj.bias", "mlp.fc2.bias"),
)
#: fused open_clip parameter -> its kind ("weight" / "bias"); HF splits it into q, k, v
_FUSED = (("attn.in_proj_weight", "weight"), ("attn.in_proj_bias", "bias"))
_QKV = ("q", "k", "v")

#: buffers some Hugging Face checkpoints carry that are not weights
_HF_IGNORED = ("vision_model.embeddings.position_ids",)

_OC_BLOCK_RE = re.compile(r"^transformer\.resblocks\.(\d+)\.(.+)$")
_HF_BLOCK_RE = re.compile(r"^vision_model\.encoder\.layers\.(\d+)\.(.+)$")


class ConversionError(ValueError):
    """A state dict does not have the keys / shapes of a CLIP ViT image encoder."""


# --------------------------------------------------------------------------- config

#: open_clip vision options that the HF CLIP vision tower cannot express, with the
#: value that HF's architecture corresponds to
_UNSUPPORTED_VISION_OPTIONS: dict[str, Any] = {
    "ls_init_value": None, "attentional_pool": False, "no_ln_pre": False,
    "pos_embed_type": "learnable", "final_ln_after_pool": False, "pool_type": "tok",
    "act_kwargs": None, "norm_kwargs": None, "block_type": None, "qk_norm": False,
    "scaled_cosine_attn": False, "scale_heads": False, "scale_attn_inner": False,
    "scale_attn": False, "scale_fc": False, "timm_model_name": None,
}


def _square(value: Any, what: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError(f"open_clip vision_cfg.{what}={value!r}: only square sizes "
                             "convert to a Hugging Face CLIPVisionConfig")
        value = value[0]
    return int(value)


def hf_vision_config_from_open_clip(model_cfg: Mapping[str, Any],
                                    quick_gelu: bool | None = None):
    """The ``transformers.CLIPVisionConfig`` of an open_clip ViT model config.

    ``model_cfg`` is an open_clip model config dict (``open_clip.get_model_config``):
    ``{embed_dim, vision_cfg: {image_size, layers, width, patch_size, head_width?,
    mlp_ratio?}, quick_gelu?}``. ``hidden_act`` is ``quick_gelu`` when the config
    says ``quick_gelu: true`` (OpenAI weights), else ``gelu``; ``quick_gelu``
    overrides that (open_clip's ``force_quick_gelu``, or loading
    ``pretrained='openai'``, switches it on for configs that lack the flag).
    """
    from transformers import CLIPVisionConfig

    if "vision_cfg" not in model_cfg or "embed_dim" not in model_cfg:
        raise ValueError("open_clip model config needs 'embed_dim' and 'vision_cfg' "
                         f"(got keys {sorted(model_cfg)})")
    vc = dict(model_cfg["vision_cfg"])
    if not isinstance(vc.get("layers", 12), int):
        raise ValueError(f"open_clip vision_cfg.layers={vc['layers']!r}: a ResNet image "
                         "encoder has no Hugging Face CLIP vision equivalent (ViT only)")
    for name, hf_value in _UNSUPPORTED_VISION_OPTIONS.items():
        value = vc.get(name, hf_value)
        if value != hf_value and not (hf_value is None and value == {}):
            raise ValueError(f"open_clip vision_cfg.{name}={value!r} has no equivalent in "
                             f"Hugging Face CLIPVisionModel (needs {hf_value!r})")
    width = int(vc.get("width", 768))
    head_width = int(vc.get("head_width", 64))
    if width % head_width:
        raise ValueError(f"open_clip vision_cfg: width {width} is not a multiple of "
                         f"head_width {head_width}")
    qg = bool(model_cfg.get("quick_gelu", False)) if quick_gelu is None else bool(quick_gelu)
    return CLIPVisionConfig(
        hidden_size=width,
        intermediate_size=int(width * float(vc.get("mlp_ratio", 4.0))),
        num_hidden_layers=int(vc.get("layers", 12)),
        num_attention_heads=width // head_width,
        image_size=_square(vc.get("image_size", 224), "image_size"),
        patch_size=_square(vc.get("patch_size", 16), "patch_size"),
        num_channels=3,
        projection_dim=int(model_cfg["embed_dim"]),
        hidden_act="quick_gelu" if qg else "gelu",
        layer_norm_eps=1e-5,
    )


# --------------------------------------------------------------------------- helpers

def _num_layers(keys: Iterable[str], pattern: re.Pattern, source: str) -> int:
    idx = {int(m.group(1)) for k in keys if (m := pattern.match(k))}
    if not idx:
        raise ConversionError(f"{source}: no transformer blocks found "
                              f"(expected keys like '{pattern.pattern}')")
    return max(idx) + 1


def _check_keys(present: set[str], expected: set[str], source: str) -> None:
    missing = sorted(expected - present)
    unexpected = sorted(present - expected)
    if missing:
        raise ConversionError(f"{source}: missing key '{missing[0]}'"
                              + (f" (and {len(missing) - 1} more: {missing[1:4]})" if len(missing) > 1 else "")
                              + "; not a CLIP ViT image encoder, or truncated?")
    if unexpected:
        raise ConversionError(f"{source}: unexpected key '{unexpected[0]}'"
                              + (f" (and {len(unexpected) - 1} more: {unexpected[1:4]})" if len(unexpected) > 1 else "")
                              + "; this image-encoder variant has no counterpart in the other format")


def _split3(t: torch.Tensor, key: str) -> tuple[torch.Tensor, ...]:
    if t.shape[0] % 3:
        raise ConversionError(f"tensor '{key}': first dimension {t.shape[0]} is not divisible by 3")
    return tuple(c.clone() for c in torch.chunk(t, 3, dim=0))


# --------------------------------------------------------------------------- full state dicts

def open_clip_to_hf_vision(sd: Mapping[str, torch.Tensor], prefix: str = "visual.") -> dict[str, torch.Tensor]:
    """open_clip image-encoder weights -> ``CLIPVisionModelWithProjection`` state dict.

    Keys of ``sd`` that do not start with ``prefix`` (a full CLIP's text tower,
    ``logit_scale`` ...) are ignored; every key under ``prefix`` must map, and
    every weight of the ViT must be present, else ``ConversionError`` names the key.
    """
    inner = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    src = f"open_clip state dict (prefix '{prefix}')"
    n = _num_layers(inner, _OC_BLOCK_RE, src)
    expected = {oc for oc, _ in _GLOBAL} | {"proj"}
    for i in range(n):
        b = f"transformer.resblocks.{i}."
        expected |= {b + oc for oc, _ in _BLOCK} | {b + oc for oc, _ in _FUSED}
    _check_keys(set(inner), expected, src)

    out: dict[str, torch.Tensor] = {}
    for oc, hf in _GLOBAL:
        out[hf] = inner[oc]
    for i in range(n):
        b, h = f"transformer.resblocks.{i}.", f"vision_model.encoder.layers.{i}."
        for oc, hf in _BLOCK:
            out[h + hf] = inner[b + oc]
        for oc, kind in _FUSED:
            for name, part in zip(_QKV, _split3(inner[b + oc], prefix + b + oc)):
                out[f"{h}self_attn.{name}_proj.{kind}"] = part
    proj = inner["proj"]
    if proj.ndim != 2:
        raise ConversionError(f"tensor '{prefix}proj': expected 2-D [width, embed], got {tuple(proj.shape)}")
    out[HF_PROJ] = proj.t().contiguous()
    return out


def hf_vision_to_open_clip(sd: Mapping[str, torch.Tensor], prefix: str = "visual.") -> dict[str, torch.Tensor]:
    """``CLIPVisionModelWithProjection`` (or ``CLIPModel``) state dict -> open_clip keys.

    Reads the ``vision_model.*`` keys and ``visual_projection.weight``; other keys
    (a ``CLIPModel``'s text tower, ``logit_scale``) and the ``position_ids`` buffer
    are ignored. A ``CLIPVisionModel`` lacks ``visual_projection.weight``: add it
    (e.g. from the pretrained model) before converting.
    """
    vis = {k: v for k, v in sd.items()
           if (k.startswith(HF_PREFIX) or k == HF_PROJ) and k not in _HF_IGNORED}
    src = "Hugging Face CLIP vision state dict"
    n = _num_layers(vis, _HF_BLOCK_RE, src)
    expected = {hf for _, hf in _GLOBAL} | {HF_PROJ}
    for i in range(n):
        h = f"vision_model.encoder.layers.{i}."
        expected |= {h + hf for _, hf in _BLOCK}
        expected |= {f"{h}self_attn.{q}_proj.{kind}" for q in _QKV for _, kind in _FUSED}
    _check_keys(set(vis), expected, src)

    out: dict[str, torch.Tensor] = {}
    for oc, hf in _GLOBAL:
        out[prefix + oc] = vis[hf]
    for i in range(n):
        b, h = f"{prefix}transformer.resblocks.{i}.", f"vision_model.encoder.layers.{i}."
        for oc, hf in _BLOCK:
            out[b + oc] = vis[h + hf]
        for oc, kind in _FUSED:
            parts = [vis[f"{h}self_attn.{q}_proj.{kind}"] for q in _QKV]
            shapes = {tuple(p.shape) for p in parts}
            if len(shapes) != 1:
                raise ConversionError(f"{h}self_attn.{{q,k,v}}_proj.{kind}: shapes differ {sorted(shapes)}")
            out[b + oc] = torch.cat(parts, dim=0)
    w = vis[HF_PROJ]
    if w.ndim != 2:
        raise ConversionError(f"tensor '{HF_PROJ}': expected 2-D [embed, width], got {tuple(w.shape)}")
    out[prefix + "proj"] = w.t().contiguous()
    return out


# --------------------------------------------------------------------------- single keys / deltas

_HF_QKV_RE = re.compile(r"^vision_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$")
_OC_FUSED_RE = re.compile(r"^transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$")


def hf_key_to_open_clip(key: str, prefix: str = "visual.") -> str:
    """The open_clip key holding a Hugging Face vision key (q/k/v -> the fused in_proj)."""
    if key == HF_PROJ:
        return prefix + "proj"
    if m := _HF_QKV_RE.match(key):
        return f"{prefix}transformer.resblocks.{m.group(1)}.attn.in_proj_{m.group(3)}"
    for oc, hf in _GLOBAL:
        if key == hf:
            return prefix + oc
    if m := _HF_BLOCK_RE.match(key):
        for oc, hf in _BLOCK:
            if m.group(2) == hf:
                return f"{prefix}transformer.resblocks.{m.group(1)}.{oc}"
    raise ConversionError(f"'{key}' is not a Hugging Face CLIP vision weight key")


def open_clip_key_to_hf(key: str, prefix: str = "visual.") -> list[str]:
    """The Hugging Face key(s) of an open_clip image-encoder key (in_proj -> [q, k, v])."""
    if not key.startswith(prefix):
        raise ConversionError(f"'{key}' does not start with '{prefix}'")
    inner = key[len(prefix):]
    if inner == "proj":
        return [HF_PROJ]
    if m := _OC_FUSED_RE.match(inner):
        return [f"vision_model.encoder.layers.{m.group(1)}.self_attn.{q}_proj.{m.group(2)}" for q in _QKV]
    for oc, hf in _GLOBAL:
        if inner == oc:
            return [hf]
    if m := _OC_BLOCK_RE.match(inner):
        for oc, hf in _BLOCK:
            if m.group(2) == oc:
                return [f"vision_model.encoder.layers.{m.group(1)}.{hf}"]
    raise ConversionError(f"'{key}' is not an open_clip ViT image-encoder key")


def hf_delta_to_open_clip(delta_sd: Mapping[str, torch.Tensor], prefix: str = "visual.") -> dict[str, torch.Tensor]:
    """A Hugging Face keyed task vector (any subset of keys) -> open_clip keys.

    q/k/v updates of one block become the row blocks [0:w], [w:2w], [2w:3w] of
    ``attn.in_proj_weight`` / ``in_proj_bias``; a block the delta does not touch is
    zero (so a LoRA update of ``q_proj`` only fills the first w rows).
    ``visual_projection.weight`` becomes ``proj`` (transposed). Unknown keys raise.
    """
    out: dict[str, torch.Tensor] = {}
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in delta_sd.items():
        if key in _HF_IGNORED:
            continue
        oc = hf_key_to_open_clip(key, prefix)
        if m := _HF_QKV_RE.match(key):
            groups.setdefault(oc, {})[m.group(2)] = t
        elif key == HF_PROJ:
            out[oc] = t.t().contiguous()
        else:
            out[oc] = t
    for oc, parts in groups.items():
        ref = next(iter(parts.values()))
        shapes = {tuple(p.shape) for p in parts.values()}
        if len(shapes) != 1:
            raise ConversionError(f"q/k/v updates of '{oc}' have different shapes {sorted(shapes)}")
        dtype = torch.promote_types(ref.dtype, torch.float32) if len({p.dtype for p in parts.values()}) > 1 else ref.dtype
        out[oc] = torch.cat([parts[q].to(dtype) if q in parts else torch.zeros_like(ref, dtype=dtype)
                             for q in _QKV], dim=0)
    return out


def open_clip_delta_to_hf(delta_sd: Mapping[str, torch.Tensor], prefix: str = "visual.") -> dict[str, torch.Tensor]:
    """An open_clip keyed task vector -> Hugging Face keys (in_proj split into q/k/v)."""
    out: dict[str, torch.Tensor] = {}
    for key, t in delta_sd.items():
        hf = open_clip_key_to_hf(key, prefix)
        if len(hf) == 3:
            for name, part in zip(hf, _split3(t, key)):
                out[name] = part
        elif hf[0] == HF_PROJ:
            out[HF_PROJ] = t.t().contiguous()
        else:
            out[hf[0]] = t
    return out
