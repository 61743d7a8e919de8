"""peft LoRA adapters (e.g. KnOTS' ``hoffman-lab/KnOTS-ViT-B-32_lora_R16_<task>``): reading
the factors, and the LoRA-regime task vector ΔW = scale · B · A per adapted module."""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping

from .. import convert
from ..lazy import torch
from .hf import load_hf_clip_vision
from .openclip import is_open_clip_file, open_clip_as_hf_vision
from .sources import _VISION_ROOTS, CheckpointError, _load_weight_file, resolve_source


_ADAPTER_WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


_LORA_RE = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.(?P<adapter>[^.]+))?\.weight$")


def _lora_module_key(module: str, key: str, file: str) -> str:
    """The Hugging Face vision weight key a LoRA module path updates."""
    if "base_model.model." in module:  # peft wrapper (possibly inside another module)
        module = module.rsplit("base_model.model.", 1)[1]
    if module.startswith("text_model.") or ".text_model." in module:
        raise CheckpointError(f"{file}: adapter key '{key}' adapts the text tower; only image-encoder "
                              "adapters can be imported")
    if module.startswith(convert.HF_PREFIX):
        pass
    elif module.startswith(_VISION_ROOTS):  # peft applied to CLIPVisionTransformer (KnOTS)
        module = convert.HF_PREFIX + module
    elif module != "visual_projection":
        raise CheckpointError(f"{file}: adapter key '{key}' is not on a CLIP vision module "
                              "(expected '…vision_model.encoder.layers.N.…' or '…encoder.layers.N.…')")
    return module + ".weight"


def _pattern_value(patterns: Mapping[str, Any] | None, module: str, default: Any) -> Any:
    """peft's rank_pattern / alpha_pattern lookup: a regex matching the end of the module path."""
    for pat, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({pat})$", module):
            return value
    return default


def load_lora_adapter(adapter_dir: str | os.PathLike, expected_rank: int | None = None
                      ) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor, float]], dict[str, Any], str]:
    """Read a peft LoRA adapter directory.

    Returns ({HF base weight key: (A [r, in], B [out, r], scale)}, adapter config,
    weight file name). Adapter key variants accepted (the adapter name, e.g.
    ``.default``, may be present or not):
    ``base_model.model.vision_model.encoder.layers.0.self_attn.q_proj.lora_A.weight``
    (peft on CLIPVisionModel / CLIPModel) and
    ``base_model.model.encoder.layers.0.self_attn.q_proj.lora_A.weight`` (peft on the
    bare CLIPVisionTransformer, as KnOTS saves them).
    """
    root = Path(adapter_dir)
    cfg_path = root / "adapter_config.json"
    if not cfg_path.exists():
        raise CheckpointError(f"{root}: no adapter_config.json (not a peft adapter directory)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{cfg_path}: invalid JSON ({exc})") from exc
    if str(cfg.get("peft_type", "LORA")).upper() != "LORA":
        raise CheckpointError(f"{cfg_path}: peft_type {cfg.get('peft_type')!r}, only LORA adapters are supported")
    if cfg.get("use_dora"):
        raise CheckpointError(f"{cfg_path}: DoRA adapters (use_dora) are not supported: their update "
                              "is not scale·B·A")
    if cfg.get("bias", "none") != "none":
        raise CheckpointError(f"{cfg_path}: bias={cfg['bias']!r}: adapters that train biases are not "
                              "supported (the LoRA protocol uses bias='none')")
    wfile = next((root / f for f in _ADAPTER_WEIGHT_FILES if (root / f).exists()), None)
    if wfile is None:
        raise CheckpointError(f"{root}: no adapter weights ({' or '.join(_ADAPTER_WEIGHT_FILES)})")
    sd = _load_weight_file(wfile)

    parts: dict[str, dict[str, torch.Tensor]] = {}
    modules: dict[str, str] = {}
    for key, t in sd.items():
        m = _LORA_RE.match(key)
        if not m:
            raise CheckpointError(f"{wfile}: key '{key}' is not a LoRA factor (lora_A / lora_B); "
                                  "adapters with modules_to_save, biases, DoRA or embeddings are not supported")
        base = _lora_module_key(m.group("module"), key, str(wfile))
        if m.group("ab") in parts.setdefault(base, {}):
            raise CheckpointError(f"{wfile}: two lora_{m.group('ab')} tensors for '{base}' "
                                  "(several adapters in one file?)")
        parts[base][m.group("ab")] = t
        modules[base] = m.group("module")
    if not parts:
        raise CheckpointError(f"{wfile}: no LoRA factors in the adapter")

    r_cfg = int(cfg.get("r", 8))
    alpha_cfg = float(cfg.get("lora_alpha", r_cfg))
    out: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}
    for base, ab in sorted(parts.items()):
        if set(ab) != {"A", "B"}:
            raise CheckpointError(f"{wfile}: '{base}' has lora_{''.join(ab)} but not both lora_A and lora_B")
        a, b = ab["A"], ab["B"]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise CheckpointError(f"{wfile}: '{base}' factors have shapes A {tuple(a.shape)}, "
                                  f"B {tuple(b.shape)}: not a LoRA pair")
        rank = int(a.shape[0])
        r_module = int(_pattern_value(cfg.get("rank_pattern"), modules[base], r_cfg))
        if rank != r_module:
            raise CheckpointError(f"{wfile}: '{base}' has rank {rank} but adapter_config.json says r={r_module}")
        if expected_rank is not None and rank != int(expected_rank):
            raise CheckpointError(f"{wfile}: LoRA rank mismatch: expected rank {int(expected_rank)}, "
                                  f"found rank {rank} (module '{base}')")
        alpha = float(_pattern_value(cfg.get("alpha_pattern"), modules[base], alpha_cfg))
        scale = alpha / math.sqrt(rank) if cfg.get("use_rslora") else alpha / rank
        out[base] = (a, b, scale)
    return out, cfg, str(wfile)


