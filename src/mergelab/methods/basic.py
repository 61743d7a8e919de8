"""Weight averaging, task arithmetic and TIES."""
from __future__ import annotations

from typing import Sequence

import torch

from .base import KeyInfo, MergeMethod, MethodConfigError, disjoint_mean, topk_mask


class WeightAveraging(MergeMethod):
    """τm = mean of the τt, α fixed at 1."""

    name = "weight_averaging"
    alpha_grid = "fixed1"

    def merge_key(self, taus: Sequence[torch.Tensor], info: KeyInfo) -> torch.Tensor:
        return torch.stack([t.float() for t in taus]).mean(dim=0)


class TaskArithmetic(MergeMethod):
    """τm = Σ τt."""

    name = "task_arithmetic"

    def merge_key(self, taus: Sequence[torch.Tensor], info: KeyInfo) -> torch.Tensor:
        return torch.stack([t.float() for t in taus]).sum(dim=0)


class Ties(MergeMethod):
    """TIES-merging: trim to the top k % by magnitude, elect signs, disjoint mean."""

    name = "ties"
    defaults = {"k": 20.0}

    def validate(self) -> None:
        k = self.params["k"]
        if not isinstance(k, (int, float)) or not 0 < k <= 100:
            raise MethodConfigError(f"method 'ties': k must be in (0, 100], got {k!r}")

    def merge_key(self, taus: Sequence[torch.Tensor], info: KeyInfo) -> torch.Tensor:
        frac = self.params["k"] / 100.0
        stack = torch.stack([t.float() * topk_mask(t.float(), frac) for t in taus])
        return disjoint_mean(stack)
