"""AdaMerging and MDA AM (Algorithm 2) on a tiny random open_clip encoder."""
from __future__ import annotations

import pytest
import torch

from mergelab.engine import Head
from mergelab.evaluate import (COEFFICIENT_PREFIX, ROTATION_PREFIX, Evaluator, RotatedHead,
                               split_merged)
from mergelab.io import load_tensors, save_tensors
from mergelab.methods import build, get_method
from mergelab.methods.adamerging import FunctionalEncoder, rebuild, softmax_entropy
from mergelab.methods.base import MergeContext, MethodConfigError
from mergelab.methods.mda_am import etf_targets, procrustes_rotation, rotation_from
from mergelab.models import OpenClipEncoder, create_open_clip, normalize_images
from mergelab.taskvectors import DictSource

TASKS = ["a", "b", "c"]
N_CLASSES = [5, 4, 6]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # tiny models: threads only contend (the machine runs other jobs beside the tests)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def world(one_thread):
    torch.manual_seed(0)
    clip = create_open_clip("mergelab-tiny")
    enc = OpenClipEncoder(clip.visual).eval()
    g = torch.Generator().manual_seed(1)
    theta0 = enc.weights()
    taus = []
    for _ in TASKS:
        taus.append({k: 0.3 * v.float().std().clamp(min=1e-3) * torch.randn(v.shape, generator=g)
                     for k, v in theta0.items() if v.is_floating_point()})
    d = clip.visual.output_dim
    heads = [Head(torch.nn.functional.normalize(torch.randn(c, d, generator=g), dim=-1), 10.0)
             for c in N_CLASSES]
    data = {}
    for i, c in enumerate(N_CLASSES):
        for split in ("validation", "test"):
            x = torch.randint(0, 256, (16, 3, 32, 32), generator=g, dtype=torch.uint8)
            y = torch.randint(0, c, (16,), generator=g)
            data[(i, split)] = (x, y)
    return {"clip": clip, "taus": taus, "heads": heads, "data": data}


class MemEvaluator(Evaluator):
    """The real Evaluator logic over in-memory splits (no files)."""

    def __init__(self, world, data=None):
        self.dev = torch.device("cpu")
        self.regime = "full"
        self.tasks = list(TASKS)
        self.task_dirs = []
        self.encoder = OpenClipEncoder(world["clip"].visual).eval()
        self.theta0 = {k: v.detach().clone() for k, v in self.encoder.weights().items()}
        self.heads = world["heads"]
        self.data_cfg = {"image_size": 32}
        self.batch_size = 64
        self.rotations = {}
        self.data = data if data is not None else world["data"]

    def split(self, i, split):
        return self.data[(i, split)]


class NoTestLabels(MemEvaluator):
    """Any access to a split's labels raises; only ``images`` works."""

    def split(self, i, split):
        raise AssertionError(f"labels of task {i} split {split} were read")

    def images(self, i, split):
        return self.data[(i, split)][0]


def _merge(world, name, ev=None, seed=0, init_alpha=0.3, **params):
    """``init_alpha``: the validated α the pipeline would pass for ``init: from_method``."""
    ev = ev or MemEvaluator(world)
    ctx = MergeContext(regime="full", tasks=list(TASKS), seed=seed)
    ctx.extras["evaluator"] = ev
    if init_alpha is not None:
        ctx.extras["init_alpha"] = init_alpha
    ctx.evaluate = ev.evaluate
    defaults = dict(steps=12, batch_size=16, batches_per_step=1, lr=0.05)
    defaults.update(params)
    out = build(name, **defaults).merge(DictSource(world["taus"]), ctx)
    ev.set_weights(None, 0.0)
    return out, ctx


def test_registered_defaults_and_validation():
    for name in ("adamerging", "mda_am"):
        cls = get_method(name)
        assert cls.needs_data and cls.alpha_grid == "fixed1"
        p = build(name).params
        # paper defaults stay in the method defaults
        assert (p["steps"], p["batch_size"], p["lr"]) == (500, 16, 1e-3)
    assert build("adamerging").params["init"] == 0.3
    assert build("adamerging").params["clamp_range"] == (0.0, 1.0)
    # MDA AM starts from the Algorithm 1 model: λ = MDA's validated α, inside the clamp range
    am = build("mda_am").params
    assert (am["init"], am["init_method"], am["clamp_range"]) == ("from_method", "mda", (0.0, 3.0))
    assert am["rotation_lr"] == 1e-5
    assert build("mda_am").params["etf_weight"] == 0.8
    assert build("mda_am").params["procrustes_weight"] == 0.2
    with pytest.raises(MethodConfigError):
        build("adamerging", granularity="block")
    with pytest.raises(MethodConfigError):
        build("mda_am", rotation="yes")
    with pytest.raises(MethodConfigError):
        build("mda_am", k_fraction=2.0)


