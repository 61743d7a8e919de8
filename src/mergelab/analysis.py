"""Analysis quantities (methods.md "Analysis quantities").

* CosSim(A, B) = ⟨A, B⟩_F / (‖A‖_F ‖B‖_F); in SVD bases it is
  Σij σi σ'j R_ij / (‖σ‖‖σ'‖) with R_ij = (ui·u'j)(vi·v'j), dominated by the
  largest singular values.
* DirSim(A, B) = Σij R_ij / sqrt(n·m) over the top-n directions of A and the
  top-m of B: the same with every σ set to 1. Σij R_ij = ⟨Un Vnᵀ, U'm V'mᵀ⟩_F,
  which is how it is computed.
* Normalised singular-value spectrum (σ / σ1 by default), energy concentration
  (share of Σσ² in the top singular values), ΔETF (from ``methods.mda``).

Everything here streams keys from memory-mapped safetensors; the figures are in
``mergelab.plots_analysis``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import torch

from .methods.mda import delta_etf, effective_k, etf_gram, mda_delta_etf  # noqa: F401 (re-exported)
from .methods.wudi import WUDI_SUFFIXES


# ------------------------------------------------------------------ pairwise

def cos_sim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frobenius cosine similarity (0 when either matrix is zero)."""
    a, b = a.double().flatten(), b.double().flatten()
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return 0.0
    return float(a @ b / (na * nb))


def direction_frame(m: torch.Tensor, top_n: int | None = None) -> tuple[torch.Tensor, int]:
    """Un Vnᵀ of the top-n singular directions of a 2-D matrix (all σ set to 1) and n.

    Directions with a zero singular value are not counted (n ≤ numerical rank).
    """
    u, s, vh = torch.linalg.svd(m.double(), full_matrices=False)
    tol = s.max() * max(m.shape) * torch.finfo(torch.float32).eps if s.numel() else 0.0
    rank = int((s > tol).sum())
    n = rank if top_n is None else min(int(top_n), rank)
    return u[:, :n] @ vh[:n], n


def dir_sim_frames(fa: tuple[torch.Tensor, int], fb: tuple[torch.Tensor, int]) -> float:
    (pa, n), (pb, m) = fa, fb
    if n == 0 or m == 0:
        return 0.0
    return float((pa * pb).sum() / (n * m) ** 0.5)


def dir_sim(a: torch.Tensor, b: torch.Tensor, top_n: int | None = None) -> float:
    """DirSim over the top-``top_n`` directions of each matrix (all by default)."""
    return dir_sim_frames(direction_frame(a, top_n), direction_frame(b, top_n))


# ------------------------------------------------------------------ spectra

def normalized_spectrum(m: torch.Tensor, norm: str = "max") -> torch.Tensor:
    """Singular values divided by the largest (``norm="max"``) or by their sum (``"sum"``)."""
    if norm not in ("max", "sum"):
        raise ValueError(f"norm must be 'max' or 'sum', got {norm!r}")
    s = torch.linalg.svdvals(m.double())
    denom = s.max() if norm == "max" else s.sum()
    return s / denom if denom > 0 else s


def energy_concentration(s: torch.Tensor, top: int | float) -> float:
    """Share of Σσ² in the top singular values (``top`` = a count, or a fraction if < 1)."""
    s = s.double().flatten()
    total = s.pow(2).sum()
    if total == 0:
        return 0.0
    n = max(1, int(round(top * s.numel()))) if isinstance(top, float) and top < 1 else int(top)
    return float(torch.sort(s, descending=True).values[:n].pow(2).sum() / total)


# ------------------------------------------------------------------ key selection

def layer_keys(keys: Iterable[str], shape_of) -> list[str]:
    """Matrix keys of the transformer blocks (attention in/out, MLP fc/proj); all 2-D keys if none match."""
    keys = list(keys)
    two_d = [k for k in keys if len(shape_of(k)) == 2]
    blocks = [k for k in two_d if k.endswith(WUDI_SUFFIXES)]
    return blocks or two_d


def _open(paths: Sequence[str | Path]):
    from .taskvectors import SafetensorsSource
    return SafetensorsSource(paths)


# ------------------------------------------------------------------ model-level summaries

