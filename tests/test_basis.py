"""The suite's shared decomposition (mergelab.basis, rule decompose): computed once, read by
TSV-M, DC-Merge, MDA and MDA AM, and the merged vectors are exactly what each method
computes on its own."""
from __future__ import annotations

import json

import pytest
import torch

from mergelab import basis as B
from mergelab.io import ArtifactError, save_tensors
from mergelab.merge import run_merge
from mergelab.methods import build
from mergelab.methods import linalg as L
from mergelab.methods.base import MergeContext
from mergelab.methods.mda_am import MdaAM
from mergelab.taskvectors import DictSource

N = L.FAST_MIN_R
# two large keys (tall and wide: the basis route), a small matrix and a vector key (not in it)
SHAPES = {"visual.blocks.0.attn.in_proj_weight": (N + 24, N),
          "visual.blocks.0.mlp.c_proj.weight": (N, N + 40),
          "visual.small.weight": (40, 24),
          "visual.blocks.0.ln_1.bias": (N,)}
LARGE = list(SHAPES)[:2]
TASKS = ["MNIST", "PCAM", "DTD", "GTSRB"]


def _task_vectors(T, seed=0):
    """Low-rank-dominated task vectors with a decaying spectrum, as fine-tuning gives."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(T):
        tv = {}
        for key, shape in SHAPES.items():
            if len(shape) == 1:
                tv[key] = torch.randn(shape, generator=g) * 1e-3
                continue
            r = min(shape)
            u, _ = torch.linalg.qr(torch.randn(shape[0], r, generator=g, dtype=torch.float64))
            v, _ = torch.linalg.qr(torch.randn(shape[1], r, generator=g, dtype=torch.float64))
            s = torch.arange(1, r + 1, dtype=torch.float64) ** -1.0
            tv[key] = ((u * s) @ v.T * 1e-2).float()
        out.append(tv)
    return out


@pytest.fixture(scope="module", params=[3, 4], ids=["T3", "T4"])
def suite(request, tmp_path_factory):
    T = request.param
    d = tmp_path_factory.mktemp(f"basis{T}")
    taus = _task_vectors(T)
    paths = []
    for t, tv in zip(TASKS, taus):
        save_tensors(tv, d / f"{t}.safetensors")
        paths.append(d / f"{t}.safetensors")
    info = B.decompose(paths, TASKS[:T], "full", "s", d / "basis.safetensors", d / "basis.json",
                       device="cpu", config_subset={"seed": 0})
    return {"T": T, "taus": taus, "paths": paths, "dir": d, "info": info,
            "basis": d / "basis.safetensors", "tasks": TASKS[:T]}


def _merge(method, taus, basis=None, regime="full", lora_rank=None):
    ctx = MergeContext(regime=regime, tasks=TASKS[:len(taus)], seed=0, lora_rank=lora_rank)
    ctx.basis = basis
    return method.merge(DictSource(taus), ctx)


def test_decompose_holds_the_large_keys_only(suite):
    T = suite["T"]
    info = suite["info"]
    assert info["keys"] == 2 and set(info["k"]) == set(LARGE)
    assert all(k == N // T for k in info["k"].values())
    assert info["provenance"]["config"] == {"seed": 0} and "packages" in info["provenance"]
    assert json.loads((suite["dir"] / "basis.json").read_text())["k"] == info["k"]
    src = B.BasisSource(suite["basis"], suite["tasks"], "full")
    assert src.get("visual.small.weight") is None and src.get("visual.blocks.0.ln_1.bias") is None
    for key in LARGE:
        b = src.get(key)
        m, n = SHAPES[key]
        k = N // T
        assert b.U.shape == (T, m, k) and b.V.shape == (T, n, k) and b.S.shape == (T, k)
        assert b.PU.shape == (m, T * k) and b.PV.shape == (n, T * k)
        assert b.S.dtype == torch.float64 and b.U.dtype == torch.float32
        # it is what the methods compute themselves, to the bit
        ref = L.compute_key_basis([t[key] for t in suite["taus"]], k)
        for part in B.PARTS:
            assert torch.equal(getattr(b, part), getattr(ref, part)), (key, part)
        eye = torch.eye(T * k, dtype=torch.float64)
        assert torch.allclose(b.PU.double().T @ b.PU.double(), eye, atol=1e-4)


@pytest.mark.parametrize("name,params", [("tsv_m", {}), ("dc_merge", {}), ("mda", {}),
                                         ("dc_merge", {"smoothing": "linear"})])
def test_merges_from_the_shared_basis_equal_their_own(suite, name, params, monkeypatch):
    method = build(name, **params)
    assert method.uses_shared_basis()
    own = _merge(method, suite["taus"])
    src = B.BasisSource(suite["basis"], suite["tasks"], "full")

    def no_recompute(*a, **k):
        raise AssertionError("the shared basis was recomputed")
    monkeypatch.setattr(L, "compute_key_basis", no_recompute)
    shared = _merge(method, suite["taus"], basis=src)
    assert set(shared) == set(own)
    for key in own:
        assert torch.equal(shared[key], own[key]), key


def test_mda_am_algorithm1_vectors_from_the_shared_basis(suite, monkeypatch):
    method = MdaAM()
    ctx = MergeContext(regime="full", tasks=suite["tasks"], seed=0)
    own = method.task_vectors(DictSource(suite["taus"]), ctx, lambda it: it)
    ctx.basis = B.BasisSource(suite["basis"], suite["tasks"], "full")
    monkeypatch.setattr(L, "compute_key_basis", lambda *a, **k: pytest.fail("recomputed"))
    shared = method.task_vectors(DictSource(suite["taus"]), ctx, lambda it: it)
    for key in own:
        assert torch.equal(shared[key], own[key]), key


def test_other_k_or_exact_computes_its_own(suite):
    """MDA with another k_fraction does not match the stored k and computes its own basis;
    ``exact: true`` does not read the shared basis at all."""
    src = B.BasisSource(suite["basis"], suite["tasks"], "full")
    m = build("mda", k_fraction=0.05)
    a, b = _merge(m, suite["taus"]), _merge(m, suite["taus"], basis=src)
    assert all(torch.equal(a[k], b[k]) for k in a)
    for name in ("tsv_m", "dc_merge", "mda", "mda_am"):
        assert build(name).uses_shared_basis() and not build(name, exact=True).uses_shared_basis()
    for name in ("task_arithmetic", "ties", "iso_cts", "wudi", "knots"):
        assert not build(name).uses_shared_basis()


def test_lora_rank_caps_the_basis_rank():
    key = LARGE[0]
    assert B.basis_rank(key, SHAPES[key], 3, "full") == N // 3
    assert B.basis_rank(key, SHAPES[key], 3, "lora", lora_rank=16) == 16
    assert B.basis_rank("visual.small.weight", (40, 24), 3, "full") == 0
    assert B.basis_rank("visual.blocks.0.ln_1.bias", (N,), 3, "full") == 0
    assert B.basis_rank("text_projection", (N, N), 3, "full") == 0   # not a matrix key


def test_basis_source_rejects_the_wrong_file(suite, tmp_path):
    path, tasks = suite["basis"], suite["tasks"]
    with pytest.raises(ArtifactError, match="tasks"):
        B.BasisSource(path, list(reversed(tasks)), "full")
    with pytest.raises(ArtifactError, match="regime"):
        B.BasisSource(path, tasks, "lora")
    with pytest.raises(ArtifactError, match="not a shared-basis file"):
        B.BasisSource(suite["paths"][0], tasks, "full")            # a task vector
    with pytest.raises(ArtifactError, match="does not exist"):
        B.BasisSource(tmp_path / "nope.safetensors", tasks, "full")
    bad = tmp_path / "garbage.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ArtifactError, match="garbage.safetensors"):
        B.BasisSource(bad, tasks, "full")
    # a truncated basis (a part missing) names the key and tensor
    src = B.BasisSource(path, tasks, "full")
    kept = {n: src._h.get_tensor(n) for n in src._names if n != B.tensor_name(LARGE[0], "PV")}
    save_tensors(kept, tmp_path / "partial.safetensors", metadata=src._h.metadata())
    part = B.BasisSource(tmp_path / "partial.safetensors", tasks, "full")
    with pytest.raises(ArtifactError, match=r"::PV"):
        part.get(LARGE[0])


def test_run_merge_with_a_basis(suite, tmp_path):
    """The merge CLI's path: --basis reaches the method, the merge info records it, and a
    method that does not read a basis refuses one instead of silently ignoring it."""
    tasks, paths = suite["tasks"], suite["paths"]
    info = run_merge("tsv_m", {"method": "tsv_m"}, "full", "s", tasks, paths,
                     tmp_path / "tau.safetensors", tmp_path / "tau.json", 0, device="cpu",
                     basis_path=suite["basis"])
    assert info["shared_basis"] == str(suite["basis"])
    own = run_merge("tsv_m", {"method": "tsv_m"}, "full", "s", tasks, paths,
                    tmp_path / "own.safetensors", tmp_path / "own.json", 0, device="cpu")
    assert own["shared_basis"] is None
    from safetensors.torch import load_file
    a, b = load_file(tmp_path / "tau.safetensors"), load_file(tmp_path / "own.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="does not read a shared basis"):
        run_merge("ta", {"method": "task_arithmetic"}, "full", "s", tasks, paths,
                  tmp_path / "ta.safetensors", tmp_path / "ta.json", 0, device="cpu",
                  basis_path=suite["basis"])
    assert not (tmp_path / "ta.safetensors").exists()
    with pytest.raises(ValueError, match="task-vector files"):
        B.decompose(paths, tasks[:-1], "full", "s", tmp_path / "b.safetensors",
                    tmp_path / "b.json", device="cpu")
