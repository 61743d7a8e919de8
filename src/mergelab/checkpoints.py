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
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from . import convert
from .io import ArtifactError, check_finite, load_tensors, save_tensors, sha256_file
from .taskvectors import task_vector

KINDS = ("hf", "lora", "open_clip")
#: accepted spellings of each kind
KIND_ALIASES = {"hf": "hf", "fusionbench": "hf", "huggingface": "hf",
                "lora": "lora", "peft": "lora", "knots": "lora",
                "open_clip": "open_clip", "openclip": "open_clip", "pickle": "open_clip",
                "task_vectors": "open_clip"}

#: the regime whose task vector each kind replaces
KIND_REGIME = {"hf": "full", "open_clip": "full", "lora": "lora"}

_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json",
                    "pytorch_model.bin", "pytorch_model.bin.index.json")
_ADAPTER_WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
#: first key parts of a HF CLIP vision tower saved without the ``vision_model.`` prefix
_VISION_ROOTS = ("encoder.", "embeddings.", "pre_layrnorm", "post_layernorm")

CONVERT_SNIPPET = """\
    # On a trusted machine, with the code that defined the pickled classes importable
    # (for the task-vectors checkpoints: the task_vectors repository on PYTHONPATH):
    import torch
    from safetensors.torch import save_file
    obj = torch.load("finetuned.pt", map_location="cpu", weights_only=False)  # runs the pickle: trusted files only
    sd = obj.state_dict() if hasattr(obj, "state_dict") else obj
    save_file({k: v.detach().clone().contiguous() for k, v in sd.items()
               if isinstance(v, torch.Tensor)}, "finetuned.safetensors")
"""


class CheckpointError(ArtifactError):
    """A checkpoint cannot be imported (the message names the file or repo and the fix)."""


# --------------------------------------------------------------------------- sources

def _offline(offline: bool | None) -> bool:
    if offline is not None:
        return offline
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve_source(source: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                   allow_patterns: Sequence[str] | None = None,
                   offline: bool | None = None, required: Sequence[str] = ()) -> Path:
    """A local path as is, or a hub repo id downloaded/looked up with ``snapshot_download``.

    The cache is tried first (a cached snapshot counts only if it holds one of the
    ``required`` file names); the network only when not offline (``offline`` or
    ``HF_HUB_OFFLINE=1``). A hub id that is neither cached nor downloadable raises
    ``CheckpointError`` naming the repo, the cache dir and how to pre-download it.
    """
    path = Path(source)
    if path.exists():
        return path
    source = str(source)
    if not _HUB_ID_RE.match(source):
        raise CheckpointError(f"{source}: no such file or directory (and not a hub repo id "
                              "of the form 'owner/name')")
    from huggingface_hub import snapshot_download

    cache_txt = str(cache_dir) if cache_dir else "the default Hugging Face cache (HF_HUB_CACHE / HF_HOME)"
    patterns = list(allow_patterns) if allow_patterns else None
    try:
        cached = Path(snapshot_download(source, cache_dir=cache_dir, allow_patterns=patterns,
                                        local_files_only=True))
        if not required or any((cached / f).exists() for f in required):
            return cached
        cached_exc: Exception = FileNotFoundError(f"cached snapshot {cached} has none of {list(required)}")
    except Exception as exc:  # not cached (LocalEntryNotFoundError) or cache unreadable
        cached_exc = exc
    how = (f"pre-download it on a machine with internet: `hf download {source} "
           f"--cache-dir {cache_dir or '<cache dir>'}` (or huggingface_hub.snapshot_download("
           f"'{source}', cache_dir=...)) and copy the cache, or pass a local directory")
    if _offline(offline):
        raise CheckpointError(f"hub repo '{source}' is not in {cache_txt} and the hub is offline "
                              f"(HF_HUB_OFFLINE); {how}. ({type(cached_exc).__name__})")
    try:
        return Path(snapshot_download(source, cache_dir=cache_dir, allow_patterns=patterns))
    except Exception as exc:
        raise CheckpointError(f"hub repo '{source}' could not be downloaded into {cache_txt} "
                              f"({type(exc).__name__}: {exc}); {how}.") from exc


