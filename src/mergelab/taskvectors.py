"""Task vectors: τt = θt − θ0, stored as safetensors, streamed key by key.

Formats (one safetensors file per task and regime):
- full fine-tuning: every floating key of the image encoder, open_clip names
  (``visual.transformer.resblocks.0.attn.in_proj_weight`` …), τ = θt − θ0.
- LoRA: one dense update ΔW = (lora_alpha / r) · B · A per adapted module, keyed
  by the Hugging Face CLIP vision weight it updates
  (``vision_model.encoder.layers.0.self_attn.q_proj.weight`` …); the factors
  are kept beside it in ``<task>.lora.safetensors`` (``<key>.lora_A``/``lora_B``).

The methods read task vectors through a ``TaskVectorSource``: ``SafetensorsSource`` (the
pipeline) or ``DictSource`` (tests, benchmarks).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from safetensors import SafetensorError, safe_open

from .io import ArtifactError, check_finite
from .lazy import torch


def task_vector(finetuned: Mapping[str, torch.Tensor],
                pretrained: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """θt − θ0 over the floating keys both share; a key or shape mismatch is an error."""
    missing = sorted(set(pretrained) - set(finetuned))
    extra = sorted(set(finetuned) - set(pretrained))
    if missing or extra:
        raise ArtifactError(
            "fine-tuned and pretrained weights have different keys "
            f"(missing in fine-tuned: {missing[:5]}, unexpected: {extra[:5]}): "
            "is the checkpoint of another architecture?")
    out = {}
    for k, p in pretrained.items():
        if not p.is_floating_point():
            continue
        f = finetuned[k]
        if f.shape != p.shape:
            raise ArtifactError(f"tensor '{k}': fine-tuned shape {tuple(f.shape)} != "
                                f"pretrained shape {tuple(p.shape)} (another architecture?)")
        out[k] = (f.float() - p.float())
    return out


class TaskVectorSource:
    """Protocol: ``keys()`` lists the keys, ``get(key)`` returns one tensor per task."""

    def keys(self) -> list[str]:  # pragma: no cover - protocol
        raise NotImplementedError

    def get(self, key: str) -> list[torch.Tensor]:  # pragma: no cover - protocol
        raise NotImplementedError


class DictSource(TaskVectorSource):
    """In-memory source (tests, benchmarks)."""

    def __init__(self, taus: Sequence[Mapping[str, torch.Tensor]]):
        self.taus = list(taus)

    def keys(self) -> list[str]:
        return list(self.taus[0].keys())

    def get(self, key: str) -> list[torch.Tensor]:
        return [t[key] for t in self.taus]


class SafetensorsSource(TaskVectorSource):
    """Memory-mapped task vectors of T tasks, read one key at a time.

    Opening checks that every file is readable and that all files have the same
    keys and shapes; ``get`` checks for NaN/Inf, naming the file and key.
    """

    def __init__(self, paths: Sequence[str | Path], check: bool = True):
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ArtifactError("no task-vector files given")
        self._handles = []
        for p in self.paths:
            if not p.exists():
                raise ArtifactError(f"{p}: task-vector file does not exist")
            try:
                self._handles.append(safe_open(str(p), framework="pt", device="cpu"))
            except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
                raise ArtifactError(f"{p}: not a readable safetensors file ({exc})") from exc
        self._keys = list(self._handles[0].keys())
        ref = {k: self._handles[0].get_slice(k).get_shape() for k in self._keys}
        for p, h in zip(self.paths[1:], self._handles[1:]):
            keys = list(h.keys())
            if set(keys) != set(self._keys):
                missing, extra = sorted(set(self._keys) - set(keys)), sorted(set(keys) - set(self._keys))
                raise ArtifactError(f"{p}: keys differ from {self.paths[0]} (missing here: {missing[:5]}, "
                                    f"only here: {extra[:5]})")
            for k in keys:
                if h.get_slice(k).get_shape() != ref[k]:
                    raise ArtifactError(f"{p}: tensor '{k}' has shape {h.get_slice(k).get_shape()}, "
                                        f"expected {ref[k]} as in {self.paths[0]}")
        self.check = check

    def keys(self) -> list[str]:
        return list(self._keys)

    def shape(self, key: str) -> list[int]:
        return list(self._handles[0].get_slice(key).get_shape())

    def get(self, key: str) -> list[torch.Tensor]:
        out = []
        for p, h in zip(self.paths, self._handles):
            try:
                t = h.get_tensor(key)
            except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
                raise ArtifactError(f"{p}: cannot read tensor '{key}' ({exc}); file truncated?") from exc
            if self.check:
                check_finite({key: t}, str(p))
            out.append(t)
        return out
