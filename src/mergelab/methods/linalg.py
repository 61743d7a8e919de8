"""Fast, exact-enough linear algebra shared by the SVD-family methods.

The public implementations of TSV-M, Iso-CTS and DC-Merge call a full
``torch.linalg.svd`` per task and per matrix and two more for the polar
factors. Two observations avoid most of that work (how much it buys on a
given machine is measured by benchmarks/bench_merge.py, see docs/benchmarks.md):

* only the top ``k = r // T`` singular triplets of each task are used. We get
  them from the float64 Gram matrix of the smaller side: a float32 ``eigh``
  gives a basis of the top ``b = 2k + 8`` eigenvectors, ``refine`` (3) block
  power steps with the float64 Gram remove the float32 error (each step divides
  it by about λ(b+1)/λk), and a float64 Rayleigh–Ritz step on the block gives
  the triplets. Float32 alone is not enough: the polar factor of the
  concatenated bases amplifies subspace errors by its condition number (tests
  and the benchmark measure ~1e-4 with a pure-f32 Gram, ~1e-7 with this path).
  ``exact=True`` (or a small matrix, or k > r/2) uses a full float64 ``eigh``,
  with a float64 SVD fallback when the Gram squares the condition number
  beyond what float64 resolves.
* ``polar(X) = X (XᵀX)^{-1/2}``. Every method only needs ``polar(X)`` applied
  to small matrices and ``polar(X)ᵀ X = (XᵀX)^{1/2}``; both come from one
  float64 ``eigh`` of the c×c Gram of X (c = Σ k). Zero-padding columns (DC-Merge,
  TSV-M when T·k < r) are left out: the padded columns of the spec's polar
  factor only ever multiply zero rows/columns, so the result is the same.
  A genuinely rank-deficient X (two identical tasks) has no unique polar
  factor; then we fall back to the SVD route of the spec.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

F64 = torch.float64
F32 = torch.float32


def robust_svd(X: torch.Tensor, full_matrices: bool = False):
    """``torch.linalg.svd`` that does not give up: LAPACK's divide-and-conquer SVD can
    fail to converge in float32 on some matrices (seen on ViT-B-32 ``out_proj``
    Iso-CTS blocks with one thread). Then the same SVD is done in float64 and the
    factors are returned in the input dtype."""
    m, n = X.shape[-2:]
    if m < n and m >= FAST_MIN_R and not full_matrices:
        # LAPACK's SVD of a wide matrix is about twice as slow as that of its transpose
        # (768×3072: 0.64 s vs 0.31 s on one core); small matrices keep the default
        # orientation, so the small-model results are bit-identical to before
        V, S, Uh = robust_svd(X.mT)
        return Uh.mT, S, V.mT
    try:
        return torch.linalg.svd(X, full_matrices=full_matrices)
    except torch.linalg.LinAlgError as err:
        if X.dtype == F64:
            raise torch.linalg.LinAlgError(f"SVD of a {tuple(X.shape)} float64 matrix did not "
                                           f"converge: {err}") from err
        U, S, Vh = torch.linalg.svd(X.to(F64), full_matrices=full_matrices)
        return U.to(X.dtype), S.to(X.dtype), Vh.to(X.dtype)


def _desc(w: torch.Tensor, Q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k eigenpairs (descending) of an ascending ``eigh`` result."""
    return w[-k:].flip(0), Q[:, -k:].flip(1)