# --------------------------------------------------------------------------- safe loading

def safe_torch_load(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True, map_location='cpu')``, never anything less safe.

    A file that needs arbitrary code to unpickle is refused (``CheckpointError``)
    with the conversion snippet; no code from the file runs.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file does not exist")
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()
        reason = next((ln for ln in first if "GLOBAL" in ln or "Unsupported" in ln), first[0] if first else "")
        raise CheckpointError(
            f"{path}: refusing to load: this pickle needs arbitrary code to be unpickled "
            f"({reason.strip()}), e.g. a pickled nn.Module; mergelab only reads pickles with "
            "torch.load(weights_only=True). Convert it once to a safetensors state dict on a "
            "trusted machine:\n\n" + CONVERT_SNIPPET
            + "\nthen import the .safetensors file instead.") from None
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: "
                              f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from exc


def _load_weight_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_tensors(path)
    obj = safe_torch_load(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, expected a state dict")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _load_sharded(index: Path) -> dict[str, torch.Tensor]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{index}: not a valid shard index ({exc})") from exc
    out: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        out.update(_load_weight_file(index.parent / shard))
    return out


# --------------------------------------------------------------------------- Hugging Face CLIP

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


def check_same_architecture(ft: Mapping[str, torch.Tensor], pt: Mapping[str, torch.Tensor],
                            ft_name: str, pt_name: str) -> None:
    """Same keys and shapes, else ``CheckpointError`` naming the file and the key / shapes."""
    missing = sorted(set(pt) - set(ft))
    extra = sorted(set(ft) - set(pt))
    if missing:
        raise CheckpointError(f"{ft_name}: key '{missing[0]}' of the pretrained model ({pt_name}) "
                              f"is missing ({len(missing)} missing in all): another architecture?")
    if extra:
        raise CheckpointError(f"{ft_name}: key '{extra[0]}' does not exist in the pretrained model "
                              f"({pt_name}) ({len(extra)} unexpected in all): another architecture?")
    for k, p in pt.items():
        if tuple(ft[k].shape) != tuple(p.shape):
            raise CheckpointError(f"{ft_name}: tensor '{k}' has shape {tuple(ft[k].shape)}, the "
                                  f"pretrained model ({pt_name}) has {tuple(p.shape)}: another architecture?")


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


# --------------------------------------------------------------------------- LoRA adapters

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


# --------------------------------------------------------------------------- open_clip checkpoints

_OC_INNER_ROOTS = ("conv1.", "class_embedding", "positional_embedding", "ln_pre.", "ln_post.",
                   "transformer.resblocks.", "proj")


def open_clip_visual_state(obj: Any, name: str) -> dict[str, torch.Tensor]:
    """The ``visual.*`` weights of a loaded open_clip checkpoint object.

    Accepts a state dict (or ``{"state_dict": …}`` / ``{"model_state_dict": …}``)
    whose keys carry ``module.`` (DDP), ``model.`` (task-vectors ImageEncoder)
    and/or ``visual.`` prefixes, or none (a ``model.visual`` state dict).
    """
    for wrapper in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{name}: holds a {type(obj).__name__}, expected a state dict")
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise CheckpointError(f"{name}: no tensors in the state dict")
    for pre in ("module.", "model."):
        sd = {(k[len(pre):] if k.startswith(pre) else k): v for k, v in sd.items()}
    vis = {k: v for k, v in sd.items() if k.startswith("visual.")}
    if not vis:
        if any(k.startswith(convert.HF_PREFIX) for k in sd):
            raise CheckpointError(f"{name}: holds Hugging Face CLIP keys ('vision_model.*'); import it "
                                  "with kind 'hf'")
        if all(k.startswith(_OC_INNER_ROOTS) for k in sd):
            vis = {f"visual.{k}": v for k, v in sd.items()}
        else:
            raise CheckpointError(f"{name}: no open_clip image-encoder keys ('visual.*' or 'conv1.weight' …); "
                                  f"first keys: {list(sd)[:3]}")
    return vis


