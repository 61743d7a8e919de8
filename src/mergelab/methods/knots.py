"""KnOTS (LoRA adapters): methods.md "KnOTS", as the public code (``gstoica27/KnOTS``,
``task_merger.SVDMerger`` + ``masking_ops``) computes it.

1. Per adapted module with updates Δt (d_out × d_in): one SVD of the side-by-side
   concatenation, [Δ1 … ΔT] = U Σ [V1ᵀ … VTᵀ]; components with σ ≤ 1e-5 are dropped. The
   per-task right factors carry the singular values ("s_on_V"): Σ Vtᵀ = Uᵀ Δt.
2. DARE-TIES (``dare_p`` > 0): every entry of every Σ Vtᵀ is dropped with probability p and
   the survivors are rescaled by 1/(1 − p) — after the SVD, on the right factors.
3. TIES over the whole model (``trim_scope: model``, default): each task's Σ Vtᵀ of *all*
   modules form one vector; it keeps its top k % by magnitude (one threshold per task, the
   reference's ``kthvalue`` rule, ``methods/trim.py``), signs are elected per entry (sign
   of the sum; 0 → the whole model's majority) and the agreeing entries are averaged.
   ``trim_scope: per_key`` ranks every module on its own.
4. Δm = U · merged.

Defaults and paper configs follow the public ViT configs: KnOTS-TIES ``topK = 20``, no DARE
(``k: 20``, the default); KnOTS-DARE-TIES ``topK = 100`` with ``dare_pruning_coeffs = 0.1``
(``k: 100, dare_p: 0.1``). The DARE masks come from the per-key generator (seeded by run
seed and key) instead of the public code's single global seed: same distribution, another
random stream. Vector keys (none in LoRA task vectors) merge as the mean and take no part
in the ranking.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

from ..lazy import torch
from .base import (KeyInfo, MergeContext, MergeMethod, MethodConfigError, Number, Param,
                   TaskVectorSource, disjoint_mean, is_matrix_key, key_seed, topk_mask, vector_mean)
from .basic import TRIM_K, TRIM_SCOPE
from .linalg import robust_svd
from .trim import ties_merge_streamed, whole_model_thresholds

#: singular values at or below this are dropped (the public code's support threshold)
SIGMA_FLOOR = 1e-5
#: decompositions kept in memory between the passes of whole-model trimming (bytes);
#: beyond it they are recomputed in each pass
CACHE_BYTES = 2 << 30


def shared_left_basis(deltas: Sequence[torch.Tensor]) -> torch.Tensor:
    """U (float32, d_out × r) of the economical SVD of [Δ1 … ΔT], σ > 1e-5 only, columns in
    descending σ as an SVD orders them (DARE's masks are drawn in that order).

    Through the d_out × d_out Gram in float64; when the Gram cannot resolve the smallest kept
    σ (below 1e-7 of the largest) the concatenation itself is decomposed.
    """
    m = deltas[0].shape[0]
    gram = torch.zeros(m, m, dtype=torch.float64, device=deltas[0].device)
    for d in deltas:
        d64 = d.to(torch.float64)
        gram += d64 @ d64.T
    w, q = torch.linalg.eigh(gram)
    s, q = w.flip(0).clamp_min(0).sqrt(), q.flip(1)
    keep = s > SIGMA_FLOOR
    if keep.any() and s[keep].min() <= 1e-7 * s.max():
        u, s2, _ = robust_svd(torch.cat(deltas, dim=1).to(torch.float64), full_matrices=False)
        return u[:, s2 > SIGMA_FLOOR].to(torch.float32)
    return q[:, keep].to(torch.float32)


def dare_on_factors(factors: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Drop each entry of the stacked Σ Vtᵀ [T, r, d_in] with probability p, rescale by 1/(1−p)."""
    if p == 0:
        return factors
    keep = torch.rand(factors.shape, generator=generator, device=factors.device) >= p
    return factors * keep / (1.0 - p)


class KnOTS(MergeMethod):
    name = "knots"
    display_name = "KnOTS"
    regimes = ("lora",)
    alpha_grid = "ta"
    parameters = (
        TRIM_K,
        Param("dare_p", 0.0, Number(low=0, high=1, high_open=True)),  # > 0: KnOTS-DARE-TIES
        TRIM_SCOPE,
    )

    @classmethod
    def label(cls, params: Mapping[str, Any] | None = None) -> str:
        dare_p = cls.completed(params)["dare_p"]
        return "KnOTS (DARE-TIES)" if dare_p else "KnOTS"

    def decompose(self, taus: Sequence[torch.Tensor], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(U, stacked Σ Vtᵀ after DARE) of one module; U has 0 columns when every Δt is 0."""
        deltas = [t.float() for t in taus]
        u = shared_left_basis(deltas)
        factors = torch.stack([u.T @ d for d in deltas])
        g = torch.Generator(device=factors.device)
        g.manual_seed(seed)
        return u, dare_on_factors(factors, float(self.params["dare_p"]), g)

    def merge_key(self, taus: Sequence[torch.Tensor], info: KeyInfo) -> torch.Tensor:
        if not info.is_matrix:
            return vector_mean(taus)
        if self.params["trim_scope"] != "per_key":
            raise MethodConfigError("method 'knots': TIES over all modules needs every key; "
                                    "use merge(store, ctx) or trim_scope: per_key")
        u, factors = self.decompose(taus, info.seed)
        if u.shape[1] == 0:
            return torch.zeros_like(taus[0], dtype=torch.float32)
        frac = float(self.params["k"]) / 100.0
        stack = torch.stack([f * topk_mask(f, frac) for f in factors])
        return u @ disjoint_mean(stack)

    def merge(self, store: TaskVectorSource, ctx: MergeContext,
              progress: Callable[[Iterable], Iterable] = lambda x: x) -> dict[str, torch.Tensor]:
        if self.params["trim_scope"] == "per_key":
            return super().merge(store, ctx, progress)
        out: dict[str, torch.Tensor] = {}
        modules: list[str] = []
        dtypes: dict[str, torch.dtype] = {}
        for key in store.keys():
            taus = store.get(key)
            dtypes[key] = taus[0].dtype
            if is_matrix_key(key, taus[0].shape):
                modules.append(key)
            else:
                out[key] = vector_mean(taus).to(dtype=taus[0].dtype)
        cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        cached_bytes = 0

        def decomposition(key: str) -> tuple[torch.Tensor, torch.Tensor]:
            nonlocal cached_bytes
            if key in cache:
                return cache[key]
            taus = [t.to(ctx.device) for t in store.get(key)]
            u, factors = self.decompose(taus, key_seed(ctx.seed, key))
            size = (u.numel() + factors.numel()) * 4
            if cached_bytes + size <= CACHE_BYTES:
                cache[key] = (u, factors)
                cached_bytes += size
            return u, factors

        if modules:
            produce = lambda key: decomposition(key)[1]  # noqa: E731
            thresholds = whole_model_thresholds(modules, produce, float(self.params["k"]) / 100.0,
                                                progress)
            merged = ties_merge_streamed(modules, produce, thresholds, progress)
            for key in modules:
                u = decomposition(key)[0]
                out[key] = (u @ merged[key]).to(dtype=dtypes[key], device="cpu")
        return {key: out[key].cpu() for key in store.keys()}
