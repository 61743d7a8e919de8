"""DARE, Consensus (TALL masks), WUDI and MDA."""
from __future__ import annotations

import pytest
import torch

from mergelab.methods import build, get_method
from mergelab.methods.base import KeyInfo, MergeContext, MethodConfigError
from mergelab.methods.basic import TaskArithmetic, Ties
from mergelab.methods.consensus import tall_mask
from mergelab.methods.mda import (Mda, _canonical_signs, delta_etf, effective_k, etf_gram, mda_align,
                                  mda_delta_etf, mda_task_vectors)
from mergelab.methods.wudi import Wudi, wudi_objective, wudi_optimize
from mergelab.taskvectors import DictSource

ATTN = "visual.transformer.resblocks.0.attn.in_proj_weight"


def _taus(n=4, shape=(12, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g) for _ in range(n)]


def _info(key="w", shape=(12, 8), n=4, seed=0, regime="full", lora_rank=None):
    return KeyInfo(key=key, regime=regime, n_tasks=n, seed=seed, is_matrix=len(shape) == 2,
                   lora_rank=lora_rank)


# ---------------------------------------------------------------- DARE

def test_dare_registered_and_defaults():
    assert get_method("dare").alpha_grid == "ta"
    m = build("dare")
    assert m.params["base"] == "task_arithmetic" and 0 < m.params["p"] < 1
    with pytest.raises(MethodConfigError):
        build("dare", p=1.0)
    with pytest.raises(MethodConfigError):
        build("dare", base="mean")


def test_dare_unbiased_in_expectation():
    taus = _taus(n=3, shape=(6, 5))
    m = build("dare", p=0.7)
    runs = torch.stack([m.merge_key(taus, _info(shape=(6, 5), n=3, seed=s)) for s in range(3000)])
    ta = TaskArithmetic().merge_key(taus, _info())
    err = (runs.mean(0) - ta).abs().max()
    # std of one run's entry ≈ |τ|·sqrt(p/(1−p))·sqrt(3) ≈ 2.6 → std of the mean ≈ 0.05
    assert err < 0.25, err
    # and one run really is sparse: about 70 % of each task's entries dropped
    one = m.merge_key([taus[0]], _info(shape=(6, 5), n=1, seed=1))
    assert 0.4 < (one == 0).float().mean() < 0.95


@pytest.mark.parametrize("base", ["task_arithmetic", "ties"])
def test_dare_p0_equals_base(base):
    taus = _taus()
    out = build("dare", p=0.0, base=base, k=30, trim_scope="per_key").merge_key(taus, _info())
    ref = (TaskArithmetic() if base == "task_arithmetic"
           else Ties(k=30, trim_scope="per_key")).merge_key(taus, _info())
    assert torch.equal(out, ref)


