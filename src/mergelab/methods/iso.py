"""Iso-C and Iso-CTS (isotropic merging): methods.md.

Iso-C: per matrix key, SVD of Σ τt with every singular value replaced by their
mean, i.e. τm = mean(σ) · polar(Σ τt) (computed exactly in float64 from the
Gram of the smaller side; SVD fallback for ill-conditioned sums).

Iso-CTS: common fraction f (0.8): c = int(f·r), then (as the public code)
c = r − round((r − c)/T)·T so that (r − c) divides by T; common subspace =
top-c triplets of Σ τt; per task the top (r − c)/T triplets of
(I − U_c U_cᵀ) τt; U's and V's concatenated and orthogonalized by polar; every
singular value set to the mean of the concatenated ones.

Regime "lora": the dense ΔW have rank ≤ lora_rank, so r is replaced by
min(T·lora_rank, min(shape)) (the numerical rank of the sum), as in the
DC-Merge LoRA code; without it Iso-C would spread the mean singular value over
arbitrary null-space directions.
"""
from __future__ import annotations

from typing import Sequence

from ..lazy import torch
from .base import KeyInfo, MergeMethod, Number, Param, vector_mean
from .linalg import (CERT_TOL, GramPolar, _svd_exact, assemble, certified_top_eigh,
                     certified_top_svd, gram_bound, gram_floor, robust_svd, top_svd, use_fast)


def sum_f64(taus: Sequence[torch.Tensor]) -> torch.Tensor:
    """Σ τt accumulated in float64 (one copy, not a [T, m, n] float64 stack)."""
    out = taus[0].to(torch.float64).clone()
    for t in taus[1:]:
        out += t.to(torch.float64)
    return out


def effective_rank(info: KeyInfo, r: int, T: int) -> int:
    if info.regime == "lora" and info.lora_rank:
        return min(r, T * int(info.lora_rank))
    return r


def iso_split(r: int, T: int, fraction: float) -> tuple[int, int]:
    """(c, per-task dims) of Iso-CTS: c = int(f r) adjusted so (r − c) % T == 0."""
    c = int(r * fraction)
    ts_total = round((r - c) / T) * T
    ts_total = max(0, min(r, ts_total))
    c = r - ts_total
    return c, ts_total // T


class IsoC(MergeMethod):
    name = "iso_c"
    display_name = "Iso-C"
    alpha_grid = "svd"

    def merge_key(self, taus: Sequence[torch.Tensor], info: KeyInfo) -> torch.Tensor:
        if not info.is_matrix:
            return vector_mean(taus)
        m, n = taus[0].shape
        r = min(m, n)
        q = effective_rank(info, r, len(taus))
        if q == r and use_fast((m, n), False):
            return self._merge_large(sum_f64(taus))
        A = torch.stack([t.to(torch.float64) for t in taus]).sum(dim=0)
        if q < r:
            U, S, V = top_svd(A, q, exact=True)
            return (S.mean() * (U @ V.T)).float()
        At = A if m >= n else A.T
        w, Q = torch.linalg.eigh(At.T @ At)
        s = w.clamp_min(0).sqrt()
        if s[0] <= 1e-7 * s[-1]:  # squared condition beyond float64: exact SVD
            U, S, Vh = robust_svd(A, full_matrices=False)
            return (S.mean() * (U @ Vh)).float()
        out = s.mean() * (At @ ((Q / s) @ Q.T))  # mean(σ)·polar(At)
        return (out if m >= n else out.T).float()

    @staticmethod
    def _merge_large(A: torch.Tensor) -> torch.Tensor:
        """Large keys: mean(σ)·polar(Σ τt) from the float64 Gram of the short side
        (``GramPolar``: SVD when κ > 1e5), which also gives the σ's."""
        m, n = A.shape
        pol = GramPolar(A if m >= n else A.T)
        out = pol.singular_values.mean() * pol.matrix()
        return (out if m >= n else out.T).float()


