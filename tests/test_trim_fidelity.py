"""TIES / DARE-TIES whole-model trimming (methods/trim.py) against a NumPy reimplementation
of the reference semantics written here: each task flattened over all keys, threshold = the
(n − int(n·K))-th smallest |value|, sign = sign of the sum (0 → whole-model majority), mean
of the agreeing entries."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mergelab.methods import build
from mergelab.methods.base import KeyInfo, MergeContext, MethodConfigError, key_seed
from mergelab.methods.trim import whole_model_thresholds
from mergelab.taskvectors import DictSource

SHAPES = {"a.weight": (12, 9), "a.bias": (12,), "b.weight": (7, 5), "ln.weight": (9,)}


def _store(n_tasks=4, seed=0, scales=None):
    """Keys at very different scales, so whole-model and per-key trimming differ."""
    g = torch.Generator().manual_seed(seed)
    scales = scales or {"a.weight": 1.0, "a.bias": 0.05, "b.weight": 3.0, "ln.weight": 0.2}
    return [{k: torch.randn(*s, generator=g) * scales[k] for k, s in SHAPES.items()}
            for _ in range(n_tasks)]


def np_kth_threshold(flat_abs: np.ndarray, fraction: float) -> float:
    d = flat_abs.size
    if fraction >= 1:
        return 0.0
    k = d - int(d * fraction)
    return float(np.partition(flat_abs, k - 1)[k - 1])


def np_ties_rows(rows, k_percent):
    """TIES on [T, n] flattened task rows: keep each row's top k % by magnitude (one threshold
    per task), elect signs (zero sums take the overall majority), disjoint mean."""
    thr = np.array([np_kth_threshold(np.abs(r.astype(np.float32)), k_percent / 100) for r in rows])
    M = rows * (np.abs(rows.astype(np.float32)) >= thr[:, None].astype(np.float32))
    sign = np.sign(M.sum(0))
    sign[sign == 0] = np.sign(sign.sum())
    keep = np.where(sign[None] > 0, M > 0, M < 0)
    sel = M * keep
    return sel.sum(0) / np.maximum((sel != 0).sum(0), 1)


def np_ties_whole(taus, k_percent, per_task=None):
    keys = list(taus[0])
    rows = []
    for t, tau in enumerate(taus):
        vals = [tau[key].double().numpy().ravel() for key in keys]
        if per_task is not None:
            vals = [per_task(t, key, v) for key, v in zip(keys, vals)]
        rows.append(np.concatenate(vals))
    M = np.stack(rows)
    merged = np_ties_rows(M, k_percent)
    out, o = {}, 0
    for key in keys:
        n = taus[0][key].numel()
        out[key] = merged[o:o + n].reshape(taus[0][key].shape)
        o += n
    return out


def np_ties_per_key_old(taus_key, k_percent):
    """The previous per-key rule: top round(n·k) of the key (at least 1), per-key majority (+1 if 0)."""
    M = np.stack([t.double().numpy().ravel() for t in taus_key])
    n = M.shape[1]
    cnt = max(1, int(round(n * k_percent / 100)))
    for i in range(len(M)):
        a = np.abs(M[i].astype(np.float32))
        thr = np.sort(a)[::-1][cnt - 1] if cnt < n else -1
        M[i] = M[i] * (a >= thr)
    el = np.sign(M.sum(0))
    maj = np.sign(el.sum()) or 1.0
    el[el == 0] = maj
    agree = (np.sign(M) == el) & (M != 0)
    return ((M * agree).sum(0) / np.maximum(agree.sum(0), 1)).reshape(taus_key[0].shape)


def _ctx(n, seed=0):
    return MergeContext(regime="full", tasks=[f"t{i}" for i in range(n)], seed=seed)


def _close(out, ref):
    for key in ref:
        assert np.allclose(out[key].double().numpy(), ref[key], atol=1e-6), key


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.01, 0.999, 1.0])
def test_thresholds_are_the_exact_kth_value(fraction):
    taus = _store(n_tasks=3, seed=1)
    # spread over many exponents, with repeated magnitudes and zeros
    taus[0]["a.weight"][0, :4] = 0.0
    taus[1]["b.weight"][:, 0] = taus[1]["b.weight"][0, 0]
    taus[2]["a.bias"] *= 1e-20
    keys = list(SHAPES)

    def produce(key):
        return torch.stack([t[key].float() for t in taus])

    thr = whole_model_thresholds(keys, produce, fraction)
    for t in range(3):
        flat = np.concatenate([taus[t][k].float().numpy().ravel() for k in keys])
        assert thr[t].item() == np_kth_threshold(np.abs(flat), fraction)


@pytest.mark.parametrize("k", [20.0, 50.0, 100.0])
def test_ties_default_is_whole_model(k):
    taus = _store()
    m = build("ties", k=k)
    assert m.params["trim_scope"] == "model"
    out = m.merge(DictSource(taus), _ctx(4))
    _close(out, np_ties_whole(taus, k))
    if k < 100:  # the keys' scales differ: per-key trimming gives another merge
        per_key = build("ties", k=k, trim_scope="per_key").merge(DictSource(taus), _ctx(4))
        assert not all(torch.allclose(out[key], per_key[key]) for key in out)


def test_ties_zero_sum_entries_take_the_whole_model_majority():
    taus = _store(n_tasks=2, seed=2)
    # exact cancellation at one kept entry: its sign comes from the whole model
    taus[1]["b.weight"][0, 0] = -taus[0]["b.weight"][0, 0]
    taus[0]["b.weight"][0, 0] = 50.0
    taus[1]["b.weight"][0, 0] = -50.0
    out = build("ties", k=30).merge(DictSource(taus), _ctx(2))
    ref = np_ties_whole(taus, 30)
    _close(out, ref)
    assert abs(out["b.weight"][0, 0].item()) == 50.0


def test_ties_per_key_option_matches_the_old_rule():
    taus = _store(seed=3)
    out = build("ties", k=20, trim_scope="per_key").merge(DictSource(taus), _ctx(4))
    for key in SHAPES:
        assert np.allclose(out[key].numpy(), np_ties_per_key_old([t[key] for t in taus], 20),
                           atol=1e-6), key


def test_ties_merge_key_refuses_whole_model_scope():
    taus = _store()
    info = KeyInfo(key="a.weight", regime="full", n_tasks=4, seed=0, is_matrix=True)
    with pytest.raises(MethodConfigError, match="trim_scope"):
        build("ties").merge_key([t["a.weight"] for t in taus], info)
    with pytest.raises(MethodConfigError, match="trim_scope"):
        build("ties", trim_scope="layer")


def test_ties_keeps_dtype():
    taus = [{k: v.half() for k, v in t.items()} for t in _store()]
    out = build("ties").merge(DictSource(taus), _ctx(4))
    assert all(out[k].dtype == torch.float16 for k in out)


def _np_dare_mask(key, seed, n_tasks, p, shape):
    """The DARE drop of every task of one key, drawn as the method draws it (seeded per key)."""
    g = torch.Generator().manual_seed(key_seed(seed, key))
    return [(torch.rand(shape, generator=g) >= p).double().numpy().ravel() / (1 - p)
            for _ in range(n_tasks)]


@pytest.mark.parametrize("p", [0.0, 0.5])
def test_dare_ties_whole_model(p):
    taus = _store(seed=4)
    seed = 7
    masks = {key: _np_dare_mask(key, seed, 4, p, SHAPES[key]) for key in SHAPES}
    ref = np_ties_whole(taus, 20, per_task=lambda t, key, v: v * masks[key][t])
    out = build("dare", p=p, base="ties", k=20).merge(DictSource(taus), _ctx(4, seed=seed))
    _close(out, ref)
    if p == 0.0:
        ties = build("ties", k=20).merge(DictSource(taus), _ctx(4))
        assert all(torch.equal(out[k], ties[k]) for k in out)


def test_dare_ties_per_key_option_matches_the_old_rule():
    taus = _store(seed=5)
    seed = 2
    out = build("dare", p=0.5, base="ties", k=20, trim_scope="per_key").merge(
        DictSource(taus), _ctx(4, seed=seed))
    for key in SHAPES:
        masks = _np_dare_mask(key, seed, 4, 0.5, SHAPES[key])
        dropped = [torch.tensor(t[key].double().numpy().ravel() * m).reshape(SHAPES[key]).float()
                   for t, m in zip(taus, masks)]
        assert np.allclose(out[key].numpy(), np_ties_per_key_old(dropped, 20), atol=1e-6), key


# ---------------------------------------------------------------- KnOTS

def np_knots_whole(taus, k_percent, p=0.0, seed=0):
    """KnOTS as the public code computes it, in NumPy float64: per module SVD of [Δ1 … ΔT]
    (σ > 1e-5), Σ Vtᵀ per task, DARE on those factors, TIES over all modules of a task."""
    keys = list(taus[0])
    T = len(taus)
    bases, factors = {}, {}
    for key in keys:
        D = [t[key].double().numpy() for t in taus]
        U, S, Vh = np.linalg.svd(np.concatenate(D, axis=1), full_matrices=False)
        keep = S > 1e-5
        U, S, Vh = U[:, keep], S[keep], Vh[keep]
        n = D[0].shape[1]
        F = np.stack([np.diag(S) @ Vh[:, t * n:(t + 1) * n] for t in range(T)])
        if p > 0:  # the method's per-key draw: one torch.rand over [T, r, n]
            g = torch.Generator().manual_seed(key_seed(seed, key))
            F = F * (torch.rand(F.shape, generator=g) >= p).double().numpy() / (1 - p)
        bases[key], factors[key] = U, F
    rows = np.concatenate([factors[key].reshape(T, -1) for key in keys], axis=1)
    merged = np_ties_rows(rows, k_percent)
    out, o = {}, 0
    for key in keys:
        shape = factors[key].shape[1:]
        n = int(np.prod(shape))
        out[key] = bases[key] @ merged[o:o + n].reshape(shape)
        o += n
    return out


def _lora_store(T=3, seed=0):
    """Low-rank updates of three modules at different scales (as LoRA products B·A)."""
    g = torch.Generator().manual_seed(seed)
    dims = {"q.weight": (16, 16, 1.0), "fc1.weight": (24, 16, 0.1), "fc2.weight": (16, 24, 5.0)}
    return [{k: (torch.randn(m, 2, generator=g) @ torch.randn(2, n, generator=g)) * sc
             for k, (m, n, sc) in dims.items()} for _ in range(T)]


@pytest.mark.parametrize("k,p", [(20.0, 0.0), (100.0, 0.1), (20.0, 0.3)])
def test_knots_whole_model_matches_numpy(k, p):
    taus = _lora_store()
    ctx = MergeContext(regime="lora", tasks=["a", "b", "c"], seed=5, lora_rank=2)
    out = build("knots", k=k, dare_p=p).merge(DictSource(taus), ctx)
    ref = np_knots_whole(taus, k, p, seed=5)
    scale = np.sqrt(sum(np.linalg.norm(r) ** 2 for r in ref.values()))
    for key in ref:
        err = np.linalg.norm(out[key].double().numpy() - ref[key]) / scale
        assert err < 1e-5, (key, err)
    if k < 100:  # the modules' scales differ: per-module ranking is another merge
        per_key = build("knots", k=k, dare_p=p, trim_scope="per_key").merge(DictSource(taus), ctx)
        assert not all(torch.allclose(out[key], per_key[key], atol=1e-6) for key in out)


def test_knots_dare_acts_on_the_right_factors():
    """DARE after the SVD keeps every update inside the span of the shared U; a drop on
    B·A before the SVD would leave it."""
    taus = _lora_store(seed=1)
    ctx = MergeContext(regime="lora", tasks=["a", "b", "c"], seed=0, lora_rank=2)
    out = build("knots", k=100, dare_p=0.5).merge(DictSource(taus), ctx)
    for key in out:
        D = np.concatenate([t[key].double().numpy() for t in taus], axis=1)
        U, S, _ = np.linalg.svd(D, full_matrices=False)
        U = U[:, S > 1e-5]
        X = out[key].double().numpy()
        assert np.linalg.norm(X - U @ (U.T @ X)) <= 1e-5 * np.linalg.norm(X), key


def test_knots_defaults_follow_the_public_configs():
    m = build("knots")
    assert m.params["k"] == 20.0 and m.params["dare_p"] == 0.0 and m.params["trim_scope"] == "model"


# ---------------------------------------------------------------- WUDI variants

def _autograd_wudi(taus, lr=1e-5, steps=300):
    """The WUDI loop as written in the papers' code: autograd on the summed normalised loss."""
    v = torch.stack([t.double() for t in taus])
    x = torch.nn.Parameter(v.sum(0).clone())
    opt = torch.optim.Adam([x], lr=lr, weight_decay=0)
    norms = v.reshape(len(taus), -1).norm(dim=-1) ** 2
    for _ in range(steps):
        loss = (((x.unsqueeze(0) - v) @ v.transpose(1, 2)) ** 2 / norms[:, None, None]).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return x.detach()