def _svd_exact(A: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    U, S, Vh = robust_svd(A.to(F64), full_matrices=False)
    return U[:, :k], S[:k], Vh[:k].T


def top_svd(A: torch.Tensor, k: int, *, exact: bool = False,
            oversample: int | None = None, refine: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k singular triplets of a 2-D tensor: ``A ≈ U diag(S) Vᵀ`` (float64 results).

    U: (m, k) orthonormal columns, S: (k,) descending, V: (n, k).
    """
    m, n = A.shape
    r = min(m, n)
    k = int(k)
    if k <= 0:
        z = A.new_zeros((0,), dtype=F64)
        return A.new_zeros((m, 0), dtype=F64), z, A.new_zeros((n, 0), dtype=F64)
    if k > r:
        raise ValueError(f"top_svd: k={k} > min(shape)={r}")
    if m < n:  # work on the tall orientation: the Gram is r×r
        V, S, U = top_svd(A.T, k, exact=exact, oversample=oversample, refine=refine)
        return U, S, V
    if r <= 64:
        return _svd_exact(A, k)
    if exact or r <= 256 or 2 * k > r:
        A64 = A.to(F64)
        w, Q = torch.linalg.eigh(A64.T @ A64)
        w, V = _desc(w, Q, k)
        S = w.clamp_min(0).sqrt()
        # the Gram squares the condition number: below ~1e-7·σ1 float64 loses digits
        if S[-1] <= 1e-7 * S[0]:
            return _svd_exact(A, k)
        return (A64 @ V) / S, S, V
    # fast path: a float32 eigh of the float64 Gram gives a basis of the top
    # k + p eigenvectors; `refine` block power steps with the float64 Gram remove
    # the float32 error (each divides it by about λ(b+1)/λk), then a float64
    # Rayleigh–Ritz step on the block gives the triplets.
    p = oversample if oversample is not None else k + 8
    b = min(r, k + p)
    A64 = A.to(F64)
    G = A64.T @ A64
    _, Q = torch.linalg.eigh(G.to(F32))
    Q = Q[:, -b:].to(F64)
    for _ in range(refine):
        Q, _ = torch.linalg.qr(G @ Q)
    if refine == 0:
        Q, _ = torch.linalg.qr(Q)
    w, Z = torch.linalg.eigh(Q.T @ (G @ Q))
    w, Z = _desc(w, Z, k)
    S = w.clamp_min(0).sqrt()
    if S[-1] <= 1e-7 * S[0]:
        return _svd_exact(A, k)
    V = Q @ Z
    return (A64 @ V) / S, S, V


# -- fast path for large matrices (float32 work, float64 only for small problems) ------------
#
# Used by TSV-M, Iso-CTS and DC-Merge when min(shape) >= FAST_MIN_R (the ViT
# matrices); smaller keys keep the exact float64 routes above and below.
#
# Top-k of every task at once (A: [T, m, n], tall orientation n <= m), with a
# block of b = 2k columns:
#   1. `g_iters` block power steps on the float32 Gram G = AᵀA (n×n, cheap:
#      n²b per step, QR of n×b): each step divides the error of direction i≤k
#      by (σ_i/σ_{b+1})²; float32 limits the result to ~eps·σ1²/σ_i²;
#   2. `a_iters` two-sided steps with A itself (Z ← orth(Aᵀ orth(A Z))), which
#      remove that floor (the float32 rounding is now ~eps·σ1/σ_i);
#   3. Rayleigh–Ritz: Q = orth(A Z), B = QᵀA (b×n), float64 eigh of B Bᵀ (b×b).
# The benchmark's spectra decay like i⁻¹ (1 % gap at the cut); p = k, 6 + 1
# steps give 1e-5 – 3e-5 relative error of τm against the float32 full-SVD code
# (8 + 1: 0.8e-5 – 1.6e-5; 5 + 1: 3e-5 – 6e-5; docs/benchmarks.md). A task of numerical rank < k, or a block too large to
# pay off, falls back to the exact route.

FAST_MIN_R = 384
G_ITERS = 6
A_ITERS = 1


def _orth(Y: torch.Tensor) -> torch.Tensor:
    return torch.linalg.qr(Y).Q


def top_svd_batched(A: torch.Tensor, k: int, *, exact: bool = False, block: int | None = None,
                    g_iters: int = G_ITERS, a_iters: int = A_ITERS, seed: int = 0,
                    lap: Callable[[str], None] | None = None):
    """Top-k triplets of every A[t] (A: [T, m, n] float32).

    Returns U [T, m, k] (float32), S [T, k] (float64, descending), V [T, n, k] (float32).
    ``lap(stage)``, if given, is called after each stage of the power-step route ("gram",
    "gram steps", "two-sided step", "Rayleigh–Ritz"; benchmarks/profile_stages.py times them).
    """
    T, m, n = A.shape
    if m < n:
        V, S, U = top_svd_batched(A.mT, k, exact=exact, block=block, g_iters=g_iters,
                                  a_iters=a_iters, seed=seed, lap=lap)
        return U, S, V
    mark = lap or (lambda stage: None)
    A = A.to(F32)
    b = min(n, block if block is not None else 2 * k)
    if exact or n < FAST_MIN_R or b > 0.6 * n or k == 0:
        return _exact_batched(A, k)
    g = torch.Generator(device=A.device).manual_seed(seed)
    Z = torch.randn((T, n, b), generator=g, device=A.device, dtype=F32)
    # bmm with contiguous operands is faster. Aᵀ first: for a wide input (A = its transposed
    # view) Aᵀ is already contiguous and only A is copied.
    At = A.mT.contiguous()
    A = A.contiguous()
    if g_iters:
        G = At @ A
        mark("gram")
        for _ in range(g_iters):
            Z = _orth(G @ Z)
        del G
        mark("gram steps")
    for _ in range(a_iters):
        Z = _orth(At @ _orth(A @ Z))
    mark("two-sided step")
    Q = _orth(A @ Z)
    B = (At @ Q).mT.to(F64)                         # [T, b, n] = QᵀA
    del At
    w, W = torch.linalg.eigh(B @ B.mT)
    w, W = w[:, -k:].flip(1), W[:, :, -k:].flip(2)
    S = w.clamp_min(0).sqrt()
    if bool((S[:, -1] <= 1e-6 * S[:, 0]).any()):   # numerically rank-deficient task
        return _exact_batched(A, k)
    U = Q @ W.to(F32)
    V = ((B.mT @ W) / S[:, None, :]).to(F32)
    mark("Rayleigh–Ritz")
    return U, S, V


def _exact_batched(A: torch.Tensor, k: int):
    Us, Ss, Vs = zip(*(top_svd(a, k, exact=True) for a in A))
    return (torch.stack(Us).to(F32), torch.stack(Ss), torch.stack(Vs).to(F32))


class FastPolar:
    """Explicit polar factor ``P`` (p×c, float32) of X (p×c) and ``half = PᵀX = (XᵀX)^{1/2}``
    (c×c, float64).

    A tall, well-conditioned X (p ≥ 2c: the long side of an MLP matrix) goes
    through a float32 ``eigh`` of its c×c Gram; a nearly square X (c close to
    p: the 768 side, where Tk = r) is ill-conditioned (κ up to ~1e4 here), and
    there a float32 SVD of X — what the public code does for every polar — is
    both cheaper than a float64 ``eigh`` and accurate enough.
    """

    def __init__(self, X: torch.Tensor, *, min_ratio: float = 1e-3):
        X = X.to(F32)
        p, c = X.shape
        if p >= 2 * c:
            w, Q = torch.linalg.eigh(X.T @ X)
            if float(w[0]) > min_ratio * float(w[-1]):
                self.P = X @ ((Q * w.rsqrt()) @ Q.T)
                self.half = ((Q * w.sqrt()) @ Q.T).to(F64)
                return
        Px, s, Hh = robust_svd(X, full_matrices=False)
        self.P = Px @ Hh
        self.half = (Hh.T.to(F64) * s.to(F64)) @ Hh.to(F64)


def cat_tasks(X: torch.Tensor) -> torch.Tensor:
    """[T, p, k] -> p × (T·k), task blocks side by side."""
    T, p, k = X.shape
    return X.permute(1, 0, 2).reshape(p, T * k)


@dataclass(frozen=True)
class KeyBasis:
    """What TSV-M, DC-Merge, MDA and MDA AM all start from on a large key: the top-k
    triplets of every task and the polar factors of their concatenations.

    U [T, m, k], V [T, n, k] (float32), S [T, k] (float64, descending), PU = polar(U_cat)
    (m × Tk) and PV = polar(V_cat) (n × Tk), float32. Computed once per (regime, suite) by
    the ``decompose`` rule (``mergelab.basis``) and shared by those methods' merges, or by
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
        return (self.PU.T @ cat_tasks(self.U)).to(F64)

    def half_v(self) -> torch.Tensor:
        """polar(V_cat)ᵀ V_cat = (V_catᵀ V_cat)^{1/2} (Tk × Tk, float64)."""
        return (self.PV.T @ cat_tasks(self.V)).to(F64)


def compute_key_basis(taus, k: int) -> KeyBasis:
    """``KeyBasis`` of one large key: batched top-k (``top_svd_batched``) and ``FastPolar``."""
    U, S, V = top_svd_batched(torch.stack([t.float() for t in taus]), k)
    return KeyBasis(U, S, V, FastPolar(cat_tasks(U)).P, FastPolar(cat_tasks(V)).P)


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
        X64 = X.to(F64)
        w, Q = torch.linalg.eigh(X64.T @ X64)
        self.base = X64
        if w[0] <= cond * w[-1]:
            # rank-deficient: the polar factor is not unique; use the spec's SVD route
            P, s, Qh = robust_svd(X64, full_matrices=False)
            self.base = P @ Qh
            self.W = torch.eye(self.c, dtype=F64, device=X.device)
            self.half = Qh.T @ (s[:, None] * Qh)
            return
        self.W = (Q * w.rsqrt()) @ Q.T
        self.half = (Q * w.sqrt()) @ Q.T

    def matrix(self) -> torch.Tensor:
        return self.base.to(F64) @ self.W


def assemble(pu: GramPolar, core: torch.Tensor, pv: GramPolar) -> torch.Tensor:
    """polar(X_U) · core · polar(X_V)ᵀ as a float32 (m×n) tensor."""
    mid = (pu.W @ core @ pv.W)
    m, n = pu.base.shape[0], pv.base.shape[0]
    bu, bv = pu.base, pv.base  # float64: W can be large when X is ill-conditioned
    if m >= n:
        return (bu @ (mid @ bv.T)).to(F32)
    return ((bu @ mid) @ bv.T).to(F32)


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


def sign_consensus_mean(stack: torch.Tensor) -> torch.Tensor:
    """TIES-style merge over dim 0 as in DC-Merge: elected sign = sign of the sum;
    mean over the entries whose sign equals it; 0 where the sum is 0."""
    summed = stack.sum(dim=0)
    elected = torch.sign(summed)
    agree = torch.sign(stack) == elected.unsqueeze(0)
    count = agree.sum(dim=0).clamp(min=1)
    res = (stack * agree).sum(dim=0) / count
    return torch.where(summed == 0, torch.zeros_like(res), res)


def keep_top_count(M: torch.Tensor, count: int) -> torch.Tensor:
    """Keep the ``count`` largest |entries| of M (ties at the threshold kept), zero the rest."""
    flat = M.abs().flatten()
    if count >= flat.numel():
        return M
    thr = torch.topk(flat, count).values.min()
    return M * (M.abs() >= thr)


def block_diag_mask(n: int, block: int, dtype=F64, device=None) -> torch.Tensor:
    """n×n mask of consecutive diagonal blocks of size ``block`` (last one truncated)."""
    idx = torch.arange(n, device=device) // max(1, int(block))
    return (idx[:, None] == idx[None, :]).to(dtype)