def load_open_clip_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """``visual.*`` weights of an open_clip checkpoint file (.pt pickle read safely, or .safetensors)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file does not exist")
    obj = load_tensors(path) if path.suffix == ".safetensors" else safe_torch_load(path)
    return open_clip_visual_state(obj, str(path))


def is_open_clip_file(source: str | os.PathLike | None) -> bool:
    """True for a local weights file holding open_clip image-encoder keys (``visual.*``, with
    or without ``module.``/``model.`` prefixes, or bare ``conv1.weight`` …), e.g. the
    pipeline's θ0 ``pretrained/clip.safetensors``; False for Hugging Face files, directories
    and hub ids. Pickles are only opened with ``weights_only=True``."""
    if source is None:
        return False
    p = Path(source)
    if not p.is_file() or not (p.suffix == ".safetensors" or p.suffix in _PICKLE_SUFFIXES):
        return False
    if p.suffix == ".safetensors":
        from safetensors import safe_open
        try:
            with safe_open(str(p), framework="pt") as fh:
                keys = list(fh.keys())
        except Exception as exc:
            raise CheckpointError(f"{p}: not a readable safetensors file ({exc})") from exc
    else:
        obj = safe_torch_load(p)
        for wrapper in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
        keys = [str(k) for k in obj] if isinstance(obj, Mapping) else []
    for pre in ("module.", "model."):
        keys = [k[len(pre):] if k.startswith(pre) else k for k in keys]
    if any(k.startswith(convert.HF_PREFIX) or k.startswith(_VISION_ROOTS) for k in keys):
        return False
    return any(k.startswith("visual.") for k in keys) or \
        (bool(keys) and all(k.startswith(_OC_INNER_ROOTS) for k in keys))


def open_clip_as_hf_vision(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """An open_clip weights file's image encoder in Hugging Face keys (``vision_model.*``)."""
    try:
        return convert.open_clip_to_hf_vision(load_open_clip_checkpoint(path))
    except convert.ConversionError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc


def _load_pretrained_open_clip(source: str | os.PathLike, cache_dir, offline) -> tuple[dict[str, torch.Tensor], str]:
    """θ0 for the open_clip kind: an open_clip file, or a Hugging Face CLIP (dir / hub id), converted."""
    p = Path(source)
    if p.is_file() and (p.suffix == ".safetensors" or p.suffix in _PICKLE_SUFFIXES) \
            and is_open_clip_file(p):
        return load_open_clip_checkpoint(p), str(p)
    hf, hf_file, _ = load_hf_clip_vision(source, cache_dir, offline)
    try:
        return convert.hf_vision_to_open_clip(hf), hf_file
    except convert.ConversionError as exc:
        raise CheckpointError(f"{hf_file}: {exc}") from exc


def open_clip_task_vector(finetuned: str | os.PathLike, pretrained: str | os.PathLike,
                          cache_dir=None, offline: bool | None = None
                          ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    ft = load_open_clip_checkpoint(finetuned)
    pt, pt_file = _load_pretrained_open_clip(pretrained, cache_dir, offline)
    check_same_architecture(ft, pt, str(finetuned), pt_file)
    return task_vector(ft, pt), {"finetuned_file": str(finetuned), "pretrained_file": pt_file}


# --------------------------------------------------------------------------- entry point

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


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mergelab.checkpoints",
                                 description="Import a published fine-tuned checkpoint as a task vector.")
    ap.add_argument("kind", help="hf (FusionBench) | lora (peft / KnOTS) | open_clip (.pt / .safetensors)")
    ap.add_argument("source", help="local file/dir or hub repo id")
    ap.add_argument("task")
    ap.add_argument("out", help="output <task>.safetensors")
    ap.add_argument("--pretrained", help="θ0: HF CLIP dir / hub id, or open_clip file")
    ap.add_argument("--expected-rank", type=int)
    ap.add_argument("--cache-dir")
    ap.add_argument("--offline", action="store_true", default=None)
    args = ap.parse_args(argv)
    try:
        summary = import_checkpoint(args.kind, args.source, args.task, args.out, args.pretrained,
                                    args.expected_rank, args.cache_dir, args.offline)
    except (ArtifactError, ValueError) as exc:
        print(f"error: {exc}")
        return 1
    print(json.dumps({k: v for k, v in summary.items() if k != "metadata"}, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
