"""TSV-M (Task Singular Vectors, merge): methods.md "TSV-M".

Per matrix key: k = r // T; top-k (U, S, V) of each τt; U's and V's
concatenated; τm = polar(U_cat) · diag(S_cat) · polar(V_cat). Vector keys: mean.

Regime "lora": the dense ΔW = B·A has rank ≤ lora_rank, so triplets beyond it
are numerical noise whose directions are arbitrary; we use
k = min(lora_rank, r // T) per task (the DC-Merge LoRA code uses k = 16 = rank).

Exactness and speed: see ``linalg``. Large keys (min(shape) >= FAST_MIN_R): every
task's top-k by a certified float64 Gram ``eigh`` (float64 SVD where the certificate
fails) and float64 polar factors: a ``linalg.KeyBasis``, shared with DC-Merge and MDA
when the pipeline computed it once for the suite (``mergelab.basis``). Small keys: the
float64 routes of ``linalg.top_svd`` and ``GramPolar``. ``exact: true`` takes the
per-task route on large keys too (same result, no shared basis).
"""
from __future__ import annotations

from typing import Sequence

from ..lazy import torch
from .base import Flag, KeyInfo, MergeMethod, Param, vector_mean
from .linalg import GramPolar, assemble, key_basis, per_task_rank, task_triplets, use_fast


class TSVMerge(MergeMethod):
    name = "tsv_m"
    display_name = "TSV-M"
    alpha_grid = "svd"
    parameters = (Param("exact", False, Flag()),)
    shared_basis = True

    def merge_key(self, taus: Sequence[torch.Tensor], info: KeyInfo) -> torch.Tensor:
        if not info.is_matrix:
            return vector_mean(taus)
        m, n = taus[0].shape
        T = len(taus)
        k = per_task_rank(info, min(m, n), T)
        if k == 0:
            return torch.zeros(m, n)
        if use_fast((m, n), self.params["exact"]):
            b = key_basis(taus, k, info.basis)
            return (b.PU * b.S.reshape(-1).to(torch.float32)) @ b.PV.T
        Us, Ss, Vs = task_triplets(taus, k, self.params["exact"])
        pu = GramPolar(torch.cat(Us, dim=1))
        pv = GramPolar(torch.cat(Vs, dim=1))
        return assemble(pu, torch.diag(torch.cat(Ss)), pv)
