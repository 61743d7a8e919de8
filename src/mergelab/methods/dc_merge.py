"""DC-Merge (directional-consistency merging): methods.md "DC-Merge".

Per matrix key, with k triplets per task:

    Tt   = Ut diag(e't) Vtᵀ                 (top-k truncation, e't = smoothed σ)
    Ucov = polar([U1 … UT]), Vcov = polar([V1 … VT])   (the "cover basis")
    Mt   = Ucovᵀ Tt Vcov                     (T·k × T·k)
    Mt  ← keep its top `sparsity` fraction of entries by |·| (at least 1)
    A    = sign-consensus mean of the Mt (0 where the sum is 0)
    τm   = Ucov (A ⊙ mask) Vcovᵀ,  mask = block diagonal

Regimes and defaults
- "full": k = r // T, smoothing "none" (the public full-fine-tuning code has no
  smoothing). The top-`sparsity` count is int(sparsity · r²) as for the spec's
  zero-padded r×r Mt (the padded rows/columns of Mt are zero, so leaving them
  out changes nothing else).
- "lora": k = lora_rank (capped at r // T), smoothing "linear" with ρ = 5 (the
  LoRA code's choice for ViT-B/32), count int(sparsity · (T·k)²).
  `smoothing="auto"` (default) picks "none"/"linear" by regime.

`mask_scale` (default 1.0) changes the block size of the diagonal mask to
b = clamp(round(k · mask_scale), 1, T·k); the T·k × T·k matrix is tiled along
its diagonal by consecutive b×b blocks (the last one truncated). mask_scale = 1
is the spec's T blocks of k×k; mask_scale ≥ T keeps the whole A (no mask);
small values keep only finer blocks around the diagonal (b = 1: diagonal only).

Mt never needs the m×n products: polar(X)ᵀ Ut = (XᵀX)^{1/2}[:, block t], so
Mt = C_U^{1/2}[:, t] diag(e't) C_V^{1/2}[t, :], all in the small T·k space.
Large keys start from the suite's shared ``linalg.KeyBasis`` (as TSV-M and MDA): exact
float64 triplets (certified per vector, since Mt depends on each one) and polar factors.
"""
from __future__ import annotations

from typing import Sequence

from ..lazy import torch
from .base import (Choice, Flag, KeyInfo, MergeMethod, Number, Param, disjoint_mean,
                   top_count_mask, vector_mean)
from .linalg import (GramPolar, assemble, block_diag_mask, key_basis, per_task_rank,
                     smooth_energy, task_triplets, use_fast)

SMOOTHINGS = ("auto", "none", "avg", "linear")


class DCMerge(MergeMethod):
    name = "dc_merge"
    display_name = "DC-Merge"
    alpha_grid = "svd"
    shared_basis = True
    parameters = (
        Param("sparsity", 0.001, Number(low=0, high=1, low_open=True)),  # fraction of Mt kept
        Param("smoothing", "auto", Choice(SMOOTHINGS)),
        Param("rho", 5.0, Number(low=1)),
        Param("mask_scale", 1.0, Number(low=0, low_open=True)),  # block size / k of the mask
        Param("exact", False, Flag()),   # full per-task SVDs on large keys too
    )

    def smoothing_for(self, regime: str) -> str:
        s = self.params["smoothing"]
        if s == "auto":
            return "linear" if regime == "lora" else "none"
        return s

    def merge_key(self, taus: Sequence[torch.Tensor], info: KeyInfo) -> torch.Tensor:
        if not info.is_matrix:
            return vector_mean(taus)
        m, n = taus[0].shape
        r = min(m, n)
        T = len(taus)
        k = per_task_rank(info, r, T)
        if k == 0:
            return torch.zeros(m, n)
        mode = self.smoothing_for(info.regime)
        fast = use_fast((m, n), self.params["exact"])
        if fast:
            b = key_basis(taus, k, info.basis)
            Ss = [smooth_energy(s, mode, float(self.params["rho"])) for s in b.S]
            half_u, half_v = b.half_u(), b.half_v()
        else:
            Us, Ss, Vs = task_triplets(taus, k, self.params["exact"])
            Ss = [smooth_energy(s, mode, float(self.params["rho"])) for s in Ss]
            pu = GramPolar(torch.cat(Us, dim=1))
            pv = GramPolar(torch.cat(Vs, dim=1))
            half_u, half_v = pu.half, pv.half
        c = T * k
        n_ref = r if info.regime != "lora" else c
        count = max(1, int(float(self.params["sparsity"]) * n_ref * n_ref))
        Ms = []
        for t in range(T):
            blk = slice(t * k, (t + 1) * k)
            Mt = (half_u[:, blk] * Ss[t]) @ half_v[:, blk].T
            Ms.append(Mt * top_count_mask(Mt, count))
        A = disjoint_mean(torch.stack(Ms), zero_sum="zero")
        block = min(c, max(1, int(round(k * float(self.params["mask_scale"])))))
        A = A * block_diag_mask(c, block, dtype=torch.float64, device=A.device)
        if fast:
            return (b.PU @ A.to(torch.float32)) @ b.PV.T
        return assemble(pu, A, pv)