def spectrum_per_task(taskvector_paths: Sequence[str | Path], norm: str = "max",
                      keys: Sequence[str] | None = None) -> dict:
    """Normalised spectrum of every task, averaged over the layer keys.

    Spectra of keys with different rank are truncated to the shortest. Returns
    ``{"spectra": [T lists], "energy_top1pct"/"energy_top10pct": [T floats], "keys": [...]}``.
    """
    if norm not in ("max", "sum"):
        raise ValueError(f"norm must be 'max' or 'sum', got {norm!r}")
    src = _open(taskvector_paths)
    keys = list(keys) if keys is not None else layer_keys(src.keys(), src.shape)
    if not keys:
        raise ValueError("no 2-D keys to analyse in the task vectors")
    n = min(min(src.shape(k)) for k in keys)
    t_count = len(taskvector_paths)
    acc = torch.zeros(t_count, n, dtype=torch.float64)
    e1 = torch.zeros(t_count, dtype=torch.float64)
    e10 = torch.zeros(t_count, dtype=torch.float64)
    for key in keys:
        for t, tau in enumerate(src.get(key)):
            s = torch.linalg.svdvals(tau.double())
            denom = s.max() if norm == "max" else s.sum()
            acc[t] += (s / denom if denom > 0 else s)[:n]
            e1[t] += energy_concentration(s, 0.01)
            e10[t] += energy_concentration(s, 0.1)
    acc /= len(keys)
    return {"spectra": acc.tolist(), "energy_top1pct": (e1 / len(keys)).tolist(),
            "energy_top10pct": (e10 / len(keys)).tolist(), "keys": keys, "norm": norm}


def similarity_matrices(taskvector_paths: Sequence[str | Path],
                        merged_paths: Sequence[str | Path] = (),
                        top_n: int | None = None) -> dict:
    """Layer-averaged CosSim and DirSim: task×task and task×merged.

    ``top_n`` directions per matrix for DirSim; default r // T (the per-task
    budget of TSV / DC-Merge).
    """
    src = _open(taskvector_paths)
    msrc = _open(merged_paths) if merged_paths else None
    keys = layer_keys(src.keys(), src.shape)
    if msrc is not None:
        keys = [k for k in keys if k in set(msrc.keys())]
    if not keys:
        raise ValueError("no common 2-D keys to compare")
    t_count, m_count = len(taskvector_paths), len(merged_paths)
    cos_tt = torch.zeros(t_count, t_count, dtype=torch.float64)
    dir_tt = torch.zeros_like(cos_tt)
    cos_tm = torch.zeros(t_count, m_count, dtype=torch.float64)
    dir_tm = torch.zeros_like(cos_tm)
    for key in keys:
        taus = src.get(key)
        n = top_n if top_n is not None else max(1, min(taus[0].shape) // t_count)
        frames = [direction_frame(t, n) for t in taus]
        for i in range(t_count):
            for j in range(t_count):
                cos_tt[i, j] += cos_sim(taus[i], taus[j])
                dir_tt[i, j] += dir_sim_frames(frames[i], frames[j])
        if msrc is not None:
            merged = msrc.get(key)
            mframes = [direction_frame(m, n) for m in merged]
            for i in range(t_count):
                for j in range(m_count):
                    cos_tm[i, j] += cos_sim(taus[i], merged[j])
                    dir_tm[i, j] += dir_sim_frames(frames[i], mframes[j])
    k = len(keys)
    return {"cos_tt": (cos_tt / k).tolist(), "dir_tt": (dir_tt / k).tolist(),
            "cos_tm": (cos_tm / k).tolist(), "dir_tm": (dir_tm / k).tolist(),
            "keys": keys, "top_n": top_n}


def etf_deviation_per_layer(taskvector_paths: Sequence[str | Path], k_fraction: float | None = None,
                            lora_rank: int | None = None) -> list[dict]:
    """ΔETF of the concatenated top-k task directions before / after MDA alignment, per layer key."""
    src = _open(taskvector_paths)
    t_count = len(taskvector_paths)
    rows = []
    for key in layer_keys(src.keys(), src.shape):
        d_out, d_in = src.shape(key)
        if min(d_out, d_in) < t_count:
            continue
        k = effective_k(d_out, d_in, t_count, k_fraction, lora_rank)
        row = mda_delta_etf(src.get(key), k)
        rows.append({"key": key, "k": k, **row})
    return rows
