"""DARE: Drop And REscale, feeding task arithmetic or TIES.

Every entry of every τt is dropped independently with probability ``p`` and the
survivors are rescaled by 1/(1−p), so E[dropped τt] = τt; the base method then
merges the sparsified vectors. As in the public implementations (DARE authors'
MergeLM; FusionBench ``only_on_linear_weights: false``) the drop is applied to
every key, and the base method treats every key as it does on its own.

Default ``p``: the DARE authors' examples use 0.9 (their grid is 0.1 … 0.9);
FusionBench's CLIP-vision configs (``dare/task_arithmetic``,
``dare/ties_merging``) use ``sparsity_ratio: 0.5``. This project merges CLIP
vision encoders, so the default follows the FusionBench benchmark setting, 0.5;
set ``p: 0.9`` in the config to get the DARE-paper setting.

The masks are drawn from the per-key generator (``info.generator()``), so a
merge is reproducible for a given run seed and independent of key order.

DARE-TIES trims as TIES does (``trim_scope``, default ``model``): FusionBench's
``DareTiesMerging`` drops every key first, then flattens each dropped task vector over the
whole model and keeps its top k %; ``per_key`` keeps the top k % of every key instead.
The whole-model route draws each key's mask again in each of its passes (same generator
seed, same mask) instead of holding the dropped model.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

from ..lazy import torch
from .base import (Choice, KeyInfo, MergeContext, MergeMethod, MethodConfigError, Number, Param,
                   TaskVectorSource, disjoint_mean, key_seed, topk_mask)
from .basic import TRIM_K, TRIM_SCOPE, whole_model_ties

BASES = ("task_arithmetic", "ties")


def dare_drop(taus: Sequence[torch.Tensor], p: float, generator: torch.Generator) -> list[torch.Tensor]:
    """Drop each entry with probability p, rescale the survivors by 1/(1−p)."""
    out = []
    for t in taus:
        t = t.float()
        if p == 0.0:
            out.append(t)
            continue
        keep = torch.rand(t.shape, generator=generator, device=t.device) >= p
        out.append(t * keep / (1.0 - p))
    return out


class Dare(MergeMethod):
    """DARE + task arithmetic (``base: task_arithmetic``) or + TIES (``base: ties``)."""

    name = "dare"
    display_name = "DARE"
    alpha_grid = "ta"  # both bases use the 1/30 … 1 grid
    parameters = (
        Param("p", 0.5, Number(low=0, high=1, high_open=True), convert=float),  # drop probability
        Param("base", "task_arithmetic", Choice(BASES)),
        TRIM_K, TRIM_SCOPE,   # used by base: ties
    )

    @classmethod
    def label(cls, params: Mapping[str, Any] | None = None) -> str:
        base = cls.completed(params)["base"]
        return f"DARE ({'TIES' if base == 'ties' else 'TA'})"

    def merge_key(self, taus: Sequence[torch.Tensor], info: KeyInfo) -> torch.Tensor:
        gen = info.generator(taus[0].device)
        dropped = dare_drop(taus, self.params["p"], gen)
        if self.params["base"] == "task_arithmetic":
            return torch.stack(dropped).sum(dim=0)
        if self.params["trim_scope"] != "per_key":
            raise MethodConfigError("method 'dare': DARE-TIES with whole-model trimming needs "
                                    "every key; use merge(store, ctx) or trim_scope: per_key")
        frac = self.params["k"] / 100.0
        stack = torch.stack([t * topk_mask(t, frac) for t in dropped])
        return disjoint_mean(stack)

    def merge(self, store: TaskVectorSource, ctx: MergeContext,
              progress: Callable[[Iterable], Iterable] = lambda x: x) -> dict[str, torch.Tensor]:
        if self.params["base"] != "ties" or self.params["trim_scope"] == "per_key":
            return super().merge(store, ctx, progress)

        def dropped(key: str, taus: list[torch.Tensor]) -> list[torch.Tensor]:
            gen = torch.Generator(device=taus[0].device)
            gen.manual_seed(key_seed(ctx.seed, key))   # the per-key generator of merge_key
            return dare_drop(taus, self.params["p"], gen)

        return whole_model_ties(store, dropped, float(self.params["k"]), ctx, progress)
