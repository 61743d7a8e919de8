"""Analysis quantities (methods.md "Analysis quantities").

* CosSim(A, B) = ⟨A, B⟩_F / (‖A‖_F ‖B‖_F); in SVD bases it is
  Σij σi σ'j R_ij / (‖σ‖‖σ'‖) with R_ij = (ui·u'j)(vi·v'j), dominated by the
  largest singular values.
* DirSim(A, B) = Σij R_ij / sqrt(n·m) over the top-n directions of A and the
  top-m of B: the same with every σ set to 1. Σij R_ij = ⟨Un Vnᵀ, U'm V'mᵀ⟩_F,
  which is how it is computed.
* Normalised singular-value spectrum (σ / σ1 by default), energy concentration
  (share of Σσ² in the top singular values).
* Task-level ΔETF of every method (docs/mda.md, "ΔETF"): per layer key, the T per-task
  contributions c_t whose sum is the method's τm (c_t = ∂τm/∂s_t, the derivative of the
  merge along the scale of task t: Euler's decomposition of a 1-homogeneous merge), as
  normalised directions, against the simplex ETF on T points.
* MDA's sign-convention spread: τm of MDA under random valid SVD sign conventions.

Everything here streams keys from memory-mapped safetensors; the figures are in
``mergelab.plots_analysis``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import torch

from .methods.base import (KeyInfo, MergeContext, MergeMethod, TaskVectorSource, is_matrix_key,
                           key_seed)
from .methods.mda import (delta_etf, delta_etf_gram, effective_k, etf_gram,  # noqa: F401 (re-exported)
                          mda_delta_etf)
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
                            lora_rank: int | None = None, etf: str = "components") -> list[dict]:
    """ΔETF of MDA's K component directions before / after its alignment, per layer key."""
    src = _open(taskvector_paths)
    t_count = len(taskvector_paths)
    rows = []
    for key in layer_keys(src.keys(), src.shape):
        d_out, d_in = src.shape(key)
        if min(d_out, d_in) < t_count:
            continue
        k = effective_k(d_out, d_in, t_count, k_fraction, lora_rank)
        row = mda_delta_etf(src.get(key), k, etf=etf)
        rows.append({"key": key, "k": k, **row})
    return rows


# ------------------------------------------------------------------ task-level ΔETF of any method

#: relative step of the one-sided differences along a task's scale (the Euler residual in the
#: output says how well Σ c_t = τm holds)
EULER_STEP = 1e-2


def task_delta_etf(contributions: torch.Tensor) -> float:
    """ΔETF of T per-task contributions [T, ...] (each flattened and normalised; zero ones dropped)."""
    flat = contributions.reshape(contributions.shape[0], -1).double()
    return delta_etf_gram(flat @ flat.T)


def _is_key_local(method: MergeMethod) -> bool:
    return type(method).merge is MergeMethod.merge


def _scaled(taus: Sequence[torch.Tensor], t: int, factor: float) -> list[torch.Tensor]:
    return [tau * factor if i == t else tau for i, tau in enumerate(taus)]


def _derivative(base: torch.Tensor, plus: torch.Tensor, minus: torch.Tensor, step: float) -> torch.Tensor:
    """Entry-wise the smaller in magnitude of the forward and backward differences: exact
    for merges that are linear in a task's scale between the jumps (TIES's sign election,
    trimming), where a jump inside the step would dominate a central difference."""
    fwd = (plus.double() - base) / step
    bwd = (base - minus.double()) / step
    return torch.where(fwd.abs() <= bwd.abs(), fwd, bwd)


def _contributions_key_local(method, taus, info, step):
    base = method.merge_key(taus, info).double()
    contrib = torch.stack([
        _derivative(base, method.merge_key(_scaled(taus, t, 1 + step), info),
                    method.merge_key(_scaled(taus, t, 1 - step), info), step)
        for t in range(len(taus))])
    return base, contrib


class _ScaledSource(TaskVectorSource):
    """``src`` with task ``t`` multiplied by ``factor`` (the other tasks as they are)."""

    def __init__(self, src, t: int, factor: float):
        self.src, self.t, self.factor = src, t, factor

    def keys(self) -> list[str]:
        return self.src.keys()

    def get(self, key: str) -> list[torch.Tensor]:
        return _scaled(self.src.get(key), self.t, self.factor)


def _contributions_whole_model(method, src, keys, ctx, step):
    """Whole-model methods (their own ``merge``): 2T + 1 merges of the whole model; only
    ``keys`` are kept (T + 1 copies of them in memory)."""
    base = {k: v.double() for k, v in method.merge(src, ctx).items() if k in keys}
    contrib = {k: [] for k in keys}
    for t in range(len(ctx.tasks)):
        plus = method.merge(_ScaledSource(src, t, 1 + step), ctx)
        minus = method.merge(_ScaledSource(src, t, 1 - step), ctx)
        for k in keys:
            contrib[k].append(_derivative(base[k], plus[k], minus[k], step))
        del plus, minus
    return {k: (base[k], torch.stack(contrib[k])) for k in keys}


def _etf_row(key: str, base: torch.Tensor, contrib: torch.Tensor) -> dict:
    flat = contrib.reshape(contrib.shape[0], -1)
    norms = flat.norm(dim=1)
    unit = flat[norms > 0] / norms[norms > 0, None]
    cos = unit @ unit.T
    n = cos.shape[0]
    off = cos[~torch.eye(n, dtype=torch.bool)]
    bnorm = float(base.norm())
    return {"key": key, "delta_etf": task_delta_etf(contrib),
            "mean_cos": float(off.mean()) if off.numel() else 0.0,
            "euler_residual": float((contrib.sum(0) - base).norm() / bnorm) if bnorm > 0 else 0.0}


