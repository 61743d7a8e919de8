"""MDA, parameter space (Algorithm 1, data-free, "MDA TA").

No public code exists; the interpretation, and why, is written down in
``docs/mda.md``. In short, per matrix key (d_out × d_in, r = min):

1. k = max(1, round(k_fraction · d_out)) with k_fraction = 1/T by default;
   capped so that T·k ≤ r (and k ≤ LoRA rank for LoRA task vectors).
2. Per task, thin SVD τt = Ut St Vtᵀ; keep the top-k triplets. Concatenate the
   left vectors into U_cat (d_out × K), the right ones into V_cat (d_in × K),
   the singular values into S_cat, with K = T·k *components*.
3. Shared subspace: U⊥ = polar(U_cat), V⊥ = polar(V_cat) (orthonormal bases).
4. ETF alignment with the simplex-ETF Gram operator G = K/(K−1) · (I − 11ᵀ/K),
   rescaled to unit norm, applied to the K shared directions. Which directions
   (``etf``):
   * ``components`` (default): the rank-one components E_i = u⊥_i v⊥_iᵀ, orthonormal
     in the Frobenius inner product; M_i = sqrt(K/(K−1)) (E_i − Ē). A pair (u_i, v_i)
     flipped together leaves E_i unchanged, so the result does not depend on the
     arbitrary SVD signs. τm = Σ σ_i M_i = sqrt(K/(K−1)) · U⊥ (S_cat − mean(S_cat)) V⊥ᵀ.
   * ``left_vectors``: the left basis only, U_etf = sqrt(K/(K−1)) · U⊥ (I − 11ᵀ/K),
     τm = U_etf diag(S_cat) V⊥ᵀ: TSV-M plus a rank-one centring term along U⊥·1,
     which depends on the signs; fixed by the canonical signs (largest-magnitude
     entry of each left vector positive, ties within rounding to the first index).
5. The ETF-aligned task vectors τt^etf are summed with equal fusion coefficients.

Vector keys merge as the mean. ``sign_seed`` replaces the canonical signs by a
random valid convention (docs/mda.md measures the spread of ``left_vectors``).

Speed: large keys (``linalg.use_fast``: min side >= ``linalg.FAST_MIN_R``, the ViT-B/L
matrices) take the top-k triplets and the polar factors from ``linalg.KeyBasis`` (exact:
certified float64 Gram ``eigh`` or float64 SVD; shared with TSV-M and DC-Merge when the
pipeline computed it once for the suite: ``mergelab.basis``) instead of a full SVD per
task and an SVD per polar factor; ``exact: true`` (and every small key) keeps the
full-SVD route. The signs of a singular pair are arbitrary in both routes, and
polar(U·D) = polar(U)·D for a diagonal sign matrix D, so after the canonical signs both
give the same τm up to rounding for either reading (tests/test_methods_data_free.py and
tests/test_svd_adversarial.py compare them with float64 references).
"""
from __future__ import annotations

import math
from typing import Sequence

from ..lazy import torch
from .base import Choice, Flag, KeyInfo, MergeMethod, Number, Param, key_seed, optional, vector_mean
from .linalg import KeyBasis, cat_tasks, key_basis, robust_svd, use_fast


def polar(a: torch.Tensor) -> torch.Tensor:
    """P Qᵀ for a = P Σ Qᵀ (thin SVD): the nearest matrix with orthonormal columns."""
    p, _, qh = robust_svd(a, full_matrices=False)
    return p @ qh


