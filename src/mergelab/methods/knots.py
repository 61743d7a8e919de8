"""KnOTS (LoRA adapters): methods.md "KnOTS".

Per adapted module with updates Δt (d_out × d_in): concatenate side by side,
[Δ1 … ΔT] = U Σ [V1ᵀ … VTᵀ] (economical SVD; components with σ ≤ 1e-5 dropped as
in the public code); the per-task right factors carry the singular values
(KnOTS "s_on_V": Σ Vtᵀ = Uᵀ Δt); they are merged with TIES (top `k` % per task,
elected sign = sign of the sum, disjoint mean) and Δm = U · merged.

Defaults follow the public ViT-B/32 KnOTS-TIES config (topK = 20). DARE-TIES:
`dare_p` > 0 drops each entry of Δt with probability p and rescales by 1/(1−p)
before the SVD (public config: p = 0.1 with k = 100). Difference from the public
code: TIES' top-k is taken per module here (the public code ranks the
flattened vector of all modules of a task at once).
Vector keys (none in the LoRA task vectors): mean.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .base import KeyInfo, MergeMethod, MethodConfigError, disjoint_mean, topk_mask
from .linalg import F64, robust_svd
from .tsv import vector_mean


class KnOTS(MergeMethod):
    name = "knots"
    regimes = ("lora",)
    alpha_grid = "ta"
    defaults = {"k": 20.0, "dare_p": 0.0}

    def validate(self) -> None:
        k, p = self.params["k"], self.params["dare_p"]
        if not isinstance(k, (int, float)) or not 0 < k <= 100:
            raise MethodConfigError(f"method 'knots': k must be in (0, 100], got {k!r}")
        if not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise MethodConfigError(f"method 'knots': dare_p must be in [0, 1), got {p!r}")

    def merge_key(self, taus: Sequence[torch.Tensor], info: KeyInfo) -> torch.Tensor:
        if not info.is_matrix:
            return vector_mean(taus)
        deltas = [t.float() for t in taus]
        p = float(self.params["dare_p"])
        if p > 0:
            g = info.generator()
            deltas = [d * (torch.rand(d.shape, generator=g) >= p) / (1 - p) for d in deltas]
        m = deltas[0].shape[0]
        # economical SVD of the m × (T·n) concatenation through its m×m Gram
        G = torch.zeros(m, m, dtype=F64)
        for d in deltas:
            d64 = d.to(F64)
            G += d64 @ d64.T
        w, Q = torch.linalg.eigh(G)
        s = w.clamp_min(0).sqrt()
        keep = s > 1e-5
        if s.max() > 0 and s[keep].min() <= 1e-7 * s.max():
            # Gram resolution too low for the smallest kept σ: exact SVD of the concatenation
            U, s2, _ = robust_svd(torch.cat(deltas, dim=1).to(F64), full_matrices=False)
            U = U[:, s2 > 1e-5]
        else:
            U = Q[:, keep]
        if U.shape[1] == 0:
            return torch.zeros_like(deltas[0])
        U32 = U.to(torch.float32)
        sV = [U32.T @ d for d in deltas]  # Σ Vtᵀ = Uᵀ Δt
        frac = float(self.params["k"]) / 100.0
        stack = torch.stack([v * topk_mask(v, frac) for v in sV])
        return U32 @ disjoint_mean(stack)
