"""MDA, feature space (Algorithm 2, data-based, "MDA AM").

Start from the Algorithm 1 (``mda``) model — its ETF-aligned per-task vectors with every
λ at MDA's validated α (``init: from_method``, ``init_method: mda``: the pipeline reads α
from the ``mda`` eval JSON of the same suite; a number is accepted too) — and jointly
learn layer-wise fusion coefficients λt,l (as in layer-wise AdaMerging, clamped to
``clamp_range`` [0, 3], which holds MDA's α grid) and one rotation Rt ∈ SO(d) per task
acting on the image features before task t's head, on unlabeled test images:

    loss = Σt [ entropy(head_t(Rt f))
               + α · mean ‖Rt f̂ − e_t(ŷ)‖²          (ETF alignment)
               + β · ‖Rt − R_proc,t‖²_F ]            (Procrustes pull)

with α = 0.8, β = 0.2. The decisions (ETF targets from the head's class
directions, unit features, pseudo-labels from the current model, EMA class means
for the Procrustes target, Rt = exp(At − Atᵀ)) are written down in
``docs/mda.md`` ("Algorithm 2").

Outputs: τm = Σt λt,l τt,l^etf (α = 1, grid ``fixed1``), one
``merge_coefficients.<key>`` [T] per key, and, with ``rotation: true``, one
``feature_rotation.<task>`` [d, d] per task, which the evaluator applies to that
task's features before its head.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from ..lazy import torch
from .adamerging import FROM_METHOD, EntropyMerging, softmax_entropy
from .base import (ROTATION_PREFIX, Flag, MergeContext, Number, Param, TaskVectorSource,
                   is_matrix_key, overriding)
from .linalg import robust_svd
from .mda import effective_k, mda_task_vectors, polar
from .mda import K_FRACTION


def etf_targets(head_weight: torch.Tensor) -> torch.Tensor:
    """Simplex-ETF targets [C, d] (unit rows) placed next to the head's class directions.

    U = polar(Ŵᵀ) (d × C, orthonormal columns nearest to the normalized class
    embeddings Ŵ), E = sqrt(C/(C−1)) · U (I − 11ᵀ/C): pairwise cosine −1/(C−1).
    Row c is class c's target. If C > d (no orthonormal frame) or C < 2 the
    normalized class embeddings themselves are the targets.
    """
    w = torch.nn.functional.normalize(head_weight.double(), dim=-1)
    c, d = w.shape
    if c < 2 or c > d:
        return w.float()
    u = polar(w.T)                                   # d × C
    e = math.sqrt(c / (c - 1)) * (u - u.mean(dim=1, keepdim=True))
    return e.T.contiguous().float()


def procrustes_rotation(sources: torch.Tensor, targets: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """argmin over R ∈ SO(d) of Σ_c ‖R s_c − t_c‖² (+ eps·‖R − I‖², which only breaks ties
    in the directions the pairs leave free); rows of ``sources``/``targets`` are the pairs.

    M = Tᵀ S + eps·I = P Σ Qᵀ; R = P diag(1, …, 1, det(P Qᵀ)) Qᵀ (determinant-corrected).
    """
    d = sources.shape[1]
    m = targets.double().T @ sources.double() + eps * torch.eye(d, dtype=torch.float64, device=sources.device)
    p, _, qh = robust_svd(m)
    sign = torch.sign(torch.linalg.det(p @ qh))
    if sign == 0:
        sign = torch.ones((), dtype=torch.float64, device=sources.device)
    fix = torch.ones(d, dtype=torch.float64, device=sources.device)
    fix[-1] = sign
    return (p * fix) @ qh


def rotation_from(a: torch.Tensor) -> torch.Tensor:
    """R = exp(A − Aᵀ) ∈ SO(d) (float64): exactly orthogonal with det +1 for every A."""
    return torch.linalg.matrix_exp(a - a.T)


class MdaAM(EntropyMerging):
    """MDA AM: Algorithm 1 vectors + learned layer-wise λ and per-task feature rotations."""

    name = "mda_am"
    display_name = "MDA (AM)"
    shared_basis = True
    parameters = overriding(
        EntropyMerging.parameters,
        # λ starts at MDA's validated α (the Algorithm 1 model, docs/mda.md "Algorithm 2");
        # the clamp range holds every α of MDA's grid (0.1 … 3.0)
        init=FROM_METHOD, init_method="mda", clamp_range=(0.0, 3.0),
    ) + (
        K_FRACTION,                # Algorithm 1's k (None = 1/T of d_out), for the rank-k sweep
        Param("exact", False, Flag()),    # Algorithm 1 by full SVDs on large keys too (``mda``)
        Param("rotation", True, Flag()),  # False: Rt ≡ I (the "without rotation" ablation)
        Param("etf_weight", 0.8, Number(low=0)),         # α of the paper
        Param("procrustes_weight", 0.2, Number(low=0)),  # β of the paper
        # chosen on validation (docs/data_based.md): 1e-3 destroys accuracy
        Param("rotation_lr", 1.0e-5, Number(low=0, low_open=True)),
        # EMA of pseudo-labelled class means (Procrustes source)
        Param("mean_momentum", 0.9, Number(low=0, high=1, high_open=True)),
        Param("procrustes_eps", 1.0e-3, Number(low=0)),
    )

    @classmethod
    def label(cls, params: Mapping[str, Any] | None = None) -> str:
        rotation = cls.completed(params)["rotation"]
        return "MDA (AM)" if rotation else "MDA (AM, no rotation)"

    # -- Algorithm 1 per-task vectors -------------------------------------------
    def task_vectors(self, store: TaskVectorSource, ctx: MergeContext, progress) -> dict[str, torch.Tensor]:
        """Per key, the T ETF-aligned task vectors τt^etf of ``mda`` (default reading,
        ``mda.mda_task_vectors``; their sum is ``mda``'s τm); vector keys and keys with r < T: τt / T (their sum is
        ``mda``'s mean). So λ ≡ α reproduces the Algorithm 1 model θ0 + α·τm exactly."""
        out = {}
        lora_rank = ctx.lora_rank if ctx.regime == "lora" else None
        for key in progress(store.keys()):
            taus = [t.float().to(ctx.device) for t in store.get(key)]
            shape = taus[0].shape
            n = len(taus)
            if not is_matrix_key(key, shape) or min(shape) < n:
                out[key] = (torch.stack(taus) / n).cpu()
                continue
            k = effective_k(shape[0], shape[1], n, self.params["k_fraction"], lora_rank)
            out[key] = mda_task_vectors(taus, k, exact=self.params["exact"],
                                        basis=ctx.basis_of(key)).cpu()
        return out

    # -- rotations and the extra loss terms -----------------------------------------
    def setup(self, ev, ctx: MergeContext, dev: torch.device) -> None:
        self.tasks = list(ctx.tasks)
        self.targets = [etf_targets(h.weight).to(dev) for h in self.heads]
        d = self.heads[0].weight.shape[1]
        self.dim = d
        self.skew = [torch.nn.Parameter(torch.zeros(d, d, dtype=torch.float64, device=dev))
                     for _ in self.tasks] if self.params["rotation"] else []
        self.means = [torch.zeros(t.shape[0], d, device=dev) for t in self.targets]
        self.seen = [torch.zeros(t.shape[0], dtype=torch.bool, device=dev) for t in self.targets]
        self.r_proc = [torch.eye(d, dtype=torch.float64, device=dev) for _ in self.tasks]

    def extra_parameters(self) -> list[dict[str, Any]]:
        if not self.skew:
            return []
        return [{"params": self.skew, "lr": float(self.params["rotation_lr"])}]

    def rotation(self, t: int) -> torch.Tensor | None:
        return rotation_from(self.skew[t]) if self.skew else None

    def task_loss(self, t: int, features: torch.Tensor, head, step: int):
        p = self.params
        f = torch.nn.functional.normalize(features.float(), dim=-1)
        r = self.rotation(t)
        fr = f @ r.T.float() if r is not None else f
        logits = head.logits(fr)
        ent = softmax_entropy(logits).mean()
        pseudo = logits.detach().argmax(dim=-1)                      # ŷ: current model, no labels
        align = ((fr - self.targets[t][pseudo]) ** 2).sum(-1).mean()
        loss = ent + p["etf_weight"] * align
        parts = {"entropy": float(ent.detach()), "etf": float(align.detach())}
        # class means of the (unrotated) unit features for the Procrustes target
        with torch.no_grad():
            for c in pseudo.unique():
                mc = f.detach()[pseudo == c].mean(dim=0)
                ci = int(c)
                if self.seen[t][ci]:
                    mom = p["mean_momentum"]
                    self.means[t][ci] = mom * self.means[t][ci] + (1 - mom) * mc
                else:
                    self.means[t][ci] = mc
                    self.seen[t][ci] = True
        if r is not None:
            seen = self.seen[t]
            src = torch.nn.functional.normalize(self.means[t][seen], dim=-1)
            self.r_proc[t] = procrustes_rotation(src, self.targets[t][seen], p["procrustes_eps"])
            pull = ((r - self.r_proc[t]) ** 2).sum()
            loss = loss + p["procrustes_weight"] * pull.float()
            parts["procrustes"] = float(pull.detach())
        return loss, parts

    def extra_outputs(self, ctx: MergeContext) -> dict[str, torch.Tensor]:
        if not self.skew:
            return {}
        out = {}
        for t, task in enumerate(self.tasks):
            r = self.rotation(t).detach()
            out[ROTATION_PREFIX + task] = r.float().cpu()
        ctx.aux["rotations"] = {
            task: {"deviation_from_identity": float((self.rotation(t) - torch.eye(self.dim, dtype=torch.float64,
                                                     device=self.skew[t].device)).norm()),
                   "distance_to_procrustes": float((self.rotation(t) - self.r_proc[t]).norm())}
            for t, task in enumerate(self.tasks)}
        return out
