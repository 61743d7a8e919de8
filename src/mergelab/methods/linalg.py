"""Exact linear algebra shared by the SVD-family methods.

The public implementations of TSV-M, Iso-CTS and DC-Merge call a full float32
``torch.linalg.svd`` per task and per matrix and two more for the polar factors.
Here every route is exact in the float64 sense (agrees with a float64 full-SVD
implementation of the method up to the conditioning of the problem); speed comes
from doing less work, not from approximating:

* only the top ``k = r // T`` singular triplets of each task are used. They come
  from a float64 ``eigh`` of the Gram matrix of the smaller side, with an
  a-posteriori certificate (residual over gap, ``certified_top_svd``) and a float64
  SVD where the certificate fails. On large keys the suite computes them once for all
  the methods that use them (``KeyBasis``, ``mergelab.basis``).
* ``polar(X) = X (XᵀX)^{-1/2}``. Every method only needs ``polar(X)`` applied
  to small matrices and ``polar(X)ᵀ X = (XᵀX)^{1/2}``; both come from one
  float64 ``eigh`` of the c×c Gram of X (c = Σ k). Zero-padding columns (DC-Merge,
  TSV-M when T·k < r) are left out: the padded columns of the spec's polar
  factor only ever multiply zero rows/columns, so the result is the same.
  A nearly rank-deficient X (κ > 1e5, where the Gram would lose digits; two
  identical tasks) falls back to the SVD route of the spec.

The per-task rank k, the choice of route by key size (``use_fast``) and the per-task
triplets (``task_triplets``) are here too, so every SVD-family method and the shared
basis (``mergelab.basis``) take them from one place.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from ..lazy import torch

if TYPE_CHECKING:
    from .base import KeyInfo


def robust_svd(X: torch.Tensor, full_matrices: bool = False):
    """``torch.linalg.svd`` that does not give up: where LAPACK's divide-and-conquer SVD
    fails to converge in float32 (docs/benchmarks.md, "robust_svd"), the same SVD is done
    in float64 and the factors are returned in the input dtype."""
    m, n = X.shape[-2:]
    if m < n and m >= FAST_MIN_R and not full_matrices:
        # LAPACK is slower on a wide matrix than on its transpose (docs/benchmarks.md);
        # small matrices keep the default orientation, so their results do not change
        V, S, Uh = robust_svd(X.mT)
        return Uh.mT, S, V.mT
    try:
        return torch.linalg.svd(X, full_matrices=full_matrices)
    except torch.linalg.LinAlgError as err:
        if X.dtype == torch.float64:
            raise torch.linalg.LinAlgError(f"SVD of a {tuple(X.shape)} float64 matrix did not "
                                           f"converge: {err}") from err
        U, S, Vh = torch.linalg.svd(X.to(torch.float64), full_matrices=full_matrices)
        return U.to(X.dtype), S.to(X.dtype), Vh.to(X.dtype)


def _desc(w: torch.Tensor, Q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k eigenpairs (descending) of an ascending ``eigh`` result."""
    return w[-k:].flip(0), Q[:, -k:].flip(1)