@pytest.mark.parametrize("other", ["mean", "zero"])
def test_wudi_other_keys_variants(other):
    g = torch.Generator().manual_seed(0)
    attn = "visual.transformer.resblocks.0.attn.in_proj_weight"
    shapes = {attn: (18, 6), "visual.transformer.resblocks.0.attn.in_proj_bias": (18,),
              "visual.conv1.weight": (6, 3, 2, 2), "visual.ln_post.weight": (6,),
              "visual.transformer.resblocks.0.mlp.c_fc.weight": (12, 6)}
    taus = [{k: torch.randn(*s, generator=g) for k, s in shapes.items()} for _ in range(3)]
    m = build("wudi", other_keys=other, steps=50, lr=1e-2)
    out = m.merge(DictSource(taus), MergeContext(regime="full", tasks=["a", "b", "c"]))
    for key in shapes:
        stack = torch.stack([t[key] for t in taus])
        if key.endswith(("in_proj_weight", "c_fc.weight")):
            ref = _autograd_wudi([t[key] for t in taus], lr=1e-2, steps=50)
            assert torch.allclose(out[key].double(), ref, rtol=1e-3, atol=1e-4), key
        elif other == "mean":
            assert torch.allclose(out[key], stack.mean(0)), key
        else:
            assert torch.count_nonzero(out[key]) == 0, key
    assert build("wudi").params["other_keys"] == "mean"
    with pytest.raises(MethodConfigError, match="other_keys"):
        build("wudi", other_keys="sum")


