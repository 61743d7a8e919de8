"""Where a checkpoint comes from (a local path or a hub repo, cache first) and how its
files are read: safetensors, or pickles with ``torch.load(weights_only=True)`` only."""
from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..io import ArtifactError, load_tensors
from ..lazy import torch


_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
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
