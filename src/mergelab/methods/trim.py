"""Whole-model TIES trimming, streamed key by key.

The public TIES code (``prateeky2806/ties-merging``), FusionBench
(``ties_merging_utils.topk_values_mask``, by its header adapted from the AdaMerging
repository's) and KnOTS (``masking_ops``) flatten each task vector over all keys into one
row and keep the entries whose magnitude is at least the
``(n − int(n·K))``-th smallest |value| of that row (K = k / 100, n = the task's entry count;
K ≥ 1 keeps everything). Signs are then elected per entry (sign of the sum of the trimmed
values; entries whose sum is 0 take the sign of the sum of all elected signs of the whole
model) and the disjoint mean keeps the entries that agree.

Here the threshold of every task is found exactly without holding a flattened vector: the
|values| are float32, whose bit patterns sort like the values, so two histogram passes over
the keys (high 16 bits, then the low 16 bits inside the chosen high bin) give the k-th
smallest exactly. A third pass merges key by key. Memory: one key's T tensors plus
2 × T × 65,536 counters, whatever the model size.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np

from ..lazy import torch

#: produces one key's stacked per-task values [T, *shape] (float32), e.g. the task vectors,
#: their DARE-dropped versions or KnOTS' per-task right factors
Producer = Callable[[str], "torch.Tensor"]

_HI_BINS = 1 << 15   # |x| has sign bit 0: high half-words 0 … 32767
_LO_BINS = 1 << 16


def _abs_bits(stack: torch.Tensor) -> np.ndarray:
    """int32 bit patterns of the float32 |stack|, one row per task (non-negative: they
    sort like the magnitudes)."""
    a = stack.detach().float().abs().reshape(stack.shape[0], -1).cpu().contiguous()
    return a.view(torch.int32).numpy()


def _high_histogram(keys, produce, progress) -> torch.Tensor:
    hist = None
    for key in progress(keys):
        bits = _abs_bits(produce(key))
        h = np.stack([np.bincount(row >> 16, minlength=_HI_BINS) for row in bits])
        hist = h if hist is None else hist + h
    if hist is None:
        raise ValueError("whole-model trimming: the task-vector source has no keys")
    return torch.from_numpy(hist.astype(np.int64))


def _low_histogram(keys, produce, hi: torch.Tensor, progress) -> torch.Tensor:
    """Per task, the histogram of the low 16 bits of the entries whose high bits are ``hi``."""
    hist = np.zeros((len(hi), _LO_BINS), dtype=np.int64)
    want = hi.numpy()
    for key in progress(keys):
        for t, row in enumerate(_abs_bits(produce(key))):
            hist[t] += np.bincount(row[(row >> 16) == want[t]] & 0xFFFF, minlength=_LO_BINS)
    return torch.from_numpy(hist)


def _bin_of_rank(hist: torch.Tensor, ranks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the bin holding the ``ranks``-th smallest entry and the rank inside that bin."""
    cum = hist.cumsum(dim=1)
    b = (cum < ranks.unsqueeze(1)).sum(dim=1)
    before = torch.where(b > 0, cum.gather(1, (b - 1).clamp(min=0).unsqueeze(1)).squeeze(1),
                         torch.zeros_like(b))
    return b, ranks - before


def whole_model_thresholds(keys: Sequence[str], produce: Producer, fraction: float,
                           progress: Callable[[Iterable], Iterable] = lambda x: x) -> torch.Tensor:
    """Per-task threshold [T] of whole-model top-k trimming: a task keeps |x| ≥ its threshold.

    threshold = the ``(n − int(n·fraction))``-th smallest |value| of the task over all keys
    (the reference's ``kthvalue``); 0 (keep everything) when fraction ≥ 1.
    """
    hist = _high_histogram(keys, produce, progress)
    n = int(hist[0].sum())
    keep = n if fraction >= 1 else int(n * fraction)
    if keep >= n:
        return torch.zeros(hist.shape[0])
    ranks = torch.full((hist.shape[0],), n - keep, dtype=torch.int64)
    hi, rank_in_bin = _bin_of_rank(hist, ranks)
    lo, _ = _bin_of_rank(_low_histogram(keys, produce, hi, progress), rank_in_bin)
    return ((hi << 16) | lo).to(torch.int32).view(torch.float32)


def ties_merge_streamed(keys: Sequence[str], produce: Producer, thresholds: torch.Tensor,
                        progress: Callable[[Iterable], Iterable] = lambda x: x
                        ) -> dict[str, torch.Tensor]:
    """TIES sign election + disjoint mean of the trimmed values, key by key (float32).

    The sign of an entry whose trimmed sum is 0 is the whole model's majority sign, known only
    after the last key: such entries (rare: an exact cancellation) are fixed up at the end.
    As in the reference, a majority of 0 selects the negative entries.
    """
    out: dict[str, torch.Tensor] = {}
    ties: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    sign_total = 0
    for key in progress(keys):
        stack = produce(key).float()
        thr = thresholds.to(stack.device).reshape(-1, *([1] * (stack.dim() - 1)))
        stack = stack * (stack.abs() >= thr)
        elected = torch.sign(stack.sum(dim=0))
        sign_total += int(elected.sum())
        pos, neg = stack > 0, stack < 0
        pos_mean = (stack * pos).sum(dim=0) / pos.sum(dim=0).clamp(min=1)
        neg_mean = (stack * neg).sum(dim=0) / neg.sum(dim=0).clamp(min=1)
        out[key] = torch.where(elected > 0, pos_mean, neg_mean)
        tie = (elected == 0) & (pos | neg).any(dim=0)
        if tie.any():
            ties[key] = (tie, pos_mean[tie])
        del stack
    if sign_total > 0:
        for key, (tie, pos_vals) in ties.items():
            out[key][tie] = pos_vals
    return out
