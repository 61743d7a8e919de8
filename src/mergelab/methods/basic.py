"""Weight averaging, task arithmetic and TIES."""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

from ..lazy import torch
from .base import (Choice, KeyInfo, MergeContext, MergeMethod, MethodConfigError, Number, Param,
                   TaskVectorSource, disjoint_mean, topk_mask, vector_mean)
from .trim import ties_merge_streamed, whole_model_thresholds


class WeightAveraging(MergeMethod):
    """τm = mean of the τt, α fixed at 1."""

    name = "weight_averaging"
    display_name = "Weight averaging"
    alpha_grid = "fixed1"

    def merge_key(self, taus: Sequence[torch.Tensor], info: KeyInfo) -> torch.Tensor:
        return vector_mean(taus)


class TaskArithmetic(MergeMethod):
    """τm = Σ τt."""

    name = "task_arithmetic"
    display_name = "Task arithmetic"

    def merge_key(self, taus: Sequence[torch.Tensor], info: KeyInfo) -> torch.Tensor:
        return torch.stack([t.float() for t in taus]).sum(dim=0)


TRIM_SCOPES = ("model", "per_key")
#: TIES' trimming parameters (DARE-TIES and KnOTS declare them too): percent kept, scope
TRIM_K = Param("k", 20.0, Number(low=0, high=100, low_open=True))
TRIM_SCOPE = Param("trim_scope", "model", Choice(TRIM_SCOPES))


def whole_model_ties(store: TaskVectorSource, per_task: Callable[[str, list], list], k: float,
                     ctx: MergeContext, progress: Callable[[Iterable], Iterable]
                     ) -> dict[str, torch.Tensor]:
    """TIES with one magnitude threshold per task over all keys (``methods/trim.py``).

    ``per_task(key, taus)`` turns one key's task vectors (float32, on ``ctx.device``) into the
    values TIES trims (identity for TIES, the DARE drop for DARE-TIES); the result is in the
    task vectors' dtypes on the CPU.
    """
    keys = list(store.keys())
    dtypes: dict[str, torch.dtype] = {}

    def produce(key: str) -> torch.Tensor:
        taus = store.get(key)
        dtypes[key] = taus[0].dtype
        return torch.stack(per_task(key, [t.float().to(ctx.device) for t in taus]))

    thresholds = whole_model_thresholds(keys, produce, k / 100.0, progress)
    merged = ties_merge_streamed(keys, produce, thresholds, progress)
    return {key: merged[key].to(dtype=dtypes[key], device="cpu") for key in keys}


class Ties(MergeMethod):
    """TIES-merging: trim to the top k % by magnitude, elect signs, disjoint mean.

    ``trim_scope: model`` (default): one threshold per task over the whole model, as the
    TIES, FusionBench, TSV and AdaMerging code; ``per_key``: the top k % of every key.
    """

    name = "ties"
    display_name = "TIES"
    parameters = (TRIM_K, TRIM_SCOPE)

    def merge_key(self, taus: Sequence[torch.Tensor], info: KeyInfo) -> torch.Tensor:
        if self.params["trim_scope"] != "per_key":
            raise MethodConfigError("method 'ties': whole-model trimming needs every key; "
                                    "use merge(store, ctx) or trim_scope: per_key")
        frac = self.params["k"] / 100.0
        stack = torch.stack([t.float() * topk_mask(t.float(), frac) for t in taus])
        return disjoint_mean(stack)

    def merge(self, store: TaskVectorSource, ctx: MergeContext,
              progress: Callable[[Iterable], Iterable] = lambda x: x) -> dict[str, torch.Tensor]:
        if self.params["trim_scope"] == "per_key":
            return super().merge(store, ctx, progress)
        return whole_model_ties(store, lambda key, taus: taus, float(self.params["k"]), ctx,
                                progress)