def method_task_etf(taskvector_paths: Sequence[str | Path], method: MergeMethod, regime: str,
                    tasks: Sequence[str], seed: int = 0, lora_rank: int | None = None,
                    step: float = EULER_STEP, keys: Sequence[str] | None = None) -> list[dict]:
    """Task-level ΔETF of one method per layer key: ``{"key", "delta_etf", "mean_cos",
    "euler_residual"}`` (mean_cos: mean pairwise cosine of the contributions; the residual
    ‖Σt c_t − τm‖/‖τm‖ checks the decomposition: ≈ 0 for 1-homogeneous merges)."""
    if method.needs_data:
        raise ValueError(f"method '{method.name}' needs data: its task-level ΔETF is not computed")
    if regime not in method.regimes:
        raise ValueError(f"method '{method.name}' does not support regime '{regime}'")
    src = _open(taskvector_paths)
    keys = list(keys) if keys is not None else layer_keys(src.keys(), src.shape)
    if _is_key_local(method):
        rows = []
        for key in keys:
            taus = [t.float() for t in src.get(key)]
            info = KeyInfo(key=key, regime=regime, n_tasks=len(taus), seed=key_seed(seed, key),
                           is_matrix=is_matrix_key(key, taus[0].shape), lora_rank=lora_rank)
            rows.append(_etf_row(key, *_contributions_key_local(method, taus, info, step)))
        return rows
    ctx = MergeContext(regime=regime, tasks=list(tasks), seed=seed, lora_rank=lora_rank)
    per_key = _contributions_whole_model(method, src, keys, ctx, step)
    return [_etf_row(k, *per_key[k]) for k in keys]


def orthogonal_delta_etf(n: int) -> float:
    """ΔETF of n pairwise-orthogonal directions, 1/sqrt(n): the reference line of the figure."""
    return delta_etf_gram(torch.eye(n, dtype=torch.float64))


# ------------------------------------------------------------------ MDA sign-convention spread

def _mda_key_spread(taus, info, k, etf, conventions, k_fraction, exact):
    """Per key: ‖τm‖², ‖τm(s) − τm‖² for s = 1..conventions, ‖τm − c·TSV-M part‖²."""
    from .methods.mda import Mda, mda_align
    ref = Mda(k_fraction=k_fraction, exact=exact, etf=etf).merge_key(taus, info).double()
    changes = [float((Mda(k_fraction=k_fraction, exact=exact, etf=etf, sign_seed=s)
                      .merge_key(taus, info).double() - ref).norm() ** 2)
               for s in range(1, conventions + 1)]
    a = mda_align(taus, k, exact)
    K = a["s_cat"].numel()
    tsv = (a["u_perp"] * a["s_cat"]).double() @ a["v_perp"].double().T * (K / (K - 1)) ** 0.5
    return float(ref.norm() ** 2), changes, float((ref - tsv).norm() ** 2)


def mda_sign_spread(taskvector_paths: Sequence[str | Path], conventions: int = 8,
                    etf_readings: Sequence[str] = ("components", "left_vectors"),
                    k_fraction: float | None = None, lora_rank: int | None = None,
                    regime: str = "full", exact: bool = False,
                    keys: Sequence[str] | None = None) -> dict:
    """How much MDA's τm moves between valid SVD sign conventions (``sign_seed`` 1..n against
    the canonical signs), per layer key and over all layer keys together, next to how far τm
    is from the TSV-M part of the same k (U⊥ S V⊥ᵀ, times MDA's sqrt(K/(K−1)))."""
    if conventions < 1:
        raise ValueError(f"conventions must be >= 1, got {conventions}")
    src = _open(taskvector_paths)
    keys = list(keys) if keys is not None else layer_keys(src.keys(), src.shape)
    t_count = len(taskvector_paths)
    out = {"conventions": conventions, "k_fraction": k_fraction, "exact": exact, "readings": {}}
    for etf in etf_readings:
        layers, tot_ref, tot_tsv, tot_change = [], 0.0, 0.0, [0.0] * conventions
        for key in keys:
            taus = [t.float() for t in src.get(key)]
            d_out, d_in = taus[0].shape
            if min(d_out, d_in) < t_count:
                continue
            k = effective_k(d_out, d_in, t_count, k_fraction, lora_rank if regime == "lora" else None)
            info = KeyInfo(key=key, regime=regime, n_tasks=t_count, seed=0, is_matrix=True,
                           lora_rank=lora_rank)
            ref2, changes, tsv2 = _mda_key_spread(taus, info, k, etf, conventions, k_fraction, exact)
            tot_ref += ref2
            tot_tsv += tsv2
            tot_change = [a + b for a, b in zip(tot_change, changes)]
            rel = [(c / ref2) ** 0.5 if ref2 > 0 else 0.0 for c in changes]
            layers.append({"key": key, "k": k, "rel_change": rel,
                           "rel_diff_from_tsv": (tsv2 / ref2) ** 0.5 if ref2 > 0 else 0.0})
        rel_model = [(c / tot_ref) ** 0.5 if tot_ref > 0 else 0.0 for c in tot_change]
        out["readings"][etf] = {
            "layers": layers,
            "model": {"rel_change": rel_model, "mean_rel_change": sum(rel_model) / conventions,
                      "max_rel_change": max(rel_model),
                      "rel_diff_from_tsv": (tot_tsv / tot_ref) ** 0.5 if tot_ref > 0 else 0.0},
            "max_layer_rel_change": max((max(r["rel_change"]) for r in layers), default=0.0),
        }
    return out
