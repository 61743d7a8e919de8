"""MDA, parameter space (Algorithm 1, data-free, "MDA TA").

No public code exists; the interpretation, and why, is written down in
``docs/mda.md``. In short, per matrix key (d_out × d_in, r = min):

1. k = max(1, round(k_fraction · d_out)) with k_fraction = 1/T by default;
   capped so that T·k ≤ r (and k ≤ LoRA rank for LoRA task vectors).
2. Per task, thin SVD τt = Ut St Vtᵀ; keep the top-k triplets. Concatenate the
   left vectors into U_cat (d_out × K), the right ones into V_cat (d_in × K),
   the singular values into S_cat, with K = T·k *components*.
3. Shared subspace: U⊥ = polar(U_cat), V⊥ = polar(V_cat) (orthonormal bases).
4. ETF alignment: multiply the shared basis by the Gram operator of the simplex
   ETF on K points, G = K/(K−1) · (I − 11ᵀ/K), rescaled so the columns have unit
   norm: U_etf = sqrt((K−1)/K) · U⊥ G = sqrt(K/(K−1)) · U⊥ (I − 11ᵀ/K). Its
   columns form an exact simplex ETF (pairwise cosine −1/(K−1)).
5. ETF-aligned task vectors τt^etf = U_etf[:, block t] diag(St) V⊥[:, block t]ᵀ;
   merged with equal fusion coefficients: τm = Σt τt^etf = U_etf diag(S_cat) V⊥ᵀ.

Vector keys merge as the mean. Singular vectors have an arbitrary sign and the
ETF centring is sign dependent, so every component is put in a canonical sign
first (largest-magnitude entry of its left vector positive).

Speed: large keys (``tsv.use_fast``: min side >= ``linalg.FAST_MIN_R``, the ViT-B/L
matrices) take the top-k triplets and the polar factors from ``linalg.KeyBasis`` (exact:
certified float64 Gram ``eigh`` or float64 SVD; shared with TSV-M and DC-Merge when the
pipeline computed it once for the suite: ``mergelab.basis``) instead of a full SVD per
task and an SVD per polar factor; ``exact: true`` (and every small key) keeps the
full-SVD route. The signs of a singular pair are arbitrary in both routes, and
polar(U·D) = polar(U)·D for a diagonal sign matrix D, so after the canonical signs both
give the same τm up to rounding (tests/test_methods_data_free.py and
tests/test_svd_adversarial.py compare them with float64 references).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from .base import KeyInfo, MergeMethod, MethodConfigError
from .linalg import KeyBasis, cat_tasks, key_basis, robust_svd
from .tsv import use_fast


def polar(a: torch.Tensor) -> torch.Tensor:
    """P Qᵀ for a = P Σ Qᵀ (thin SVD): the nearest matrix with orthonormal columns."""
    p, _, qh = robust_svd(a, full_matrices=False)
    return p @ qh


def etf_gram(k: int, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """Gram matrix of the simplex ETF of k unit vectors: 1 on the diagonal, −1/(k−1) elsewhere."""
    if k < 2:
        return torch.ones(k, k, dtype=dtype, device=device)
    eye = torch.eye(k, dtype=dtype, device=device)
    return k / (k - 1) * (eye - torch.full((k, k), 1.0 / k, dtype=dtype, device=device))


def delta_etf(directions: torch.Tensor) -> float:
    """Directional deviation ΔETF of the columns of ``directions`` (d × K).

    Columns are normalised to unit length (zero columns are dropped); ΔETF =
    ‖Ĝ − G_ETF‖_F / ‖G_ETF‖_F where Ĝ is their Gram matrix and G_ETF the Gram
    matrix of the simplex ETF with as many vectors. 0 means an exact simplex ETF.
    """
    d = directions.double()
    norms = d.norm(dim=0)
    d = d[:, norms > 0] / norms[norms > 0]
    k = d.shape[1]
    if k < 2:
        return 0.0
    target = etf_gram(k, device=d.device)
    return float((d.T @ d - target).norm() / target.norm())


def effective_k(d_out: int, d_in: int, n_tasks: int, k_fraction: float | None,
                lora_rank: int | None = None) -> int:
    """Components per task: max(1, round(f·d_out)), capped so that T·k ≤ r (and k ≤ LoRA rank)."""
    r = min(d_out, d_in)
    f = 1.0 / n_tasks if k_fraction is None else float(k_fraction)
    k = max(1, int(round(f * d_out)))
    if lora_rank:
        k = min(k, int(lora_rank))
    return max(1, min(k, r // n_tasks)) if r >= n_tasks else 1


def _canonical_signs(U: torch.Tensor) -> torch.Tensor:
    """[T, d, k] -> [T·k] signs that make each column's largest-magnitude entry positive."""
    T, d, k = U.shape
    idx = U.abs().argmax(dim=1)                                    # [T, k]
    signs = torch.sign(torch.gather(U, 1, idx[:, None, :]))[:, 0]  # [T, k]
    signs[signs == 0] = 1
    return signs.reshape(T * k)