def test_no_evaluator_is_a_clear_error(world):
    ctx = MergeContext(regime="full", tasks=list(TASKS))
    with pytest.raises(MethodConfigError, match="needs the merge to be given data"):
        build("adamerging", steps=1).merge(DictSource(world["taus"]), ctx)


def test_functional_encoder_matches_module_and_has_gradients(world):
    ev = MemEvaluator(world)
    x = normalize_images(world["data"][(0, "test")][0][:4])
    keys = list(world["taus"][0])
    fenc = FunctionalEncoder(ev.encoder, keys)
    w = {k: ev.theta0[k].clone().requires_grad_(True) for k in keys}
    f = fenc(w, x)
    assert torch.allclose(f, ev.encoder(x), atol=1e-5)
    f.sum().backward()
    assert w[keys[-1]].grad is not None and w[keys[-1]].grad.abs().sum() > 0


def test_functional_encoder_hf_layout(world):
    from mergelab.models import hf_encoder_from_open_clip
    hf = hf_encoder_from_open_clip({"name": "mergelab-tiny"}, world["clip"])
    keys = [k for k, v in hf.weights().items() if v.is_floating_point()]
    fenc = FunctionalEncoder(hf, keys)
    x = normalize_images(world["data"][(0, "test")][0][:2])
    w = {k: v.clone() for k, v in hf.weights().items() if k in set(keys)}
    with torch.no_grad():
        assert torch.allclose(fenc(w, x), hf(x), atol=1e-5)


@pytest.mark.parametrize("granularity", ["layer", "task"])
def test_adamerging_entropy_decreases_and_output(world, granularity):
    out, ctx = _merge(world, "adamerging", granularity=granularity, steps=15)
    hist = [h["entropy"] for h in ctx.aux["history"]]
    # every step sees the same 16 images per task, so the loss is a function of λ only
    assert hist[-1] < hist[0] - 1e-3, hist
    lam = torch.tensor(ctx.aux["coefficients"]["lambda"])
    assert lam.shape == (3, len(world["taus"][0]) if granularity == "layer" else 1)
    assert (lam >= 0).all() and (lam <= 1).all() and not torch.allclose(lam, torch.full_like(lam, 0.3))
    weights, rots = split_merged(out)
    assert not rots and set(weights) == set(world["taus"][0])
    coefs = {k: v for k, v in out.items() if k.startswith(COEFFICIENT_PREFIX)}
    assert len(coefs) == len(weights)
    re = rebuild(coefs, world["taus"])
    for k in weights:
        assert torch.allclose(re[k], weights[k], atol=1e-6)


def test_adamerging_init_only_is_task_arithmetic(world):
    out, _ = _merge(world, "adamerging", steps=0)
    weights, _ = split_merged(out)
    for k, v in weights.items():
        assert torch.allclose(v, 0.3 * sum(t[k] for t in world["taus"]), atol=1e-6)


@pytest.mark.parametrize("name", ["adamerging", "mda_am"])
def test_deterministic_with_seed(world, name):
    a, _ = _merge(world, name, steps=4, seed=3)
    b, _ = _merge(world, name, steps=4, seed=3)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ["adamerging", "mda_am"])
def test_never_reads_test_labels(world, name):
    # 1. labels raise on access
    strict, _ = _merge(world, name, ev=NoTestLabels(world), steps=3)
    # 2. poisoned labels through the normal Evaluator.images path give the same result
    poisoned = {k: (x, (y + 1) % 4) for k, (x, y) in world["data"].items()}
    pois, _ = _merge(world, name, ev=MemEvaluator(world, poisoned), steps=3)
    clean, _ = _merge(world, name, steps=3)
    for k in clean:
        assert torch.equal(strict[k], clean[k]) and torch.equal(pois[k], clean[k])


