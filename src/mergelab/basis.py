"""The suite's shared decomposition: per large matrix key, the top-k singular triplets of
every task vector and the polar factors of their concatenations (``linalg.KeyBasis``).

TSV-M, DC-Merge, MDA and MDA AM all start from exactly this on the large keys
(min side >= ``linalg.FAST_MIN_R``: every matrix of the ViT-B/L encoders) with
k = r // T (k <= LoRA rank in the LoRA regime); it is most of their run time. The
``decompose`` rule computes it once per (regime, suite) and those methods' merges read
it (``merge --basis``), so a suite pays for it once instead of once per method and per
method instance (ablations, sweeps). It is exact (float64, certified:
``linalg.compute_key_basis``), so sharing changes speed, never numbers. A merge whose k differs (``k_fraction``) or that
asks for ``exact: true`` computes its own; either way the merged vector is the same.

File: ``basis/<regime>/<suite>.safetensors`` with tensors ``<key>::U`` [T, m, k],
``<key>::S`` [T, k] (float64), ``<key>::V`` [T, n, k], ``<key>::PU`` [m, Tk] and
``<key>::PV`` [n, Tk] (float32), and metadata naming the format, regime and tasks (in
order); a JSON next to it records k per key, the route each key's tasks took
(``routes``: tasks per route, "gram-eigh" or the "svd" fallback, and the largest
certificate bound of the Gram route: ``linalg.certified_top_svd``), time and provenance. Size: about
2·(m + n)·T·k floats per key, i.e. 2–3× one task vector (docs/paper_scale.md).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from safetensors import SafetensorError, safe_open

from .engine import progress
from .io import ArtifactError, provenance, save_json, save_tensors
from .methods.base import KeyInfo, is_matrix_key
from .methods.linalg import KeyBasis, compute_key_basis, per_task_rank, use_fast
from .models import pick_device, seed_everything
from .taskvectors import SafetensorsSource

FORMAT = "mergelab-basis-1"
PARTS = ("U", "S", "V", "PU", "PV")


def tensor_name(key: str, part: str) -> str:
    return f"{key}::{part}"


def basis_rank(key: str, shape: Sequence[int], n_tasks: int, regime: str,
               lora_rank: int | None = None) -> int:
    """k of the shared basis of ``key`` (0: the key has none: a vector key, a small key
    that the methods decompose exactly themselves, or r < T)."""
    if not is_matrix_key(key, shape) or not use_fast(shape, exact=False):
        return 0
    info = KeyInfo(key=key, regime=regime, n_tasks=n_tasks, seed=0, is_matrix=True,
                   lora_rank=lora_rank if regime == "lora" else None)
    return per_task_rank(info, min(shape), n_tasks)


def decompose(tv_paths: Sequence[str | Path], tasks: Sequence[str], regime: str, suite: str,
              out: str | Path, out_json: str | Path, *, lora_rank: int | None = None,
              device: str = "auto", seed: int = 0,
              config_subset: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Compute the suite's ``KeyBasis`` of every large matrix key and save it (atomically)."""
    if len(tv_paths) != len(tasks):
        raise ValueError(f"decompose: {len(tv_paths)} task-vector files for {len(tasks)} tasks")
    seed_everything(seed)
    dev = pick_device(device)
    source = SafetensorsSource(tv_paths)
    T = len(tasks)
    tensors, ranks, routes = {}, {}, {}
    t0 = time.time()
    for key in progress(source.keys(), desc=f"decompose {regime}/{suite}"):
        k = basis_rank(key, source.shape(key), T, regime, lora_rank)
        if k == 0:
            continue
        routes[key] = {}
        b = compute_key_basis([t.to(dev) for t in source.get(key)], k, stats=routes[key])
        for part in PARTS:
            tensors[tensor_name(key, part)] = getattr(b, part).cpu()
        ranks[key] = k
    seconds = time.time() - t0
    meta = {"format": FORMAT, "regime": regime, "suite": suite, "tasks": json.dumps(list(tasks))}
    save_tensors(tensors, out, metadata=meta)
    info = {"regime": regime, "suite": suite, "tasks": list(tasks), "keys": len(ranks),
            "k": ranks, "routes": routes, "seconds": seconds, "bytes": Path(out).stat().st_size,
            "provenance": provenance(dict(config_subset or {}), seed=seed)}
    save_json(info, out_json)
    return info


class BasisSource:
    """Reads a ``decompose`` file lazily, one key at a time; opening checks that it is a
    basis file for this regime and exactly these tasks in this order."""

    def __init__(self, path: str | Path, tasks: Sequence[str], regime: str):
        self.path = Path(path)
        if not self.path.exists():
            raise ArtifactError(f"{self.path}: shared-basis file does not exist")
        try:
            self._h = safe_open(str(self.path), framework="pt", device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise ArtifactError(f"{self.path}: not a readable safetensors file ({exc})") from exc
        meta = self._h.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ArtifactError(f"{self.path}: not a shared-basis file (metadata format "
                                f"{meta.get('format')!r}, expected {FORMAT!r})")
        got = json.loads(meta.get("tasks", "[]"))
        if got != list(tasks) or meta.get("regime") != regime:
            raise ArtifactError(f"{self.path}: decomposition of regime {meta.get('regime')!r}, "
                                f"tasks {got}; this merge is regime {regime!r}, tasks {list(tasks)}")
        self._names = set(self._h.keys())

    def get(self, key: str) -> KeyBasis | None:
        if tensor_name(key, "U") not in self._names:
            return None
        missing = [p for p in PARTS if tensor_name(key, p) not in self._names]
        if missing:
            raise ArtifactError(f"{self.path}: key '{key}' lacks tensor(s) "
                                f"{[tensor_name(key, p) for p in missing]}")
        return KeyBasis(*(self._h.get_tensor(tensor_name(key, p)) for p in PARTS))