def mda_components(taus: Sequence[torch.Tensor], k: int):
    """Full-SVD route: top-k SVD triplets of each task, canonical signs, concatenated:
    (U_cat d_out×K, S_cat K, V_cat d_in×K), float32."""
    us, ss, vs = [], [], []
    for t in taus:
        u, s, vh = robust_svd(t.float(), full_matrices=False)
        us.append(u[:, :k])
        ss.append(s[:k])
        vs.append(vh[:k].T)
    U, V = torch.stack(us), torch.stack(vs)
    signs = _canonical_signs(U)
    return cat_tasks(U) * signs, torch.cat(ss), cat_tasks(V) * signs


def etf_align(basis: torch.Tensor) -> torch.Tensor:
    """Multiply an orthonormal basis (d × K) by the simplex-ETF Gram operator, unit columns."""
    k = basis.shape[1]
    if k < 2:
        return basis
    centred = basis - basis.mean(dim=1, keepdim=True)   # basis · (I − 11ᵀ/K)
    return math.sqrt(k / (k - 1)) * centred


def _fast_align(taus: Sequence[torch.Tensor], k: int, basis: KeyBasis | None):
    """Large keys: (U_cat, S_cat, V_cat, U⊥, V⊥) from the (shared) ``KeyBasis``; the canonical
    signs D multiply the polar factors too: polar(U_cat·D) = polar(U_cat)·D."""
    b = key_basis(taus, k, basis)
    signs = _canonical_signs(b.U)
    u_cat, v_cat = cat_tasks(b.U) * signs, cat_tasks(b.V) * signs
    return u_cat, b.S.reshape(-1).float(), v_cat, b.PU * signs, b.PV * signs


def mda_align(taus: Sequence[torch.Tensor], k: int, exact: bool = False,
              basis: KeyBasis | None = None) -> dict[str, torch.Tensor]:
    """All intermediate quantities of Algorithm 1 for one matrix key (``basis``: the suite's
    shared ``KeyBasis`` of this key, used on large keys when it is for this k)."""
    if use_fast(taus[0].shape, exact):
        u_cat, s_cat, v_cat, u_perp, v_perp = _fast_align(taus, k, basis)
    else:
        u_cat, s_cat, v_cat = mda_components(taus, k)
        u_perp, v_perp = polar(u_cat), polar(v_cat)
    u_etf = etf_align(u_perp)
    return {"u_cat": u_cat, "s_cat": s_cat, "v_cat": v_cat,
            "u_perp": u_perp, "v_perp": v_perp, "u_etf": u_etf}


def mda_delta_etf(taus: Sequence[torch.Tensor], k: int, exact: bool = False) -> dict[str, float]:
    """ΔETF of the concatenated task directions before alignment, after orthogonalisation, after ETF alignment."""
    a = mda_align(taus, k, exact)
    return {"before": delta_etf(a["u_cat"]), "orthogonal": delta_etf(a["u_perp"]),
            "after": delta_etf(a["u_etf"]), "K": int(a["u_cat"].shape[1])}


class Mda(MergeMethod):
    """MDA TA: per-task top-k subspaces → shared basis → simplex-ETF alignment → sum."""

    name = "mda"
    alpha_grid = "svd"  # see docs/mda.md ("α grid")
    defaults = {"k_fraction": None, "exact": False}
    shared_basis = True

    def validate(self) -> None:
        f = self.params["k_fraction"]
        if f is not None and (not isinstance(f, (int, float)) or isinstance(f, bool) or not 0 < f <= 1):
            raise MethodConfigError(f"method 'mda': k_fraction must be None or in (0, 1], got {f!r}")
        if not isinstance(self.params["exact"], bool):
            raise MethodConfigError(f"method 'mda': exact must be a bool, got {self.params['exact']!r}")

    def merge_key(self, taus: Sequence[torch.Tensor], info: KeyInfo) -> torch.Tensor:
        shape = taus[0].shape
        if not info.is_matrix or len(shape) != 2 or min(shape) < len(taus):
            return torch.stack([t.float() for t in taus]).mean(dim=0)
        lora_rank = info.lora_rank if info.regime == "lora" else None
        k = effective_k(shape[0], shape[1], len(taus), self.params["k_fraction"], lora_rank)
        a = mda_align(taus, k, self.params["exact"], info.basis)
        return (a["u_etf"] * a["s_cat"]) @ a["v_perp"].T