def test_etf_targets_and_procrustes():
    g = torch.Generator().manual_seed(0)
    w = torch.nn.functional.normalize(torch.randn(5, 16, generator=g), dim=-1)
    e = etf_targets(w)
    gram = e @ e.T
    assert torch.allclose(gram.diagonal(), torch.ones(5), atol=1e-5)
    off = gram[~torch.eye(5, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, -0.25), atol=1e-5)
    # each target is classified as its own class by the head it was built from
    assert torch.equal(Head(w, 10.0).logits(e).argmax(-1), torch.arange(5))
    # Procrustes recovers a rotation from enough pairs, and stays in SO(d) when the
    # best orthogonal map is a reflection
    r0 = rotation_from(torch.randn(8, 8, generator=g, dtype=torch.float64))
    s = torch.randn(20, 8, generator=g, dtype=torch.float64)
    r = procrustes_rotation(s, s @ r0.T, eps=0.0)
    assert torch.allclose(r, r0, atol=1e-8)
    refl = torch.diag(torch.tensor([1.0] * 7 + [-1.0], dtype=torch.float64))
    r = procrustes_rotation(s, s @ refl.T, eps=0.0)
    assert abs(torch.linalg.det(r) - 1) < 1e-10 and torch.allclose(r.T @ r, torch.eye(8, dtype=torch.float64))


def _check_so(r: torch.Tensor):
    r = r.double()
    eye = torch.eye(r.shape[0], dtype=torch.float64)
    assert (r.T @ r - eye).abs().max() < 1e-5
    assert abs(float(torch.linalg.det(r)) - 1.0) < 1e-5


def test_mda_am_rotations_in_so_d_and_losses(world):
    out, ctx = _merge(world, "mda_am", steps=15, rotation_lr=0.02)
    weights, rots = split_merged(out)
    assert set(rots) == set(TASKS)
    for task, r in rots.items():
        assert r.shape == (128, 128)
        _check_so(r)
        # it actually moved
        assert (r.double() - torch.eye(128, dtype=torch.float64)).norm() > 1e-2
    h = ctx.aux["history"]
    assert {"entropy", "etf", "procrustes", "loss"} <= set(h[0])
    assert h[-1]["loss"] < h[0]["loss"], [x["loss"] for x in h]
    assert set(ctx.aux["rotations"]) == set(TASKS)


def test_mda_am_without_rotation_and_init_is_mda(world):
    out, ctx = _merge(world, "mda_am", rotation=False, steps=0)
    weights, rots = split_merged(out)
    assert not rots
    mda = build("mda").merge(DictSource(world["taus"]), MergeContext(regime="full", tasks=list(TASKS)))
    for k, v in weights.items():  # λ ≡ 0.3 on every per-task vector = the mda model at α = 0.3
        assert torch.allclose(v, 0.3 * mda[k], atol=1e-5), k
    out, _ = _merge(world, "mda_am", rotation=False, steps=3)
    assert not split_merged(out)[1]


def test_mda_am_starts_at_the_validated_alpha_inside_the_clamp_range(world):
    """λ ≡ MDA's α (here 1.2 > 1, where the old [0, 1] clamp would have cut it to 1) gives
    the Algorithm 1 model θ0 + α·τm exactly at step 0."""
    out, ctx = _merge(world, "mda_am", rotation=False, steps=0, init_alpha=1.2)
    weights, _ = split_merged(out)
    mda = build("mda").merge(DictSource(world["taus"]), MergeContext(regime="full", tasks=list(TASKS)))
    for k, v in weights.items():
        assert torch.allclose(v, 1.2 * mda[k], atol=1e-5), k
    assert torch.allclose(torch.tensor(ctx.aux["coefficients"]["lambda"]), torch.tensor(1.2))
    assert ctx.aux["init"] == {"lambda": 1.2, "from_method": "mda"}
    # after training, λ stays inside the clamp range
    _, ctx = _merge(world, "mda_am", rotation=False, steps=4, lr=1.0, init_alpha=2.9)
    lam = torch.tensor(ctx.aux["coefficients"]["lambda"])
    assert (lam >= 0).all() and (lam <= 3).all()