def lora_task_vector(adapter: str | os.PathLike, expected_rank: int | None = None,
                     pretrained: str | os.PathLike | None = None,
                     cache_dir: str | os.PathLike | None = None, offline: bool | None = None,
                     ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, str]]:
    """(dense ΔW per module, factors, metadata) of a peft LoRA adapter (dir or hub id).

    Dense: ``{key: scale · B @ A}`` (float32). Factors: ``{key.lora_A: A,
    key.lora_B: scale · B}`` so that ``lora_B @ lora_A`` equals the dense update.
    With ``pretrained``, every key must exist there with shape [out, in].
    """
    root = resolve_source(adapter, cache_dir, ["adapter_config.json", "adapter_model.*"], offline,
                          required=_ADAPTER_WEIGHT_FILES)
    factors_in, cfg, wfile = load_lora_adapter(root, expected_rank)
    if pretrained is not None:
        if is_open_clip_file(pretrained):
            pt, pt_file = open_clip_as_hf_vision(pretrained), str(pretrained)
        else:
            pt, pt_file, _ = load_hf_clip_vision(pretrained, cache_dir, offline)
        for key, (a, b, _s) in factors_in.items():
            if key not in pt:
                raise CheckpointError(f"{wfile}: adapted weight '{key}' does not exist in the "
                                      f"pretrained model ({pt_file}): another architecture?")
            if tuple(pt[key].shape) != (b.shape[0], a.shape[1]):
                raise CheckpointError(f"{wfile}: '{key}' update has shape {(b.shape[0], a.shape[1])}, "
                                      f"the pretrained weight ({pt_file}) has {tuple(pt[key].shape)}")
    dense: dict[str, torch.Tensor] = {}
    factors: dict[str, torch.Tensor] = {}
    scales = set()
    for key, (a, b, scale) in factors_in.items():
        a32, b32 = a.float(), b.float() * scale
        dense[key] = b32 @ a32
        factors[f"{key}.lora_A"] = a32.contiguous()
        factors[f"{key}.lora_B"] = b32.contiguous()
        scales.add(scale)
    ranks = sorted({int(a.shape[0]) for a, _b, _s in factors_in.values()})
    meta = {"adapter_file": wfile, "lora_rank": ",".join(map(str, ranks)),
            "lora_alpha": str(cfg.get("lora_alpha")), "lora_scale": ",".join(f"{s:g}" for s in sorted(scales)),
            "base_model": str(cfg.get("base_model_name_or_path") or ""),
            "factors": "lora_B includes the scale: dense = lora_B @ lora_A"}
    return dense, factors, meta
