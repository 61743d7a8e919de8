"""SVD-family methods (TSV-M, Iso-C, Iso-CTS, DC-Merge, KnOTS) against the spec.

The references below are written directly from methods.md with numpy float64
and full SVDs (the slow, obvious way); the methods use Gram/eigh shortcuts.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mergelab.methods import build, get_method
from mergelab.methods.base import KeyInfo, MergeContext, MethodConfigError, disjoint_mean, top_count_mask
from mergelab.methods.iso import iso_split
from mergelab.methods.linalg import GramPolar, block_diag_mask, smooth_energy, top_svd
from mergelab.taskvectors import DictSource

NAMES = ["tsv_m", "iso_c", "iso_cts", "dc_merge"]


def info(T, regime="full", rank=None, matrix=True):
    return KeyInfo(key="k", regime=regime, n_tasks=T, seed=1, is_matrix=matrix, lora_rank=rank)


def synth(m, n, seed, decay=1.0, rank=None):
    g = np.random.default_rng(seed)
    r = min(m, n) if rank is None else rank
    U, _ = np.linalg.qr(g.standard_normal((m, r)))
    V, _ = np.linalg.qr(g.standard_normal((n, r)))
    s = np.arange(1, r + 1, dtype=np.float64) ** -decay
    return torch.tensor(((U * s) @ V.T) * 1e-2, dtype=torch.float32)


def polar_np(A):
    P, _, Qh = np.linalg.svd(A, full_matrices=False)
    return P @ Qh


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.linalg.norm(a - b) / np.linalg.norm(b)


# -- numpy references written from methods.md -----------------------------------

def ref_tsv(taus, k=None):
    A = [t.double().numpy() for t in taus]
    T = len(A)
    m, n = A[0].shape
    r = min(m, n)
    k = r // T if k is None else k
    Ucat = np.zeros((m, r)); Vcat = np.zeros((r, n)); Scat = np.zeros(r)
    for t, a in enumerate(A):
        U, S, Vh = np.linalg.svd(a, full_matrices=False)
        Ucat[:, t * k:(t + 1) * k] = U[:, :k]
        Vcat[t * k:(t + 1) * k] = Vh[:k]
        Scat[t * k:(t + 1) * k] = S[:k]
    return polar_np(Ucat) @ np.diag(Scat) @ polar_np(Vcat)


def ref_iso_c(taus):
    U, S, Vh = np.linalg.svd(sum(t.double().numpy() for t in taus), full_matrices=False)
    return S.mean() * U @ Vh


def ref_iso_cts(taus, f=0.8):
    A = [t.double().numpy() for t in taus]
    T = len(A)
    m, n = A[0].shape
    r = min(m, n)
    c = int(r * f)
    c = r - round((r - c) / T) * T
    nt = (r - c) // T
    U, S, Vh = np.linalg.svd(sum(A), full_matrices=False)
    Uc, Sc, Vc = U[:, :c], S[:c], Vh[:c]
    Us, Ss, Vs = [], [], []
    for a in A:
        u, s, vh = np.linalg.svd(a - Uc @ Uc.T @ a, full_matrices=False)
        Us.append(u[:, :nt]); Ss.append(s[:nt]); Vs.append(vh[:nt])
    Ucat = np.concatenate(Us + [Uc], axis=1)
    Vcat = np.concatenate(Vs + [Vc], axis=0)
    s_bar = np.concatenate(Ss + [Sc]).mean()
    return s_bar * polar_np(Ucat) @ polar_np(Vcat)


def ref_dc(taus, sparsity=0.001, k=None, smoothing="none", rho=5.0, r_total=None):
    """methods.md pseudo-code with the zero-padded r×r cover basis."""
    A = [t.double().numpy() for t in taus]
    T = len(A)
    m, n = A[0].shape
    r = min(m, n)
    k = r // T if k is None else k
    Ucat = np.zeros((m, r)); Vcat = np.zeros((r, n)); Ts = []
    for t, a in enumerate(A):
        U, S, Vh = np.linalg.svd(a, full_matrices=False)
        e = S[:k].copy()
        if smoothing == "avg":
            e = np.full(k, e.sum() / k)
        elif smoothing == "linear":
            w = np.linspace(min(rho, e[0] / e[-1]), 1.0, k)
            e = e.sum() * w / w.sum()
        Ucat[:, t * k:(t + 1) * k] = U[:, :k]
        Vcat[t * k:(t + 1) * k] = Vh[:k]
        Ts.append(U[:, :k] @ np.diag(e) @ Vh[:k])
    Ucov, Vcov = polar_np(Ucat), polar_np(Vcat)
    nref = r if r_total is None else r_total
    Ms = []
    for Tt in Ts:
        M = Ucov.T @ Tt @ Vcov.T
        cnt = max(1, int(sparsity * nref * nref))
        thr = np.sort(np.abs(M).ravel())[::-1][cnt - 1]
        Ms.append(M * (np.abs(M) >= thr))
    Ms = np.stack(Ms)
    tot = Ms.sum(0)
    agree = np.sign(Ms) == np.sign(tot)
    Am = (Ms * agree).sum(0) / np.maximum(agree.sum(0), 1)
    Am[tot == 0] = 0
    mask = np.zeros((r, r))
    for t in range(T):
        mask[t * k:(t + 1) * k, t * k:(t + 1) * k] = 1
    return Ucov @ (Am * mask) @ Vcov


def ref_knots(taus, k=100.0):
    A = [t.double().numpy() for t in taus]
    n = A[0].shape[1]
    U, S, Vh = np.linalg.svd(np.concatenate(A, axis=1), full_matrices=False)
    keep = S > 1e-5
    U, S, Vh = U[:, keep], S[keep], Vh[keep]
    sV = np.stack([np.diag(S) @ Vh[:, t * n:(t + 1) * n] for t in range(len(A))])
    if k < 100:
        for t in range(len(A)):
            flat = np.abs(sV[t]).ravel()
            cnt = max(1, int(round(flat.size * k / 100)))
            thr = np.sort(flat)[::-1][cnt - 1]
            sV[t] = sV[t] * (np.abs(sV[t]) >= thr)
    tot = sV.sum(0)
    el = np.sign(tot)
    maj = np.sign(el.sum()) or 1.0
    el[el == 0] = maj
    agree = (np.sign(sV) == el) & (sV != 0)
    merged = (sV * agree).sum(0) / np.maximum(agree.sum(0), 1)
    return U @ merged


# -- generic contract ------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(24, 16), (16, 40)])
def test_shapes_dtype_finite_and_vector_keys(name, shape):
    taus = [synth(*shape, s) for s in range(3)]
    out = build(name).merge_key(taus, info(3))
    assert out.shape == shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    vecs = [torch.randn(7) for _ in range(3)]
    v = build(name).merge_key(vecs, info(3, matrix=False))
    assert torch.allclose(v, torch.stack(vecs).mean(0), atol=1e-6)


def test_registry_and_grids():
    for name in NAMES:
        assert get_method(name).alpha_grid == "svd"
    assert get_method("knots").regimes == ("lora",)
    with pytest.raises(MethodConfigError):
        build("dc_merge", smoothing="cubic")
    with pytest.raises(MethodConfigError):
        build("dc_merge", sparsity=0)
    with pytest.raises(MethodConfigError):
        build("iso_cts", common_fraction=1.5)
    with pytest.raises(MethodConfigError):
        build("knots", k=0)


def test_merge_through_source_is_streamed_per_key():
    taus = [{"a.weight": synth(20, 12, s), "a.bias": torch.randn(20)} for s in range(3)]
    ctx = MergeContext(regime="full", tasks=["x", "y", "z"])
    out = build("tsv_m").merge(DictSource(taus), ctx)
    assert set(out) == {"a.weight", "a.bias"}
    assert np.allclose(out["a.weight"].numpy(), ref_tsv([t["a.weight"] for t in taus]), atol=1e-6)


# -- linear algebra ----------------------------------------------------------------

@pytest.mark.parametrize("shape,k", [((40, 30), 5), ((300, 280), 60), ((280, 600), 40)])
def test_top_svd_matches_numpy(shape, k):
    A = synth(*shape, 3)
    U, S, V = top_svd(A, k)
    Ue, Se, Vhe = np.linalg.svd(A.double().numpy(), full_matrices=False)
    assert np.allclose(S.numpy(), Se[:k], rtol=1e-5)
    assert np.allclose(U.T @ U, np.eye(k), atol=1e-6) and np.allclose(V.T @ V, np.eye(k), atol=1e-6)
    trunc = (U * S) @ V.T
    assert rel(trunc, (Ue[:, :k] * Se[:k]) @ Vhe[:k]) < 1e-5


def test_gram_polar_is_the_polar_factor_and_handles_rank_deficiency():
    X = torch.tensor(np.random.default_rng(0).standard_normal((50, 12)))
    p = GramPolar(X)
    P = p.matrix().numpy()
    assert np.allclose(P, polar_np(X.numpy()), atol=1e-5)
    assert np.allclose(P.T @ X.numpy(), p.half.numpy(), atol=1e-5)
    # two identical blocks: no unique polar factor, but the result must stay orthonormal
    Q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((30, 5)))
    p2 = GramPolar(torch.tensor(np.concatenate([Q, Q], axis=1)))
    P2 = p2.matrix().numpy()
    assert np.allclose(P2.T @ P2, np.eye(10), atol=1e-8)


def test_smoothing_keeps_energy_and_linear_weights_decrease():
    e = torch.tensor([9.0, 5.0, 3.0, 2.0, 1.5], dtype=torch.float64)
    for mode in ("avg", "linear"):
        out = smooth_energy(e, mode, 5.0)
        assert torch.isclose(out.sum(), e.sum())
    avg = smooth_energy(e, "avg", 5.0)
    assert torch.allclose(avg, torch.full_like(e, e.mean().item()))
    lin = smooth_energy(e, "linear", 5.0)
    assert (lin[:-1] > lin[1:]).all()
    assert torch.isclose(lin[0] / lin[-1], torch.tensor(5.0, dtype=torch.float64))  # ρ' = min(5, 6) = 5
    lin2 = smooth_energy(e, "linear", 10.0)
    assert torch.isclose(lin2[0] / lin2[-1], torch.tensor(6.0, dtype=torch.float64))  # ρ' = e0/e-1 = 6
    steps = lin[:-1] - lin[1:]
    assert torch.allclose(steps, steps[0].expand_as(steps))  # linear


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0.01, 100.0), min_size=1, max_size=20), st.floats(1.0, 10.0))
def test_smoothing_property(vals, rho):
    e = torch.tensor(sorted(vals, reverse=True), dtype=torch.float64)
    for mode in ("avg", "linear"):
        out = smooth_energy(e, mode, rho)
        assert torch.isclose(out.sum(), e.sum(), rtol=1e-9)
        assert (out[:-1] >= out[1:] - 1e-12).all()
        assert out[0] / out[-1] <= min(rho, float(e[0] / e[-1])) + 1e-9


def test_sign_consensus_by_hand():
    stack = torch.tensor([[[1.0, -2.0, 0.0, 1.0]], [[3.0, 1.0, 0.0, -1.0]], [[-1.0, -1.0, 2.0, 0.0]]])
    # sums: 3, -2, 2, 0 -> means over agreeing: (1+3)/2, (-2-1)/2, 2, 0 (sum is 0)
    out = disjoint_mean(stack, zero_sum="zero")
    assert torch.allclose(out, torch.tensor([[2.0, -1.5, 2.0, 0.0]]))
    # TIES instead elects the tensor's majority sign (+: two of three sums are > 0) there
    out = disjoint_mean(stack)
    assert torch.allclose(out, torch.tensor([[2.0, -1.5, 2.0, 1.0]]))


def test_keep_top_count_and_block_mask():
    M = torch.tensor([[1.0, -5.0], [3.0, 2.0]])
    assert torch.equal(M * top_count_mask(M, 2), torch.tensor([[0.0, -5.0], [3.0, 0.0]]))
    mask = block_diag_mask(5, 2)
    expect = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 1, 0],
                           [0, 0, 1, 1, 0], [0, 0, 0, 0, 1]], dtype=mask.dtype)
    assert torch.equal(mask, expect)


# -- TSV-M ---------------------------------------------------------------------------

def test_tsv_single_task_full_rank_returns_the_task_vector():
    tau = synth(20, 14, 0)
    out = build("tsv_m").merge_key([tau], info(1))
    assert torch.allclose(out, tau, atol=1e-7)


@pytest.mark.parametrize("shape,T", [((24, 17), 3), ((300, 280), 4), ((270, 520), 3)])
def test_tsv_matches_spec_reference(shape, T):
    taus = [synth(*shape, s, decay=1.0) for s in range(T)]
    out = build("tsv_m").merge_key(taus, info(T))
    assert rel(out, ref_tsv(taus)) < 1e-5


def test_tsv_lora_uses_adapter_rank():
    taus = [synth(40, 40, s, rank=3) for s in range(4)]
    out = build("tsv_m").merge_key(taus, info(4, "lora", rank=3))
    assert rel(out, ref_tsv(taus, k=3)) < 1e-5


# -- Iso-C / Iso-CTS -------------------------------------------------------------------

def test_iso_c_flattens_the_spectrum_to_the_mean():
    taus = [synth(30, 20, s) for s in range(3)]
    out = build("iso_c").merge_key(taus, info(3))
    s_out = np.linalg.svd(out.double().numpy(), compute_uv=False)
    s_sum = np.linalg.svd(sum(t.double().numpy() for t in taus), compute_uv=False)
    assert np.allclose(s_out, s_sum.mean(), rtol=1e-5)
    assert rel(out, ref_iso_c(taus)) < 1e-5
    wide = [synth(12, 33, s) for s in range(2)]
    assert rel(build("iso_c").merge_key(wide, info(2)), ref_iso_c(wide)) < 1e-5


def test_iso_c_lora_keeps_the_rank_of_the_sum():
    taus = [synth(30, 30, s, rank=2) for s in range(3)]
    out = build("iso_c").merge_key(taus, info(3, "lora", rank=2))
    s_out = np.linalg.svd(out.double().numpy(), compute_uv=False)
    assert np.allclose(s_out[:6], s_out[0], rtol=1e-5) and s_out[6] < 1e-6 * s_out[0]


@pytest.mark.parametrize("r", [16, 50, 512, 768, 1000])
@pytest.mark.parametrize("T", [1, 3, 8, 14, 20])
def test_iso_split_divides(r, T):
    c, nt = iso_split(r, T, 0.8)
    assert (r - c) % T == 0 and nt == (r - c) // T and 0 <= c <= r
    assert abs(c - int(0.8 * r)) <= T  # only adjusted by less than one task's share


@pytest.mark.parametrize("shape,T", [((30, 20), 3), ((20, 36), 4), ((300, 270), 3)])
def test_iso_cts_matches_spec_reference(shape, T):
    taus = [synth(*shape, s) for s in range(T)]
    out = build("iso_cts").merge_key(taus, info(T))
    assert rel(out, ref_iso_cts(taus)) < 1e-5
    s_out = np.linalg.svd(out.double().numpy(), compute_uv=False)
    assert np.allclose(s_out, s_out[0], rtol=1e-5)  # isotropic


# -- DC-Merge -------------------------------------------------------------------------

def test_dc_single_task_dense_and_truncation():
    tau = synth(18, 12, 0)
    out = build("dc_merge", sparsity=1.0).merge_key([tau], info(1))
    assert torch.allclose(out, tau, atol=1e-6)  # T = 1: k = r, nothing dropped
    tau = synth(30, 30, 1)
    out = build("dc_merge", sparsity=1.0, smoothing="none").merge_key([tau], info(1, "lora", rank=5))
    U, S, Vh = np.linalg.svd(tau.double().numpy())
    assert rel(out, (U[:, :5] * S[:5]) @ Vh[:5]) < 1e-6


def test_dc_cover_basis_is_orthonormal():
    taus = [synth(40, 30, s) for s in range(3)]
    Us = [top_svd(t, 10)[0] for t in taus]
    P = GramPolar(torch.cat(Us, dim=1)).matrix().numpy()
    assert np.allclose(P.T @ P, np.eye(30), atol=1e-8)


@pytest.mark.parametrize("sparsity", [0.001, 0.05, 1.0])
@pytest.mark.parametrize("shape,T", [((30, 20), 3), ((22, 40), 6)])
def test_dc_full_matches_spec_pseudocode(sparsity, shape, T):
    taus = [synth(*shape, s) for s in range(T)]
    out = build("dc_merge", sparsity=sparsity).merge_key(taus, info(T))
    assert rel(out, ref_dc(taus, sparsity)) < 1e-5


def test_dc_fast_path_matches_reference():
    taus = [synth(300, 270, s) for s in range(3)]
    out = build("dc_merge", sparsity=0.01).merge_key(taus, info(3))
    assert rel(out, ref_dc(taus, 0.01)) < 1e-5


@pytest.mark.parametrize("smoothing", ["auto", "avg", "none"])
def test_dc_lora(smoothing):
    T, rank = 3, 4
    taus = [synth(32, 32, s, rank=rank) for s in range(T)]
    out = build("dc_merge", smoothing=smoothing, sparsity=0.05).merge_key(taus, info(T, "lora", rank=rank))
    mode = "linear" if smoothing == "auto" else smoothing
    exp = ref_dc(taus, 0.05, k=rank, smoothing=mode, r_total=T * rank)
    assert rel(out, exp) < 1e-5


def test_dc_mask_scale():
    taus = [synth(30, 24, s) for s in range(3)]
    # mask_scale >= T: the block covers all of A -> no masking
    full = build("dc_merge", sparsity=1.0, mask_scale=3.0).merge_key(taus, info(3))
    dense = build("dc_merge", sparsity=1.0, mask_scale=100.0).merge_key(taus, info(3))
    assert torch.allclose(full, dense)
    one = build("dc_merge", sparsity=1.0, mask_scale=1.0).merge_key(taus, info(3))
    assert rel(one, ref_dc(taus, 1.0)) < 1e-5
    assert not torch.allclose(one, full)


# -- KnOTS -----------------------------------------------------------------------------

def test_knots_single_task_returns_delta():
    d = synth(24, 24, 0, rank=4)
    ctx = MergeContext(regime="lora", tasks=["a"], lora_rank=4)
    out = build("knots", k=100).merge(DictSource([{"w": d}]), ctx)["w"]
    assert rel(out, d) < 1e-5
    out20 = build("knots").merge(DictSource([{"w": d}]), ctx)["w"]
    assert torch.isfinite(out20).all() and rel(out20, d) < 1


@pytest.mark.parametrize("k", [100.0, 20.0])
def test_knots_per_key_option_matches_reference(k):
    taus = [synth(24, 20, s, rank=4) for s in range(3)]
    out = build("knots", k=k, trim_scope="per_key").merge_key(taus, info(3, "lora", rank=4))
    assert rel(out, ref_knots(taus, k)) < 1e-4


def test_knots_dare_is_seeded():
    taus = [{"w": synth(16, 16, s, rank=2)} for s in range(2)]
    ctx = MergeContext(regime="lora", tasks=["a", "b"], lora_rank=2)
    a = build("knots", k=100, dare_p=0.1).merge(DictSource(taus), ctx)["w"]
    b = build("knots", k=100, dare_p=0.1).merge(DictSource(taus), ctx)["w"]
    assert torch.equal(a, b) and torch.isfinite(a).all()


def test_robust_svd_falls_back_to_float64_when_float32_does_not_converge(monkeypatch):
    """LAPACK's float32 SVD can fail to converge (seen on ViT-B-32 Iso-CTS blocks);
    robust_svd then redoes it in float64 and returns factors in the input dtype."""
    from mergelab.methods import linalg as L
    real_svd = torch.linalg.svd
    calls = []

    def flaky(X, full_matrices=True):
        calls.append(X.dtype)
        if X.dtype == torch.float32:
            raise torch.linalg.LinAlgError("linalg.svd: The algorithm failed to converge")
        return real_svd(X, full_matrices=full_matrices)

    monkeypatch.setattr(torch.linalg, "svd", flaky)
    X = torch.randn(40, 12, generator=torch.Generator().manual_seed(0))
    U, S, Vh = L.robust_svd(X)
    assert calls == [torch.float32, torch.float64]
    assert U.dtype == S.dtype == Vh.dtype == torch.float32
    assert torch.allclose((U * S) @ Vh, X, atol=1e-5)
    # a float64 failure is not hidden
    monkeypatch.setattr(torch.linalg, "svd", lambda X, full_matrices=True: (_ for _ in ()).throw(
        torch.linalg.LinAlgError("no convergence")))
    with pytest.raises(torch.linalg.LinAlgError, match="did not converge"):
        L.robust_svd(X.double())


def test_iso_cts_survives_a_float32_svd_failure(monkeypatch):
    from mergelab.methods import linalg as L
    real_svd = torch.linalg.svd

    def flaky(X, full_matrices=True):
        if X.dtype == torch.float32:
            raise torch.linalg.LinAlgError("linalg.svd: The algorithm failed to converge")
        return real_svd(X, full_matrices=full_matrices)

    g = torch.Generator().manual_seed(1)
    taus = [torch.randn(400, 400, generator=g) * 0.01 for _ in range(4)]
    info = KeyInfo(key="w", regime="full", n_tasks=4, seed=0, is_matrix=True)
    expected = build("iso_cts").merge_key(taus, info)
    monkeypatch.setattr(torch.linalg, "svd", flaky)
    got = build("iso_cts").merge_key(taus, info)
    assert torch.allclose(got, expected, atol=1e-4 * float(expected.abs().max()))
    assert L.FAST_MIN_R <= 400


def test_robust_svd_of_a_large_wide_matrix_goes_through_its_transpose():
    """Wide matrices of at least FAST_MIN_R rows are decomposed as their transpose (LAPACK
    is ~2x faster on the tall side); the factors have torch.linalg.svd's shapes and meaning."""
    from mergelab.methods import linalg as L
    X = torch.randn(L.FAST_MIN_R, L.FAST_MIN_R + 100, generator=torch.Generator().manual_seed(0))
    U, S, Vh = L.robust_svd(X)
    r = L.FAST_MIN_R
    assert U.shape == (r, r) and S.shape == (r,) and Vh.shape == (r, r + 100)
    assert torch.allclose((U * S) @ Vh, X, atol=1e-4)
    assert torch.allclose(U.T @ U, torch.eye(r), atol=1e-4)
    assert torch.allclose(Vh @ Vh.T, torch.eye(r), atol=1e-4)
    assert torch.allclose(S, torch.linalg.svdvals(X), rtol=1e-4)
    assert bool((S[:-1] >= S[1:]).all())