class IsoCTS(MergeMethod):
    name = "iso_cts"
    display_name = "Iso-CTS"
    alpha_grid = "svd"
    parameters = (Param("common_fraction", 0.8, Number(low=0, high=1)),)

    def merge_key(self, taus: Sequence[torch.Tensor], info: KeyInfo) -> torch.Tensor:
        if not info.is_matrix:
            return vector_mean(taus)
        T = len(taus)
        m, n = taus[0].shape
        r = effective_rank(info, min(m, n), T)
        c, nt = iso_split(r, T, float(self.params["common_fraction"]))
        if use_fast((m, n), False) and r == min(m, n):
            return self._merge_large(taus, c, nt)
        A32 = [t.float() for t in taus]
        Ssum = torch.stack([t.to(torch.float64) for t in taus]).sum(dim=0)
        Us, Ss, Vs = [], [], []
        if m <= n:
            # left Gram gives U_c and its exact complement U_perp (I − U_cU_cᵀ = U_perp U_perpᵀ)
            w, Q = torch.linalg.eigh(Ssum @ Ssum.T)
            w, Q = w.flip(0), Q.flip(1)
            s = w.clamp_min(0).sqrt()
            if c > 0 and s[c - 1] <= 1e-7 * s[0]:
                Qf, sf, _ = robust_svd(Ssum, full_matrices=True)
                Q, s = Qf, torch.cat([sf, sf.new_zeros(m - sf.numel())])
            Uc, sc = Q[:, :c], s[:c]
            Vc = (Ssum.T @ Uc) / sc
            Uperp = Q[:, c:].to(torch.float32)
            if nt > 0:
                for t in A32:
                    B = Uperp.T @ t  # (m−c)×n coordinates of the projected task vector
                    Ub, Sb, Vb = top_svd(B, nt)
                    Us.append(Uperp.to(torch.float64) @ Ub), Ss.append(Sb), Vs.append(Vb)
        else:
            w, Q = torch.linalg.eigh(Ssum.T @ Ssum)
            w, Q = w.flip(0), Q.flip(1)
            s = w.clamp_min(0).sqrt()
            if c > 0 and s[c - 1] <= 1e-7 * s[0]:
                U_, s_, Vh_ = robust_svd(Ssum, full_matrices=False)
                Uc, sc, Vc = U_[:, :c], s_[:c], Vh_[:c].T
            else:
                Vc, sc = Q[:, :c], s[:c]
                Uc = (Ssum @ Vc) / sc
            Uc32 = Uc.to(torch.float32)
            if nt > 0:
                for t in A32:
                    R = t - Uc32 @ (Uc32.T @ t)
                    Ur, Sr, Vr = top_svd(R, nt)
                    Us.append(Ur), Ss.append(Sr), Vs.append(Vr)
        Us.append(Uc), Ss.append(sc), Vs.append(Vc)
        S_all = torch.cat(Ss)
        if S_all.numel() == 0:
            return torch.zeros(m, n)
        pu = GramPolar(torch.cat(Us, dim=1))
        pv = GramPolar(torch.cat(Vs, dim=1))
        core = S_all.mean() * torch.eye(S_all.numel(), dtype=torch.float64)
        return assemble(pu, core, pv)

    @staticmethod
    def _merge_large(taus: Sequence[torch.Tensor], c: int, nt: int) -> torch.Tensor:
        """Large keys, exactly (float64): the common subspace from the Gram ``eigh`` of Σ τt
        (certified at the cut c, SVD otherwise); the task parts as the top nt of each
        projected task vector, ``certified_top_svd`` (subspace certificate: Iso-CTS sets
        every σ to one mean, so only the subspaces matter). The task U's are orthogonal to
        U_c, so polar([U_tasks, U_c]) = [polar(U_tasks), U_c]."""
        A = sum_f64(taus)
        m, n = A.shape
        wide = m <= n
        Uc, sc, Vc, comp = _common_part(A.T if wide else A, c, full=wide)
        if wide:   # the sum's left side is its short side: Uc ↔ Vc swapped back
            Uc, Vc = Vc, Uc
        s_all = [sc]
        Us, Vs = [], []
        for t in taus:
            t64 = t.to(torch.float64)
            if wide:  # U_perp = comp: coordinates of τt in the complement of U_c
                Ub, Sb, Vb, _ = certified_top_svd(comp.T @ t64, nt, per_vector=False)
                Ub = comp @ Ub
            else:
                Ub, Sb, Vb = _residual_top(t64, Uc, nt)
            Us.append(Ub), Vs.append(Vb), s_all.append(Sb)
        if nt > 0:
            PU = torch.cat([GramPolar(torch.cat(Us, dim=1)).matrix(), Uc], dim=1)
            PV = GramPolar(torch.cat(Vs + [Vc], dim=1)).matrix()
        else:
            PU, PV = Uc, Vc
        s_bar = float(torch.cat(s_all).mean())
        return ((s_bar * PU) @ PV.T).float()


def _common_part(A: torch.Tensor, c: int, *, full: bool):
    """Top-c triplets of a tall float64 A (m ≥ n) from its Gram ``eigh``, certified at the
    cut (``linalg.certified_top_eigh``), with a float64 SVD otherwise. Returns (U_c, σ_c,
    V_c, comp) where comp (``full``) is an orthonormal basis of the complement of V_c in R^n."""
    G = A.T @ A
    w, Q = torch.linalg.eigh(G)
    lam, Q = w.flip(0), Q.flip(1)
    floor = gram_floor(A.shape[0], float(G.diagonal().sum()))
    ok = c == 0 or gram_bound(G, lam, Q[:, :c], floor, per_vector=False) <= CERT_TOL
    if ok:
        Vc, sc = Q[:, :c], lam[:c].clamp_min(0).sqrt()
        comp = Q[:, c:] if full else None
    else:
        _, s, Vh = robust_svd(A, full_matrices=False)
        Vc, sc, comp = Vh[:c].T, s[:c], (Vh[c:].T if full else None)
    return (A @ Vc) / sc, sc, Vc, comp


def _residual_top(t: torch.Tensor, Uc: torch.Tensor, nt: int):
    """Top-nt triplets of R = (I − U_c U_cᵀ) t (t tall, float64) without forming R: its Gram
    is tᵀt − BᵀB with B = U_cᵀ t; certified as a subspace (``linalg.certified_top_eigh``;
    the floor is the rounding of tᵀt, which the subtraction keeps), float64 SVD of R otherwise."""
    if nt == 0:
        return t.new_zeros((t.shape[0], 0)), t.new_zeros((0,)), t.new_zeros((t.shape[1], 0))
    B = Uc.T @ t
    Gt = t.T @ t
    G = Gt - B.T @ B
    lam, V, _, ok = certified_top_eigh(G, nt, gram_floor(t.shape[0], float(Gt.diagonal().sum())),
                                       per_vector=False)
    if ok:
        S = lam.sqrt()
        return (t @ V - Uc @ (B @ V)) / S, S, V
    return _svd_exact(t - Uc @ B, nt)