def test_init_errors_name_the_parameter(world):
    with pytest.raises(MethodConfigError, match="--init-from"):
        _merge(world, "mda_am", steps=0, init_alpha=None)
    with pytest.raises(MethodConfigError, match="clamp_range"):
        _merge(world, "mda_am", steps=0, init_alpha=3.5)
    with pytest.raises(MethodConfigError, match="clamp_range"):
        build("adamerging", init=1.5)
    with pytest.raises(MethodConfigError, match="init_method"):
        build("adamerging", init="from_method")
    with pytest.raises(MethodConfigError, match="clamp_range"):
        build("mda_am", clamp_range=[1.0, 0.0])
    # a numeric start stays possible, and the clamp can be widened for it
    assert build("mda_am", init=0.4).params["init"] == 0.4
    assert build("adamerging", init=1.5, clamp_range=[0, 2]).params["clamp_range"] == (0.0, 2.0)


def test_saved_rotations_and_coefficients_reload_to_identical_evaluation(world, tmp_path):
    out, _ = _merge(world, "mda_am", steps=6, rotation_lr=0.05)
    path = tmp_path / "merged.safetensors"
    save_tensors(out, path)
    loaded = load_tensors(path)
    assert set(loaded) == set(out)
    ev = MemEvaluator(world)
    mem = [ev.evaluate(i, out, 1.0, "test") for i in range(3)]
    disk = [ev.evaluate(i, loaded, 1.0, "test") for i in range(3)]
    assert mem == disk
    # and the logits themselves are identical, and the rotation is really applied
    x = normalize_images(world["data"][(1, "test")][0])
    logits = []
    for tau in (out, loaded):
        ev.set_weights(tau, 1.0)
        with torch.no_grad():
            f = ev.encoder(x)
            logits.append(RotatedHead(ev.heads[1], ev.rotations["b"]).logits(f))
            plain = ev.heads[1].logits(f)
    ev.set_weights(None, 0.0)
    assert torch.equal(logits[0], logits[1])
    assert not torch.allclose(logits[0], plain)
    assert ev.rotations == {}
    # the coefficient keys are not weights: the evaluator ignores them
    assert any(k.startswith(COEFFICIENT_PREFIX) for k in loaded)
    assert any(k.startswith(ROTATION_PREFIX) for k in loaded)


def test_individual_path_unaffected(world):
    ev = MemEvaluator(world)
    tau = world["taus"][0]
    ev.set_weights(tau, 1.0)
    assert ev.rotations == {}
    ev.set_weights(None, 0.0)


def test_entropy_helper():
    logits = torch.tensor([[0.0, 0.0], [100.0, 0.0]])
    ent = softmax_entropy(logits)
    assert torch.allclose(ent, torch.tensor([0.6931472, 0.0]), atol=1e-5)


def test_ablation_figures(tmp_path):
    import json

    from mergelab.plots_ablation import generalization_report, task_count_figure
    paths = []
    for m, base in (("task_arithmetic", 0.9), ("mda_am", 0.95)):
        for n in (4, 8):
            tasks = [f"t{i}" for i in range(n)]
            p = tmp_path / f"{m}_{n}.json"
            p.write_text(json.dumps({"method": m, "tasks": tasks,
                                     "test_normalized": {t: base - 0.01 * n for t in tasks}}))
            paths.append(p)
    pts = task_count_figure(paths, tmp_path / "tc", method_order=["task_arithmetic", "mda_am"])
    assert pts["mda_am"] == [(4, pytest.approx(91.0)), (8, pytest.approx(87.0))]
    assert all((tmp_path / f"tc.{e}").exists() for e in ("png", "pdf", "json"))
    gen = []
    for m, acc in (("ties", 0.4), ("mda_am", 0.5)):
        p = tmp_path / f"gen_{m}.json"
        p.write_text(json.dumps({"method": m, "regime": "full", "suite": "main", "heldout": ["x", "y"],
                                 "test": {"x": acc, "y": acc}, "zeroshot": {"x": 0.3, "y": 0.2},
                                 "mean": acc, "mean_zeroshot": 0.25}))
        gen.append(p)
    rows = generalization_report(gen, tmp_path / "gen", tmp_path / "genfig", method_order=["ties", "mda_am"])
    assert [r["method"] for r in rows] == ["zeroshot", "ties", "mda_am"]
    assert rows[0]["mean"] == pytest.approx(25.0)
    assert all((tmp_path / f) .exists() for f in ("gen.md", "gen.csv", "gen.json", "genfig.png", "genfig.pdf"))