# ---------------------------------------------------------------- MDA AM start

def test_merge_reads_the_init_alpha_from_the_eval_json(tmp_path):
    import json

    from mergelab.merge import _set_initial_alpha
    from mergelab.io import ArtifactError
    path = tmp_path / "mda.json"
    rec = {"method": "mda", "regime": "full", "suite": "main", "tasks": ["a", "b"], "alpha": 1.3}
    path.write_text(json.dumps(rec))
    m = build("mda_am")
    ctx = MergeContext(regime="full", tasks=["a", "b"])
    _set_initial_alpha("mda_am", m, ctx, "full", "main", ["a", "b"], path)
    assert ctx.extras["init_alpha"] == 1.3 and ctx.aux["init_from"]["method"] == "mda"
    with pytest.raises(ArtifactError, match="suite"):
        _set_initial_alpha("mda_am", m, MergeContext(regime="full", tasks=["a", "b"]),
                           "full", "other", ["a", "b"], path)
    with pytest.raises(ValueError, match="--init-from"):
        _set_initial_alpha("mda_am", m, MergeContext(regime="full", tasks=["a", "b"]),
                           "full", "main", ["a", "b"], None)
    with pytest.raises(ValueError, match="from_method"):
        _set_initial_alpha("x", build("mda_am", init=0.4), MergeContext(regime="full", tasks=["a"]),
                           "full", "main", ["a", "b"], path)