def _svd_exact(A: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    U, S, Vh = robust_svd(A.to(torch.float64), full_matrices=False)
    return U[:, :k], S[:k], Vh[:k].T


def top_svd(A: torch.Tensor, k: int, *, exact: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k singular triplets of a 2-D tensor: ``A ≈ U diag(S) Vᵀ`` (float64 results).

    U: (m, k) orthonormal columns, S: (k,) descending, V: (n, k). Exact on every size
    (``exact`` is kept for the callers' signature): r <= 64 a float64 SVD, r <= 256 the
    float64 Gram ``eigh`` (SVD below 1e-7·σ1), larger ``certified_top_svd``.
    """
    m, n = A.shape
    r = min(m, n)
    k = int(k)
    if k <= 0:
        z = A.new_zeros((0,), dtype=torch.float64)
        return A.new_zeros((m, 0), dtype=torch.float64), z, A.new_zeros((n, 0), dtype=torch.float64)
    if k > r:
        raise ValueError(f"top_svd: k={k} > min(shape)={r}")
    if m < n:  # work on the tall orientation: the Gram is r×r
        V, S, U = top_svd(A.T, k, exact=exact)
        return U, S, V
    if r <= 64:
        return _svd_exact(A, k)
    if r <= 256:
        A64 = A.to(torch.float64)
        w, Q = torch.linalg.eigh(A64.T @ A64)
        w, V = _desc(w, Q, k)
        S = w.clamp_min(0).sqrt()
        # the Gram squares the condition number: below ~1e-7·σ1 float64 loses digits
        if S[-1] <= 1e-7 * S[0]:
            return _svd_exact(A, k)
        return (A64 @ V) / S, S, V
    U, S, V, _ = certified_top_svd(A, k)
    return U, S, V


# -- exact top-k of large matrices, with a certificate ------------------------------------
#
# Large keys (min side >= FAST_MIN_R: every ViT matrix) take the top-k triplets from a
# float64 eigendecomposition of the Gram matrix of the smaller side, which costs about
# one float32 SVD of the matrix (less on tall/wide ones). The Gram squares the condition
# number, so every result carries an a-posteriori certificate: for each kept pair the
# residual ‖Aᵀ(A v) − λ v‖ over its distance to every other eigenvalue (Davis–Kahan: a
# bound on how far v has turned; for i = k the distance to λ_{k+1} is the gap at the cut)
# and over λ itself (relative error of σ²). A task whose bound exceeds CERT_TOL (a gap
# or a σ too small for the Gram in float64: numerical rank below k, near-ties) is
# redone with a float64 LAPACK SVD of the matrix, whose error is the square root of that.

FAST_MIN_R = 384
#: largest certified rotation of a kept singular vector (and relative error of σ²) that
#: the Gram route may return; docs/benchmarks.md ("exact route") measures its effect
CERT_TOL = 1e-7


@dataclass
class Certificate:
    """What ``certified_top_svd`` did for one matrix: ``route`` "gram-eigh" or "svd"
    (the fallback), and the bound of the Gram route (inf when it was not attempted)."""

    route: str
    bound: float


def gram_bound(G: torch.Tensor, lam: torch.Tensor, V: torch.Tensor, floor: float, *,
               per_vector: bool = True) -> float:
    """Certificate of the Gram route for the kept eigenpairs of G (λ: all n eigenvalues,
    descending; V: the k kept eigenvectors): max over kept i of residual/gap_i and
    residual/λ_i, residual = max(‖G v_i − λ_i v_i‖, ``floor``: the rounding of forming G
    and of the eigensolver, below which no residual is known). ``per_vector``: gap_i is
    λ_i's distance to every other eigenvalue (each vector must be right: DC-Merge, MDA);
    otherwise only the gap at the cut counts (only the subspace matters: Iso-CTS)."""
    k = V.shape[1]
    S2 = lam[:k]
    res = (G @ V - V * S2).norm(dim=0).clamp_min(floor)
    nxt = lam[k] if lam.numel() > k else lam.new_tensor(-float("inf"))
    if per_vector:
        below = S2 - torch.cat([S2[1:], nxt.reshape(1)])                      # λ_i − λ_{i+1}
        above = torch.cat([S2.new_full((1,), float("inf")), below[:-1]])      # λ_{i−1} − λ_i
        gap = torch.minimum(below, above) - 2 * res
    else:
        res = res.norm().expand(k)        # the block residual bounds the subspace rotation
        gap = (S2[-1] - nxt - 2 * res).expand(k)
    inf = torch.full_like(res, float("inf"))
    rot = torch.where(gap > 0, res / gap.clamp_min(1e-300), inf)
    rel = torch.where(S2 > 0, res / S2.clamp_min(1e-300), inf)
    return float(torch.maximum(rot, rel).max())


def gram_floor(m: int, scale: float) -> float:
    """Rounding floor of a float64 Gram of m-long columns whose largest eigenvalue is at
    most ``scale`` (‖A‖²)."""
    return float(torch.finfo(torch.float64).eps) * m ** 0.5 * scale


def certified_top_eigh(G: torch.Tensor, k: int, floor: float, *, tol: float = CERT_TOL,
                       per_vector: bool = True):
    """Top-k eigenpairs (descending) of a float64 Gram G by ``eigh`` and their certificate
    bound; returns (λ_k, V, bound, ok)."""
    w, Q = torch.linalg.eigh(G)
    lam, V = w.flip(0), Q[:, -k:].flip(1)
    bound = gram_bound(G, lam, V, floor, per_vector=per_vector)
    return lam[:k], V, bound, bound <= tol


def certified_top_svd(A: torch.Tensor, k: int, *, tol: float = CERT_TOL, per_vector: bool = True
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Certificate]:
    """Top-k singular triplets of a 2-D tensor in float64 (U m×k, S k descending, V n×k)
    and the ``Certificate`` of how they were obtained (see the section comment)."""
    m, n = A.shape
    if m < n:
        V, S, U, cert = certified_top_svd(A.T, k, tol=tol, per_vector=per_vector)
        return U, S, V, cert
    A64 = A.to(torch.float64)
    if k == 0:
        return A64.new_zeros((m, 0)), A64.new_zeros((0,)), A64.new_zeros((n, 0)), Certificate("none", 0.0)
    G = A64.T @ A64
    lam, V, bound, ok = certified_top_eigh(G, k, gram_floor(m, float(G.diagonal().sum())),
                                           tol=tol, per_vector=per_vector)
    if ok:
        S = lam.sqrt()
        return (A64 @ V) / S, S, V, Certificate("gram-eigh", bound)
    U, S, V = _svd_exact(A64, k)
    return U, S, V, Certificate("svd", bound)


# -- per-task rank and route, shared by TSV-M, DC-Merge, Iso, MDA and the shared basis ---

def per_task_rank(info: "KeyInfo", r: int, T: int) -> int:
    """k = r // T triplets per task; in the LoRA regime at most the LoRA rank, since the
    dense ΔW = B·A has no more and the triplets beyond it are rounding noise."""
    k = r // T
    if info.regime == "lora" and info.lora_rank:
        k = min(k, int(info.lora_rank))
    return k


def use_fast(shape, exact: bool) -> bool:
    """Whether a key takes the ``KeyBasis`` route (large keys, unless ``exact`` asks for the
    per-task route; both are exact, this one can be shared across methods)."""
    return not exact and min(shape) >= FAST_MIN_R


def task_triplets(taus: Sequence[torch.Tensor], k: int, exact: bool = False):
    """Top-k triplets of every task by ``top_svd``: lists of U (m×k), S (k,), V (n×k)."""
    Us, Ss, Vs = [], [], []
    for t in taus:
        U, S, V = top_svd(t.float(), k, exact=exact)
        Us.append(U), Ss.append(S), Vs.append(V)
    return Us, Ss, Vs


def cat_tasks(X: torch.Tensor) -> torch.Tensor:
    """[T, p, k] -> p × (T·k), task blocks side by side."""
    T, p, k = X.shape
    return X.permute(1, 0, 2).reshape(p, T * k)


@dataclass(frozen=True)
class KeyBasis:
    """What TSV-M, DC-Merge, MDA and MDA AM all start from on a large key: the top-k
    triplets of every task and the polar factors of their concatenations.

    U [T, m, k], V [T, n, k] (float32), S [T, k] (float64, descending), PU = polar(U_cat)
    (m × Tk) and PV = polar(V_cat) (n × Tk), float32; all computed in float64
    (``compute_key_basis``: exact, certified). Computed once per (regime, suite) by the
    ``decompose`` rule (``mergelab.basis``) and shared by those methods' merges, or by
    ``key_basis`` inside a method when no shared one is given.
    """

    U: torch.Tensor
    S: torch.Tensor
    V: torch.Tensor
    PU: torch.Tensor
    PV: torch.Tensor

    @property
    def k(self) -> int:
        return int(self.U.shape[2])

    @property
    def n_tasks(self) -> int:
        return int(self.U.shape[0])

    def matches(self, n_tasks: int, shape, k: int) -> bool:
        T, m, kk = self.U.shape
        return (T, kk, m, int(self.V.shape[1])) == (n_tasks, k, int(shape[0]), int(shape[1]))

    def half_u(self) -> torch.Tensor:
        """polar(U_cat)ᵀ U_cat = (U_catᵀ U_cat)^{1/2} (Tk × Tk, float64)."""
        return (self.PU.T @ cat_tasks(self.U)).to(torch.float64)

    def half_v(self) -> torch.Tensor:
        """polar(V_cat)ᵀ V_cat = (V_catᵀ V_cat)^{1/2} (Tk × Tk, float64)."""
        return (self.PV.T @ cat_tasks(self.V)).to(torch.float64)


def compute_key_basis(taus, k: int, stats: dict | None = None) -> KeyBasis:
    """``KeyBasis`` of one large key, exactly: every task's top-k by ``certified_top_svd``
    and the polar factors of the concatenations by ``GramPolar`` (float64 throughout, stored
    in float32). ``stats``, if given, is updated with the routes taken (``add_route``)."""
    Us, Ss, Vs = [], [], []
    for t in taus:
        U, S, V, cert = certified_top_svd(t, k)
        Us.append(U), Ss.append(S), Vs.append(V)
        add_route(stats, cert)
    PU = GramPolar(torch.cat(Us, dim=1)).matrix()
    PV = GramPolar(torch.cat(Vs, dim=1)).matrix()
    return KeyBasis(torch.stack(Us).to(torch.float32), torch.stack(Ss), torch.stack(Vs).to(torch.float32),
                    PU.to(torch.float32), PV.to(torch.float32))


def add_route(stats: dict | None, cert: Certificate) -> None:
    """Count a ``Certificate`` in ``stats``: tasks per route and the largest Gram bound seen."""
    if stats is None:
        return
    routes = stats.setdefault("routes", {})
    routes[cert.route] = routes.get(cert.route, 0) + 1
    if cert.bound != float("inf"):
        stats["max_gram_bound"] = max(stats.get("max_gram_bound", 0.0), cert.bound)


def key_basis(taus, k: int, shared: KeyBasis | None = None) -> KeyBasis:
    """The shared basis of this key when one was given and it is for these tasks, this
    shape and this k; otherwise computed here (the result is the same either way)."""
    if shared is not None and shared.matches(len(taus), taus[0].shape, k):
        dev = taus[0].device
        return KeyBasis(*(t.to(dev) for t in (shared.U, shared.S, shared.V, shared.PU, shared.PV)))
    return compute_key_basis(taus, k)


class GramPolar:
    """``polar(X)`` of a tall X (m×c) represented as ``base @ W``.

    Attributes: ``base`` (m×c), ``W`` (c×c, float64) with polar(X) = base @ W, and
    ``half`` = polar(X)ᵀ X = (XᵀX)^{1/2} (c×c, float64).
    """

    def __init__(self, X: torch.Tensor, *, cond: float = 1e-10):
        self.c = X.shape[1]
        X64 = X.to(torch.float64)
        w, Q = torch.linalg.eigh(X64.T @ X64)
        self.base = X64
        if w[0] <= cond * w[-1]:
            # rank-deficient: the polar factor is not unique; use the spec's SVD route
            P, s, Qh = robust_svd(X64, full_matrices=False)
            self.base = P @ Qh
            self.W = torch.eye(self.c, dtype=torch.float64, device=X.device)
            self._half, self.singular_values = Qh.T @ (s[:, None] * Qh), s
            return
        self.W = (Q * w.rsqrt()) @ Q.T
        self._half, self._Q, self._w = None, Q, w
        self.singular_values = w.sqrt()      # of X, ascending
    @property
    def half(self) -> torch.Tensor:
        """(XᵀX)^{1/2}, formed on first use (Iso-C and the shared basis never need it)."""
        if self._half is None:
            self._half = (self._Q * self._w.sqrt()) @ self._Q.T
        return self._half

    def matrix(self) -> torch.Tensor:
        return self.base.to(torch.float64) @ self.W


def assemble(pu: GramPolar, core: torch.Tensor, pv: GramPolar) -> torch.Tensor:
    """polar(X_U) · core · polar(X_V)ᵀ as a float32 (m×n) tensor."""
    mid = (pu.W @ core @ pv.W)
    m, n = pu.base.shape[0], pv.base.shape[0]
    bu, bv = pu.base, pv.base  # float64: W can be large when X is ill-conditioned
    if m >= n:
        return (bu @ (mid @ bv.T)).to(torch.float32)
    return ((bu @ mid) @ bv.T).to(torch.float32)


def smooth_energy(e: torch.Tensor, mode: str, rho: float) -> torch.Tensor:
    """DC-Merge energy smoothing of one task's top singular values (descending).

    "none": unchanged; "avg": every value set to the mean; "linear": weights
    linspace(ρ', 1, k) normalized to sum 1 times the total energy, with
    ρ' = min(ρ, e[0]/e[-1]). Both smoothings keep ``e.sum()``.
    """
    k = e.numel()
    if mode == "none" or k == 0:
        return e
    total = e.sum()
    if mode == "avg":
        return torch.full_like(e, float(total) / k)
    if mode == "linear":
        ratio = float(e[0] / e[-1]) if float(e[-1]) > 0 else float("inf")
        rp = min(float(rho), ratio)
        w = torch.linspace(rp, 1.0, k, dtype=e.dtype, device=e.device)
        return total * (w / w.sum())
    raise ValueError(f"unknown smoothing '{mode}'")


def block_diag_mask(n: int, block: int, dtype=None, device=None) -> torch.Tensor:
    """n×n mask of consecutive diagonal blocks of size ``block`` (last one truncated);
    ``dtype`` defaults to float64."""
    idx = torch.arange(n, device=device) // max(1, int(block))
    return (idx[:, None] == idx[None, :]).to(torch.float64 if dtype is None else dtype)