def test_dare_deterministic_per_key_seed():
    taus = _taus()
    m = build("dare", p=0.9, base="ties", trim_scope="per_key")
    a = m.merge_key(taus, _info(seed=5))
    b = m.merge_key(taus, _info(seed=5))
    c = m.merge_key(taus, _info(seed=6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # through the whole-model path: same run seed -> same merge
    src = DictSource([{"a": t, "b": t[0]} for t in taus])
    o1 = m.merge(src, MergeContext(regime="full", tasks=list("wxyz"), seed=3))
    o2 = m.merge(src, MergeContext(regime="full", tasks=list("wxyz"), seed=3))
    assert all(torch.equal(o1[k], o2[k]) for k in o1)


# ---------------------------------------------------------------- Consensus

class FakeEvaluator:
    """Prefers, per task, the masked vector whose density is closest to a target."""

    def __init__(self, taus, preferred):
        self.taus, self.preferred, self.calls = taus, preferred, []

    def __call__(self, task_index, tau, alpha, split="val"):
        self.calls.append((task_index, alpha, split))
        assert split == "val" and alpha == 1.0
        lam = self.preferred[task_index]
        total = {k: sum(t[k] for t in self.taus) for k in tau}
        want = {k: total[k] * tall_mask(self.taus[task_index][k], total[k], lam) for k in tau}
        return 1.0 if all(torch.equal(tau[k], want[k]) for k in tau) else 0.5


def test_consensus_selects_preferred_lambda_and_masks():
    g = torch.Generator().manual_seed(1)
    taus = [{"w": torch.randn(10, 6, generator=g), "b": torch.randn(6, generator=g)} for _ in range(4)]
    preferred = [0.2, 0.5, 0.6, 0.3]
    ev = FakeEvaluator(taus, preferred)
    ctx = MergeContext(regime="full", tasks=["A", "B", "C", "D"], evaluate=ev)
    m = build("consensus")
    assert m.needs_data and m.alpha_grid == "ta"
    out = m.merge(DictSource(taus), ctx)
    assert ctx.aux["lambdas"] == {"A": 0.2, "B": 0.5, "C": 0.6, "D": 0.3}
    assert len(ev.calls) == 4 * 5
    for key in ("w", "b"):
        total = sum(t[key] for t in taus)
        votes = sum(tall_mask(t[key], total, lam).int() for t, lam in zip(taus, preferred))
        expected = total * (votes >= 2)
        assert torch.equal(out[key], expected)
        if key == "w":  # the consensus mask really removes something
            assert 0 < (votes >= 2).float().mean() < 1


def test_consensus_ties_go_to_first_lambda_and_k_zero_is_ta():
    taus = [{"w": t} for t in _taus(n=3, shape=(5, 4))]
    ctx = MergeContext(regime="full", tasks=["a", "b", "c"], evaluate=lambda *a, **k: 0.7)
    out = build("consensus", k=0).merge(DictSource(taus), ctx)
    assert set(ctx.aux["lambdas"].values()) == {0.2}
    assert torch.allclose(out["w"], sum(t["w"] for t in taus))


def test_consensus_without_evaluator_raises():
    taus = [{"w": t} for t in _taus(n=2)]
    with pytest.raises(MethodConfigError, match="ctx.evaluate"):
        build("consensus").merge(DictSource(taus), MergeContext(regime="full", tasks=["a", "b"]))


# ---------------------------------------------------------------- WUDI

def test_wudi_zero_steps_is_sum_and_vector_keys_mean():
    taus = _taus(shape=(12, 8))
    out = Wudi(steps=0).merge_key(taus, _info(key=ATTN))
    assert torch.allclose(out, torch.stack(taus).sum(0))
    other = Wudi().merge_key(taus, _info(key="visual.proj"))
    assert torch.allclose(other, torch.stack(taus).mean(0))
    bias = [t[0] for t in taus]
    assert torch.allclose(Wudi().merge_key(bias, _info(key="x.attn.in_proj_bias", shape=(8,))),
                          torch.stack(bias).mean(0))


def test_wudi_decreases_objective_and_gradient_matches_autograd():
    taus = _taus(n=3, shape=(10, 6), seed=2)
    x0 = torch.stack(taus).sum(0)
    # closed-form gradient == autograd on the objective
    x = x0.clone().requires_grad_(True)
    wudi_objective(x, taus).backward()
    gram = sum(t.T @ t / t.pow(2).sum() for t in taus)
    cross = sum(t @ t.T @ t / t.pow(2).sum() for t in taus)
    assert torch.allclose(x.grad.float(), 2 * (x0 @ gram - cross), rtol=1e-4, atol=1e-4)
    before = float(wudi_objective(x0, taus))
    after = float(wudi_objective(wudi_optimize(taus, lr=1e-2, steps=200), taus))
    assert after < 0.5 * before
    # the default (lr 1e-5, 300 steps) moves a little, downhill
    default = Wudi().merge_key(taus, _info(key="x.mlp.c_fc.weight", shape=(10, 6), n=3))
    assert float(wudi_objective(default, taus)) < before
    assert not torch.allclose(default, x0)


def test_wudi_hf_names():
    taus = _taus(n=2, shape=(6, 6))
    key = "vision_model.encoder.layers.0.self_attn.q_proj.weight"
    out = Wudi(steps=5, lr=1e-2).merge_key(taus, _info(key=key, shape=(6, 6), n=2))
    assert not torch.allclose(out, torch.stack(taus).sum(0))


# ---------------------------------------------------------------- MDA

def _lowrank_taus(n=4, d_out=32, d_in=24, rank=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(d_out, rank, generator=g) @ torch.randn(rank, d_in, generator=g) / rank
            for _ in range(n)]


def test_etf_gram_and_delta():
    k = 5
    gram = etf_gram(k)
    assert torch.allclose(torch.diag(gram), torch.ones(k, dtype=gram.dtype))
    assert torch.allclose(gram[0, 1], torch.tensor(-1 / (k - 1), dtype=gram.dtype))
    # an explicit simplex ETF: sqrt(K/(K-1)) U (I - 11ᵀ/K)
    u, _ = torch.linalg.qr(torch.randn(10, k, dtype=torch.float64))
    m = (k / (k - 1)) ** 0.5 * u @ (torch.eye(k, dtype=torch.float64) - 1 / k)
    assert delta_etf(m) < 1e-10
    assert delta_etf(u) > 0.1  # orthonormal is not an ETF


@pytest.mark.parametrize("k_fraction", [None, 0.01, 0.1, 0.5, 1.0])
def test_mda_shapes_and_k_sweep(k_fraction):
    taus = _lowrank_taus()
    m = build("mda", k_fraction=k_fraction)
    out = m.merge_key(taus, _info(shape=(32, 24), n=4))
    assert out.shape == (32, 24) and torch.isfinite(out).all() and out.abs().sum() > 0
    vec = [t[0] for t in taus]
    assert torch.allclose(m.merge_key(vec, _info(shape=(24,), n=4)), torch.stack(vec).mean(0))


def test_mda_effective_k():
    assert effective_k(768, 768, 8, None) == 96
    assert effective_k(768, 768, 8, 0.01) == 8
    assert effective_k(768, 768, 8, 0.1) == 77
    assert effective_k(768, 768, 8, 0.5) == 96          # capped: T·k ≤ r
    assert effective_k(3072, 768, 8, None) == 96        # r = 768
    assert effective_k(768, 768, 8, None, lora_rank=16) == 16
    assert effective_k(4, 4, 8, None) == 1


@pytest.mark.parametrize("etf", ["components", "left_vectors"])
def test_mda_alignment_reduces_delta_etf(etf):
    taus = _lowrank_taus(n=4, d_out=40, d_in=30, rank=8, seed=3)
    for k in (2, 5, 7):
        d = mda_delta_etf(taus, k, etf=etf)
        assert d["K"] == 4 * k
        assert d["after"] < 1e-5 < d["before"]
        assert d["after"] < d["orthogonal"]


def test_mda_left_vectors_is_tsv_plus_rank_one_and_deterministic():
    taus = _lowrank_taus(seed=4)
    info = _info(shape=(32, 24), n=4)
    m = Mda(etf="left_vectors")
    out = m.merge_key(taus, info)
    assert torch.equal(out, m.merge_key(taus, info))
    # invariant to τ → −τ (canonical signs)
    assert torch.allclose(m.merge_key([-t for t in taus], info), -out, atol=1e-5)
    # ETF alignment of the left vectors is a rank-one correction of the orthogonalised merge
    a = mda_align(taus, 6)
    tsv = (a["u_perp"] * a["s_cat"]) @ a["v_perp"].T
    rel = float((out - tsv).norm() / tsv.norm())
    assert 0 < rel < 0.5
    # out is float32 (cast from the float64 computation): rank up to float32 rounding
    assert torch.linalg.matrix_rank(out.double() - tsv * (24 / 23) ** 0.5, rtol=1e-5) <= 1


def test_mda_components_is_tsv_minus_mean_sigma_frame():
    """Default reading: τm = sqrt(K/(K−1)) · U⊥ (S − mean(S)) V⊥ᵀ (docs/mda.md)."""
    taus = _lowrank_taus(seed=4)
    info = _info(shape=(32, 24), n=4)
    out = Mda().merge_key(taus, info)
    assert torch.equal(out, Mda().merge_key(taus, info))
    assert torch.allclose(Mda().merge_key([-t for t in taus], info), -out, atol=1e-5)
    a = mda_align(taus, 6)
    up, vp, s = a["u_perp"].double(), a["v_perp"].double(), a["s_cat"].double()
    want = (24 / 23) ** 0.5 * ((up * s) @ vp.T - s.mean() * up @ vp.T)
    assert float((out.double() - want).norm() / want.norm()) < 1e-5


def _components_reference_f64(taus, k):
    """The ``components`` reading written out with float64 full SVDs and explicit rank-one
    matrices: E_i = u⊥_i v⊥_iᵀ, M_i = sqrt(K/(K−1)) (E_i − mean_j E_j), τm = Σ_i σ_i M_i."""
    import numpy as np
    us, ss, vs = [], [], []
    for t in taus:
        u, s, vh = np.linalg.svd(t.double().numpy(), full_matrices=False)
        us.append(u[:, :k]), ss.append(s[:k]), vs.append(vh[:k].T)
    def polar(a):
        p, _, qh = np.linalg.svd(a, full_matrices=False)
        return p @ qh
    up, vp, sig = polar(np.concatenate(us, 1)), polar(np.concatenate(vs, 1)), np.concatenate(ss)
    K = sig.size
    weighted, mean = np.zeros((up.shape[0], vp.shape[0])), np.zeros((up.shape[0], vp.shape[0]))
    for i in range(K):  # Σ_i σ_i E_i and Ē, one rank-one matrix at a time
        e = np.outer(up[:, i], vp[:, i])
        weighted += sig[i] * e
        mean += e / K
    return torch.tensor(np.sqrt(K / (K - 1)) * (weighted - sig.sum() * mean))


def test_mda_components_matches_float64_reference():
    taus = _lowrank_taus(n=3, d_out=20, d_in=16, rank=5, seed=8)
    info = _info(shape=(20, 16), n=3)
    k = effective_k(20, 16, 3, None)
    ref = _components_reference_f64(taus, k)
    out = Mda().merge_key(taus, info).double()
    assert float((out - ref).norm() / ref.norm()) < 1e-5


@pytest.mark.parametrize("shape,exact", [((32, 24), False), ((24, 40), False),
                                         ((424, 384), False), ((384, 424), True)])
def test_mda_components_invariant_to_random_pair_flips(shape, exact):
    """Flipping any pairs (u_i, v_i) of the tasks' SVDs (another valid sign convention,
    ``sign_seed``) leaves the default τm unchanged; the ``left_vectors`` reading moves."""
    g = torch.Generator().manual_seed(sum(shape))
    taus = [torch.randn(shape[0], 12, generator=g) @ torch.randn(12, shape[1], generator=g) / 12
            + 1e-3 * torch.randn(*shape, generator=g) for _ in range(4)]
    info = _info(key=ATTN, shape=shape, n=4)
    for etf in ("components", "left_vectors"):
        ref = Mda(etf=etf, exact=exact).merge_key(taus, info).double()
        rel = [float((Mda(etf=etf, exact=exact, sign_seed=s).merge_key(taus, info).double() - ref).norm()
                     / ref.norm()) for s in range(1, 6)]
        if etf == "components":
            assert max(rel) < 1e-5, rel
        else:
            assert min(rel) > 1e-3, rel


def test_mda_task_vectors_sum_to_the_merge_and_flat_spectra_give_a_task_simplex():
    """Σt τt^etf = τm in both readings; with equal singular values in every task the default
    reading's per-task vectors form an exact simplex ETF (pairwise cosine −1/(T−1))."""
    taus = _lowrank_taus(seed=5)
    info = _info(shape=(32, 24), n=4)
    for etf in ("components", "left_vectors"):
        pieces = mda_task_vectors(taus, 6, etf)
        assert torch.allclose(pieces.sum(0), Mda(etf=etf).merge_key(taus, info), atol=1e-5)
    g = torch.Generator().manual_seed(6)
    flat = []
    for _ in range(4):
        u, _ = torch.linalg.qr(torch.randn(32, 6, generator=g))
        v, _ = torch.linalg.qr(torch.randn(24, 6, generator=g))
        flat.append(u @ v.T)
    p = mda_task_vectors(flat, 6).reshape(4, -1).double()
    p = p / p.norm(dim=1, keepdim=True)
    assert delta_etf(p.T) < 1e-5
    assert torch.allclose(p @ p.T, etf_gram(4), atol=1e-5)


def test_canonical_signs_tie_robust():
    """Largest |entry| positive; entries equal up to rounding count as a tie and the first
    index decides, so a rounding-size perturbation of a tie does not flip the sign."""
    a = torch.tensor([0.6, -0.6 * (1 + 1e-6), 0.1, 0.0])
    b = torch.tensor([0.6, -0.6 * (1 - 1e-6), 0.1, 0.0])
    for u in (a, b):
        assert float(_canonical_signs(u[None, :, None])[0]) == 1.0
    clear = torch.tensor([0.2, -0.9, 0.1, 0.0])
    assert float(_canonical_signs(clear[None, :, None])[0]) == -1.0


def test_mda_param_validation():
    with pytest.raises(MethodConfigError, match="etf"):
        Mda(etf="rows")
    with pytest.raises(MethodConfigError, match="sign_seed"):
        Mda(sign_seed="1")
    assert Mda().params["etf"] == "components" and Mda().params["sign_seed"] is None


def _mda_reference_f64(taus, k):
    """Algorithm 1, ``left_vectors`` reading, written directly with numpy float64 full SVDs."""
    import numpy as np
    us, ss, vs = [], [], []
    for t in taus:
        u, s, vh = np.linalg.svd(t.double().numpy(), full_matrices=False)
        u, s, v = u[:, :k], s[:k], vh[:k].T
        sign = np.sign(u[np.abs(u).argmax(axis=0), np.arange(k)])
        us.append(u * sign), ss.append(s), vs.append(v * sign)
    def polar(a):
        p, _, qh = np.linalg.svd(a, full_matrices=False)
        return p @ qh
    u_perp, v_perp = polar(np.concatenate(us, 1)), polar(np.concatenate(vs, 1))
    K = u_perp.shape[1]
    u_etf = np.sqrt(K / (K - 1)) * (u_perp - u_perp.mean(axis=1, keepdims=True))
    return torch.tensor((u_etf * np.concatenate(ss)) @ v_perp.T)


@pytest.mark.parametrize("T,wide", [(2, False), (4, False), (4, True)])
def test_mda_fast_path_on_large_keys_matches_float64_reference(T, wide):
    """Large keys (min side >= FAST_MIN_R) take the shared-basis route (certified float64
    Gram eigh + float64 polar factors); ``exact: true`` the full float32 SVDs. Both agree with a float64 full-SVD implementation of Algorithm 1."""
    from mergelab.methods.linalg import FAST_MIN_R
    m, n = FAST_MIN_R + 40, FAST_MIN_R
    shape = (n, m) if wide else (m, n)
    g = torch.Generator().manual_seed(T)
    taus = []
    for _ in range(T):
        u, _ = torch.linalg.qr(torch.randn(shape[0], n, generator=g, dtype=torch.float64))
        v, _ = torch.linalg.qr(torch.randn(shape[1], n, generator=g, dtype=torch.float64))
        s = torch.arange(1, n + 1, dtype=torch.float64) ** -1.0
        taus.append(((u * s) @ v.T * 1e-2).float())
    info = _info(shape=shape, n=T)
    k = effective_k(shape[0], shape[1], T, None)
    rel = lambda a, ref: float((a.double() - ref).norm() / ref.norm())  # noqa: E731
    for etf, reference in (("left_vectors", _mda_reference_f64), ("components", _components_reference_f64)):
        ref = reference(taus, k)
        fast, exact = Mda(etf=etf).merge_key(taus, info), Mda(etf=etf, exact=True).merge_key(taus, info)
        assert fast.shape == exact.shape == shape and fast.dtype == torch.float32
        assert rel(fast, ref) < 1e-4 and rel(exact, ref) < 2e-4, (etf, rel(fast, ref), rel(exact, ref))
    # the intermediate quantities keep their meaning on the fast route
    a = mda_align(taus, k)
    eye = torch.eye(T * k, dtype=torch.float64)
    assert torch.allclose(a["u_perp"].double().T @ a["u_perp"].double(), eye, atol=1e-4)
    assert torch.allclose(a["v_perp"].double().T @ a["v_perp"].double(), eye, atol=1e-4)
    assert delta_etf(a["u_etf"]) < 1e-4
    with pytest.raises(MethodConfigError, match="exact"):
        Mda(exact="yes")