# ---------------------------------------------------------------- KnOTS LoRA partitions

def test_shipped_knots_permutations():
    from mergelab.data.knots_index import KNOTS_TEST_SIZES, knots_permutation, knots_split
    first = {"Cars": [674, 6476, 4288], "GTSRB": [7031, 1287, 236], "MNIST": [7249, 2682, 8484],
             "SUN397": [12836, 4749, 16448], "SVHN": [25714, 9001, 17129]}
    for task, n in KNOTS_TEST_SIZES.items():
        perm = knots_permutation(task)
        assert perm.shape == (n,) and np.array_equal(np.sort(perm), np.arange(n)), task
        assert perm[:3].tolist() == first[task]
        val, test = knots_split(task, n)
        assert len(val) == int(n * 0.2) and val + test == perm.tolist()
    assert knots_split("MNIST", 9999) is None and knots_permutation("DTD") is None


def test_index_reader_never_unpickles(tmp_path):
    from mergelab.data.knots_index import IndexFileError, read_index_pt
    perm = np.random.default_rng(0).permutation(300)
    torch.save(perm, tmp_path / "perm.pt")
    assert np.array_equal(read_index_pt(tmp_path / "perm.pt"), perm)
    torch.save(torch.arange(5), tmp_path / "tensor.pt")   # torch globals: refused
    with pytest.raises(IndexFileError, match="tensor.pt"):
        read_index_pt(tmp_path / "tensor.pt")
    torch.save(perm.astype(np.float32), tmp_path / "float.pt")
    with pytest.raises(IndexFileError, match="int"):
        read_index_pt(tmp_path / "float.pt")


def test_lora_rule_uses_the_knots_file_when_sizes_match():
    from mergelab.data import paper as P
    notes: list[str] = []
    val, test, desc = P.lora_validation("MNIST", 10000, "test", 0, notes)
    assert val[:3] == [7249, 2682, 8484] and len(val) == 2000 and len(test) == 8000
    assert "knots_splits/MNIST.npy" in desc and not notes
    val, test, desc = P.lora_validation("MNIST", 50, "test", 0, notes)
    assert (val, test) == P.test_split_indices(50, 0) and "seeded 0" in desc
    assert "indexes 10000" in notes[0]
