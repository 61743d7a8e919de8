"""Consensus task arithmetic with TALL masks (Wang et al., 2024).

Per task t and λ: ``m_t(λ) = |τt| ≥ λ·|Στ − τt|`` (methods.md; the public code
writes it as |θ0 − θt| > λ·|θ_mt − θt| with θ_mt = θ0 + Στ, the same rule up
to ties of measure zero). Selection of λt, as in the public TALL-masks code
(``nik-dim/tall_masks``: ``evaluate_task_vector`` + ``find_optimal_mask``):

* for every λ in {0.2, 0.3, 0.4, 0.5, 0.6} the task-specific model
  θ0 + 1.0 · (m_t(λ) ⊙ Στ) is evaluated on task t's *validation* split: the
  scaling coefficient is fixed at **1.0** (the task-arithmetic α is not used),
  and the multi-task vector is the plain sum Στ (``k = 100``, no trimming);
* λt is the λ with the highest validation accuracy of task t; ties go to the
  first (smallest) λ, as Python's ``max`` over the λ-ordered dict does.

Consensus: an entry is kept when it is active in at least ``k`` (default 2) of
the selected masks; τm = mask ⊙ Στ over every key (the public code masks the
whole flattened parameter vector, biases and norms included). The pipeline then
chooses α on the task-arithmetic grid.

Memory: Στ is held in memory (4 bytes/parameter); masks are built key by key.
For one task at a time a uint8 "level" per entry (how many λ of the grid the
entry passes; the masks are nested in λ) is kept, plus a uint8 vote count, plus
the one masked vector being evaluated — bounded independently of T.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

from ..lazy import torch
from .base import (KeyInfo, MergeContext, MergeMethod, MethodConfigError, Number, Numbers, Param,
                   TaskVectorSource)

DEFAULT_LAMBDAS = (0.2, 0.3, 0.4, 0.5, 0.6)


def tall_levels(tau_t: torch.Tensor, total: torch.Tensor, lambdas: Sequence[float]) -> torch.Tensor:
    """uint8 count of the (ascending) λ for which |τt| ≥ λ·|Στ − τt|.

    The masks are nested (a larger λ keeps a subset), so ``m_t(lambdas[i]) = level > i``.
    """
    a = tau_t.float().abs()
    diff = (total.float() - tau_t.float()).abs()
    level = torch.zeros(tau_t.shape, dtype=torch.uint8, device=tau_t.device)
    for lam in lambdas:
        level += (a >= lam * diff).to(torch.uint8)
    return level


def tall_mask(tau_t: torch.Tensor, total: torch.Tensor, lam: float) -> torch.Tensor:
    """Boolean TALL mask of one task for one λ."""
    return tau_t.float().abs() >= lam * (total.float() - tau_t.float()).abs()


def _get_task(store: TaskVectorSource, key: str, t: int) -> torch.Tensor:
    getter = getattr(store, "get_task", None)
    if callable(getter):
        return getter(key, t)
    return store.get(key)[t]


class Consensus(MergeMethod):
    """Consensus TA: keep the entries active in ≥ k per-task TALL masks, τm = mask ⊙ Στ."""

    name = "consensus"
    display_name = "Consensus TA"
    alpha_grid = "ta"
    needs_data = True
    parameters = (
        Param("k", 2, Number(low=0, integer=True)),  # masks an entry must be active in
        # the λ grid, kept sorted ascending (the uint8 levels count at most 255 λ)
        Param("lambdas", DEFAULT_LAMBDAS, Numbers(Number(low=0), max_length=255),
              convert=lambda lams: tuple(sorted(float(x) for x in lams))),
    )

    def merge_key(self, taus: Sequence[torch.Tensor], info: KeyInfo) -> torch.Tensor:
        raise NotImplementedError("consensus selects λ on validation data: use merge(store, ctx)")

    def merge(self, store: TaskVectorSource, ctx: MergeContext,
              progress: Callable[[Iterable], Iterable] = lambda x: x) -> dict[str, torch.Tensor]:
        if ctx.evaluate is None:
            raise MethodConfigError(
                "method 'consensus' needs validation data: ctx.evaluate is None "
                "(the merge rule must pass an evaluator for the TALL-mask λ selection)")
        lambdas = self.params["lambdas"]
        keys = list(store.keys())
        # pass 1: Στ (kept in memory), original dtypes
        totals: dict[str, torch.Tensor] = {}
        dtypes: dict[str, torch.dtype] = {}
        n_tasks = None
        for key in progress(keys):
            taus = store.get(key)
            n_tasks = len(taus)
            dtypes[key] = taus[0].dtype
            totals[key] = torch.stack([t.float() for t in taus]).sum(dim=0)
            del taus
        if n_tasks is None:
            raise MethodConfigError("method 'consensus': the task-vector source has no keys")
        names = list(ctx.tasks) if len(ctx.tasks) == n_tasks else [str(i) for i in range(n_tasks)]

        votes = {key: torch.zeros(totals[key].shape, dtype=torch.int16) for key in keys}
        chosen: dict[str, float] = {}
        scores: dict[str, dict[str, float]] = {}
        for t in range(n_tasks):
            levels = {key: tall_levels(_get_task(store, key, t), totals[key], lambdas) for key in keys}
            accs = []
            for i, lam in enumerate(lambdas):
                masked = {key: totals[key] * (levels[key] > i) for key in keys}
                accs.append(float(ctx.evaluate(t, masked, 1.0, split="val")))
                del masked
            best = max(range(len(lambdas)), key=lambda i: (accs[i], -i))  # first best wins
            chosen[names[t]] = lambdas[best]
            scores[names[t]] = {str(lam): acc for lam, acc in zip(lambdas, accs)}
            for key in keys:
                votes[key] += (levels[key] > best).to(torch.int16)
            del levels

        k = self.params["k"]
        out = {}
        for key in keys:
            out[key] = (totals[key] * (votes[key] >= k)).to(dtypes[key])
        ctx.aux["lambdas"] = chosen
        ctx.aux["lambda_val_accuracy"] = scores
        ctx.aux["consensus_density"] = {
            "kept": int(sum(int((votes[key] >= k).sum()) for key in keys)),
            "total": int(sum(votes[key].numel() for key in keys)),
        }
        return out