def etf_gram(k: int, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    """Gram matrix of the simplex ETF of k unit vectors: 1 on the diagonal, −1/(k−1) elsewhere
    (``dtype`` defaults to float64)."""
    dtype = torch.float64 if dtype is None else dtype
    if k < 2:
        return torch.ones(k, k, dtype=dtype, device=device)
    eye = torch.eye(k, dtype=dtype, device=device)
    return k / (k - 1) * (eye - torch.full((k, k), 1.0 / k, dtype=dtype, device=device))


def delta_etf_gram(gram: torch.Tensor) -> float:
    """ΔETF from the Gram matrix of K directions (zero directions dropped, the rest normalised)."""
    g = gram.double()
    d = torch.diagonal(g)
    keep = d > 0
    g = g[keep][:, keep]
    inv = d[keep].rsqrt()
    g = g * inv[:, None] * inv[None, :]
    k = g.shape[0]
    if k < 2:
        return 0.0
    target = etf_gram(k, device=g.device)
    return float((g - target).norm() / target.norm())


def delta_etf(directions: torch.Tensor) -> float:
    """Directional deviation ΔETF of the columns of ``directions`` (d × K).

    Columns are normalised to unit length (zero columns are dropped); ΔETF =
    ‖Ĝ − G_ETF‖_F / ‖G_ETF‖_F where Ĝ is their Gram matrix and G_ETF the Gram
    matrix of the simplex ETF with as many vectors. 0 means an exact simplex ETF.
    """
    d = directions.double()
    return delta_etf_gram(d.T @ d)


def effective_k(d_out: int, d_in: int, n_tasks: int, k_fraction: float | None,
                lora_rank: int | None = None) -> int:
    """Components per task: max(1, round(f·d_out)), capped so that T·k ≤ r (and k ≤ LoRA rank)."""
    r = min(d_out, d_in)
    f = 1.0 / n_tasks if k_fraction is None else float(k_fraction)
    k = max(1, int(round(f * d_out)))
    if lora_rank:
        k = min(k, int(lora_rank))
    return max(1, min(k, r // n_tasks)) if r >= n_tasks else 1


def _canonical_signs(U: torch.Tensor, rel_tol: float = 1e-3) -> torch.Tensor:
    """[T, d, k] -> [T·k] signs that make each column's largest-magnitude entry positive.

    Tie-robust: every entry within ``rel_tol`` of the column's largest magnitude counts as a
    tie and the lowest index among them decides, so two entries that are equal up to rounding
    (e.g. u = (1, −1)/√2) give the same sign on every SVD route.
    """
    T, d, k = U.shape
    mag = U.abs()
    near = mag >= mag.amax(dim=1, keepdim=True) * (1 - rel_tol)
    idx = near.to(U.dtype).argmax(dim=1)                           # first index of the tie band
    signs = torch.sign(torch.gather(U, 1, idx[:, None, :]))[:, 0]  # [T, k]
    signs[signs == 0] = 1
    return signs.reshape(T * k)


def random_pair_signs(n: int, seed: int, key: str) -> torch.Tensor:
    """[n] random ±1, seeded per (seed, key): a random but valid SVD sign convention
    (flipping u_i and v_i together leaves every task's SVD valid)."""
    g = torch.Generator().manual_seed(key_seed(seed, key))
    return torch.randint(0, 2, (n,), generator=g).float() * 2 - 1


def mda_components(taus: Sequence[torch.Tensor], k: int):
    """Full-SVD route: top-k SVD triplets of each task, canonical signs, concatenated:
    (U_cat d_out×K, S_cat K, V_cat d_in×K), float64 (float32 misses 1e-4 on near-ties)."""
    us, ss, vs = [], [], []
    for t in taus:
        u, s, vh = robust_svd(t.double(), full_matrices=False)
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
              basis: KeyBasis | None = None, flips: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """All intermediate quantities of Algorithm 1 for one matrix key (``basis``: the suite's
    shared ``KeyBasis`` of this key, used on large keys when it is for this k).

    ``flips`` ([K] of ±1) multiplies the pairs (u_i, v_i) after the canonical signs: another
    valid sign convention. ``u_etf`` is the ``left_vectors`` reading's aligned basis.
    """
    if use_fast(taus[0].shape, exact):
        u_cat, s_cat, v_cat, u_perp, v_perp = _fast_align(taus, k, basis)
    else:
        u_cat, s_cat, v_cat = mda_components(taus, k)
        u_perp, v_perp = polar(u_cat), polar(v_cat)
    if flips is not None:
        f = flips.to(u_cat)
        u_cat, v_cat, u_perp, v_perp = u_cat * f, v_cat * f, u_perp * f, v_perp * f
    u_etf = etf_align(u_perp)
    return {"u_cat": u_cat, "s_cat": s_cat, "v_cat": v_cat,
            "u_perp": u_perp, "v_perp": v_perp, "u_etf": u_etf}


def component_weights(s_cat: torch.Tensor, n_tasks: int) -> torch.Tensor:
    """``components`` reading: [T, K] weights w_t with τt^etf = U⊥ diag(w_t) V⊥ᵀ.

    The K rank-one components E_i = u⊥_i v⊥_iᵀ are orthonormal (Frobenius); the ETF Gram
    operator maps them to M_i = sqrt(K/(K−1)) (E_i − Ē), Ē = (1/K) Σ E_j, and task t keeps
    its singular values: τt^etf = Σ_{i∈t} σ_i M_i
    = sqrt(K/(K−1)) U⊥ (S_t − (Σ_{i∈t} σ_i / K) I) V⊥ᵀ
    (S_t: S_cat with the other tasks' entries zeroed).
    """
    K = s_cat.numel()
    blocks = s_cat.reshape(n_tasks, K // n_tasks)
    own = torch.block_diag(*blocks) if n_tasks > 1 else blocks  # [T, K]: σ of task t in its block
    if K < 2:
        return own
    shift = blocks.sum(dim=1, keepdim=True) / K
    return math.sqrt(K / (K - 1)) * (own - shift)


def mda_task_vectors(taus: Sequence[torch.Tensor], k: int, etf: str = "components", exact: bool = False,
                     basis: KeyBasis | None = None, flips: torch.Tensor | None = None) -> torch.Tensor:
    """[T, d_out, d_in]: the ETF-aligned task vectors τt^etf of one matrix key (their sum is τm)."""
    a = mda_align(taus, k, exact, basis, flips)
    n = len(taus)
    if etf == "components":
        w = component_weights(a["s_cat"], n)
        return torch.einsum("ik,tk,jk->tij", a["u_perp"], w, a["v_perp"]).float()
    us, v = a["u_etf"] * a["s_cat"], a["v_perp"]
    return torch.stack([us[:, t * k:(t + 1) * k] @ v[:, t * k:(t + 1) * k].T for t in range(n)]).float()


def mda_merge(taus: Sequence[torch.Tensor], k: int, etf: str = "components", exact: bool = False,
              basis: KeyBasis | None = None, flips: torch.Tensor | None = None) -> torch.Tensor:
    """τm of one matrix key: Σt τt^etf, without forming the T pieces."""
    a = mda_align(taus, k, exact, basis, flips)
    if etf == "components":
        s = a["s_cat"]
        scale = math.sqrt(s.numel() / (s.numel() - 1)) if s.numel() > 1 else 1.0
        return (scale * (a["u_perp"] * (s - s.mean())) @ a["v_perp"].T).float()
    return ((a["u_etf"] * a["s_cat"]) @ a["v_perp"].T).float()


def mda_delta_etf(taus: Sequence[torch.Tensor], k: int, exact: bool = False,
                  etf: str = "components") -> dict[str, float]:
    """ΔETF of MDA's K component directions before alignment, after orthogonalisation, after
    ETF alignment. ``components``: the rank-one matrices u_i v_iᵀ (Gram (UᵀU)⊙(VᵀV), sign
    invariant); ``left_vectors``: the left singular vectors."""
    a = mda_align(taus, k, exact)
    if etf == "components":
        u, v = a["u_cat"].double(), a["v_cat"].double()
        before = delta_etf_gram((u.T @ u) * (v.T @ v))
        K = u.shape[1]
        orthogonal = delta_etf_gram(torch.eye(K, dtype=torch.float64))
        # M_i = sqrt(K/(K−1)) (E_i − Ē) with orthonormal E_i: Gram = the ETF Gram, ΔETF = 0
        up, vp = a["u_perp"].double(), a["v_perp"].double()
        e_gram = (up.T @ up) * (vp.T @ vp)
        centre = torch.eye(K, dtype=torch.float64) - 1.0 / K
        after = delta_etf_gram(centre @ e_gram @ centre)
    else:
        before, orthogonal, after = (delta_etf(a[n]) for n in ("u_cat", "u_perp", "u_etf"))
    return {"before": before, "orthogonal": orthogonal, "after": after, "K": int(a["u_cat"].shape[1])}


ETF_READINGS = ("components", "left_vectors")
#: components per task as a fraction of d_out (None: 1/T); MDA AM declares it too
K_FRACTION = Param("k_fraction", None, optional(Number(low=0, high=1, low_open=True)))


class Mda(MergeMethod):
    """MDA TA: per-task top-k subspaces → shared basis → simplex-ETF alignment → sum.

    ``etf``: which K directions the ETF Gram operator aligns — ``components`` (default, the
    rank-one components u⊥_i v⊥_iᵀ: sign invariant) or ``left_vectors`` (the left singular
    vectors u⊥_i; depends on the SVD sign convention, fixed by the canonical signs).
    ``sign_seed``: flip the pairs (u_i, v_i) at random (seeded per key) after the canonical
    signs, to measure the sign dependence (docs/mda.md, "Sign convention").
    """

    name = "mda"
    display_name = "MDA (TA)"
    alpha_grid = "svd"  # see docs/mda.md ("α grid")
    parameters = (
        K_FRACTION,
        Param("exact", False, Flag()),
        Param("etf", "components", Choice(ETF_READINGS)),
        Param("sign_seed", None, optional(Number(integer=True))),
    )
    shared_basis = True

    def flips(self, key: str, n_components: int) -> torch.Tensor | None:
        seed = self.params["sign_seed"]
        return None if seed is None else random_pair_signs(n_components, seed, key)

    def merge_key(self, taus: Sequence[torch.Tensor], info: KeyInfo) -> torch.Tensor:
        shape = taus[0].shape
        if not info.is_matrix or len(shape) != 2 or min(shape) < len(taus):
            return vector_mean(taus)
        lora_rank = info.lora_rank if info.regime == "lora" else None
        k = effective_k(shape[0], shape[1], len(taus), self.params["k_fraction"], lora_rank)
        return mda_merge(taus, k, self.params["etf"], self.params["exact"], info.basis,
                         self.flips(info.key, k * len(taus)))
