"""Analysis quantities and figures."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from mergelab import analysis
from mergelab.methods import build
from mergelab.methods.basic import TaskArithmetic
from mergelab.methods.mda import etf_gram
from mergelab.plots_analysis import (analysis_etf, analysis_similarity, analysis_spectrum,
                                     mda_sign_spread_report, plot_sensitivity)


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_cos_and_dir_sim_self_is_one():
    a = _rand(12, 8)
    assert analysis.cos_sim(a, a) == pytest.approx(1.0)
    assert analysis.dir_sim(a, a) == pytest.approx(1.0)
    assert analysis.dir_sim(a, a, top_n=3) == pytest.approx(1.0)


def test_cos_sim_scale_invariant_and_dir_sim_ignores_sigma():
    a, b = _rand(10, 7, seed=1), _rand(10, 7, seed=2)
    assert analysis.cos_sim(3.5 * a, 0.2 * b) == pytest.approx(analysis.cos_sim(a, b))
    assert analysis.cos_sim(-a, a) == pytest.approx(-1.0)
    # DirSim only sees the singular directions: rescaling singular values changes CosSim, not DirSim
    u, s, vh = torch.linalg.svd(a, full_matrices=False)
    a2 = u @ torch.diag(s ** 3) @ vh
    assert analysis.dir_sim(a2, b) == pytest.approx(analysis.dir_sim(a, b), abs=1e-5)
    assert analysis.cos_sim(a2, b) != pytest.approx(analysis.cos_sim(a, b), abs=1e-3)


def test_orthogonal_matrices_give_zero():
    a = torch.zeros(6, 6)
    a[:3, :3] = _rand(3, 3, seed=3)
    b = torch.zeros(6, 6)
    b[3:, 3:] = _rand(3, 3, seed=4)
    assert analysis.cos_sim(a, b) == pytest.approx(0.0, abs=1e-12)
    assert analysis.dir_sim(a, b) == pytest.approx(0.0, abs=1e-12)
    assert analysis.cos_sim(a, torch.zeros(6, 6)) == 0.0


def test_dir_sim_matches_definition():
    a, b = _rand(9, 6, seed=5), _rand(9, 6, seed=6)
    n = 4
    ua, _, vha = torch.linalg.svd(a.double(), full_matrices=False)
    ub, _, vhb = torch.linalg.svd(b.double(), full_matrices=False)
    r = (ua[:, :n].T @ ub[:, :n]) * (vha[:n] @ vhb[:n].T)
    assert analysis.dir_sim(a, b, top_n=n) == pytest.approx(float(r.sum() / n))


def test_spectrum_normalized_and_energy():
    m = torch.diag(torch.tensor([4.0, 2.0, 1.0, 1.0]))
    s = analysis.normalized_spectrum(m)
    assert float(s[0]) == pytest.approx(1.0) and torch.all(s[:-1] >= s[1:])
    assert float(analysis.normalized_spectrum(m, "sum").sum()) == pytest.approx(1.0)
    assert analysis.energy_concentration(torch.tensor([4.0, 2.0, 1.0, 1.0]), 1) == pytest.approx(16 / 22)
    assert analysis.energy_concentration(torch.tensor([1.0, 1.0]), 0.5) == pytest.approx(0.5)


def _write_taskvectors(tmp_path, n=3, width=16, layers=2):
    paths = []
    for t in range(n):
        sd = {}
        for layer in range(layers):
            pre = f"visual.transformer.resblocks.{layer}"
            sd[f"{pre}.attn.in_proj_weight"] = _rand(3 * width, width, seed=100 * t + layer)
            sd[f"{pre}.attn.in_proj_bias"] = _rand(3 * width, seed=100 * t + layer + 50)
            sd[f"{pre}.mlp.c_fc.weight"] = _rand(2 * width, width, seed=100 * t + layer + 7)
        sd["visual.proj"] = _rand(width, 8, seed=t + 999)
        p = tmp_path / f"tv{t}.safetensors"
        save_file(sd, str(p))
        paths.append(p)
    return paths


def test_spectrum_per_task_is_normalized(tmp_path):
    paths = _write_taskvectors(tmp_path)
    res = analysis.spectrum_per_task(paths)
    assert len(res["spectra"]) == 3 and len(res["spectra"][0]) == 16
    assert all(s[0] == pytest.approx(1.0) for s in res["spectra"])
    assert all(0 < e <= 1 for e in res["energy_top10pct"])
    assert all(k.endswith(("in_proj_weight", "c_fc.weight")) for k in res["keys"])


def test_plots_written(tmp_path):
    paths = _write_taskvectors(tmp_path)
    names = ["A", "B", "C"]
    from safetensors.torch import load_file
    tvs = [load_file(str(p)) for p in paths]
    merged = tmp_path / "ta.safetensors"
    save_file({k: sum(tv[k] for tv in tvs) for k in tvs[0]}, str(merged))
    out = tmp_path / "fig"

    res = analysis_spectrum(paths, names, out / "spec.png", out / "spec.pdf")
    sims = analysis_similarity(paths, names, [merged], ["TA"], out / "sim.png", out / "sim.pdf",
                               out_json=out / "sim.json")
    assert sims["cos_tt"][0][0] == pytest.approx(1.0) and sims["dir_tt"][1][1] == pytest.approx(1.0)
    # the sum is positively correlated with each of its summands
    assert all(row[0] > 0.3 for row in sims["cos_tm"])
    methods = [{"name": "TA", "method": "task_arithmetic"}, {"name": "TSV-M", "method": "tsv_m"},
               {"name": "MDA", "method": "mda", "params": {}}]
    etf = analysis_etf(paths, names, methods, "full", out / "etf.png", out / "etf.pdf", out / "etf.json")
    summary = json.loads((out / "etf.json").read_text())
    assert summary == json.loads(json.dumps(etf))
    assert summary["method_order"] == ["TA", "TSV-M", "MDA"] and set(summary["methods"]) == {"TA", "TSV-M", "MDA"}
    assert summary["orthogonal_reference"] == pytest.approx(3 ** -0.5)
    # TSV-M's per-task pieces are orthogonal; MDA's aligned pieces are closer to a simplex
    assert summary["methods"]["TSV-M"]["mean_delta_etf"] == pytest.approx(3 ** -0.5, abs=1e-3)
    assert summary["methods"]["MDA"]["mean_delta_etf"] < summary["methods"]["TSV-M"]["mean_delta_etf"]
    assert all(m["max_euler_residual"] < 1e-2 for m in summary["methods"].values())
    mda_rows = summary["mda_components"]["layers"]
    assert mda_rows and all(r["after"] < r["before"] for r in mda_rows)

    recs = [{"x": m, "y": 0.8 - 0.01 * abs(i - 3), "xtick": t, "label": "DC-Merge"}
            for i, (m, t) in enumerate(zip([8, 4, 2, 1, 0.5, 0.25, 0.125],
                                           ["8r", "4r", "2r", "r", "r/2", "r/4", "r/8"]))]
    plot_sensitivity(recs, "mask size", out / "sens.png", out / "sens.pdf")
    plot_sensitivity([{"x": "0.01", "y": 0.7}, {"x": "1/T", "y": 0.8}, {"x": "0.5", "y": 0.75}],
                     "k (fraction of d_out)", out / "k.png", out / "k.pdf")
    for stem in ("spec", "sim", "etf", "sens", "k"):
        for ext in ("png", "pdf"):
            f = out / f"{stem}.{ext}"
            assert f.exists() and f.stat().st_size > 1000, f
    assert len(res["spectra"]) == 3


# ---------------------------------------------------------------- task-level ΔETF

def _simplex(n, dim=30, seed=0):
    """n unit vectors with pairwise cosine −1/(n−1): sqrt(n/(n−1)) · Q (I − 11ᵀ/n), as rows."""
    q, _ = torch.linalg.qr(torch.randn(dim, n, dtype=torch.float64,
                                       generator=torch.Generator().manual_seed(seed)))
    return ((n / (n - 1)) ** 0.5 * q @ (torch.eye(n, dtype=torch.float64) - 1.0 / n)).T


@pytest.mark.parametrize("n", [2, 3, 8])
def test_task_delta_etf_zero_for_a_simplex_and_scale_invariant(n):
    simplex = _simplex(n).reshape(n, 5, 6)  # per-task "matrices"
    assert analysis.task_delta_etf(simplex) < 1e-12
    scales = torch.linspace(0.1, 7.0, n, dtype=torch.float64)[:, None, None]
    assert analysis.task_delta_etf(simplex * scales) < 1e-12
    other = torch.randn(n, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    d = analysis.task_delta_etf(other)
    assert d > 1e-3
    assert analysis.task_delta_etf(other * scales) == pytest.approx(d, rel=1e-12)
    # orthogonal directions: 1/sqrt(n)
    eye = torch.eye(n, dtype=torch.float64).reshape(n, n, 1)
    assert analysis.task_delta_etf(eye) == pytest.approx(n ** -0.5) == analysis.orthogonal_delta_etf(n)


def test_task_delta_etf_matches_its_definition():
    x = torch.randn(4, 7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    f = x.reshape(4, -1)
    f = f / f.norm(dim=1, keepdim=True)
    g = f @ f.T
    want = float((g - etf_gram(4)).norm() / etf_gram(4).norm())
    assert analysis.task_delta_etf(x) == pytest.approx(want, rel=1e-12)


class _WholeModelTA(TaskArithmetic):
    """Task arithmetic through its own ``merge`` (the whole-model path of the analysis)."""

    def merge(self, store, ctx, progress=lambda x: x):
        return {k: torch.stack(store.get(k)).sum(0) for k in store.keys()}


def test_method_contributions_are_the_per_task_pieces(tmp_path):
    """TA's contributions are the τt themselves, for key-local and whole-model methods;
    TIES's are each task's trimmed, elected share, which sum to its τm."""
    paths = _write_taskvectors(tmp_path, n=3)
    from safetensors.torch import load_file
    tvs = [load_file(str(p)) for p in paths]
    for method in (build("task_arithmetic"), _WholeModelTA()):
        rows = analysis.method_task_etf(paths, method, "full", ["a", "b", "c"])
        assert [r["key"] for r in rows] == analysis.layer_keys(tvs[0], lambda k: tvs[0][k].shape)
        for r in rows:
            want = analysis.task_delta_etf(torch.stack([tv[r["key"]] for tv in tvs]))
            assert r["delta_etf"] == pytest.approx(want, abs=1e-4)
            assert r["euler_residual"] < 1e-4
    ties = analysis.method_task_etf(paths, build("ties", k=20), "full", ["a", "b", "c"])
    assert all(r["euler_residual"] < 1e-4 for r in ties)


def test_method_task_etf_rejects_data_based_methods(tmp_path):
    paths = _write_taskvectors(tmp_path, n=3)
    with pytest.raises(ValueError, match="needs data"):
        analysis.method_task_etf(paths, build("consensus"), "full", ["a", "b", "c"])


# ---------------------------------------------------------------- MDA sign-convention spread

def test_mda_sign_spread(tmp_path):
    paths = _write_taskvectors(tmp_path, n=3)
    res = mda_sign_spread_report(paths, tmp_path / "signs.json", conventions=3)
    assert json.loads((tmp_path / "signs.json").read_text()) == json.loads(json.dumps(res))
    comp, left = res["readings"]["components"], res["readings"]["left_vectors"]
    assert len(comp["model"]["rel_change"]) == 3 and comp["layers"]
    assert comp["max_layer_rel_change"] < 1e-5
    assert left["model"]["max_rel_change"] > 1e-3
    assert 0 < left["model"]["rel_diff_from_tsv"] < 1 and comp["model"]["rel_diff_from_tsv"] > 0


def test_cli_mda_signs(tmp_path, capsys):
    from mergelab.cli import main
    paths = _write_taskvectors(tmp_path, n=3)
    main(["analysis", "mda-signs", "--taskvectors", *map(str, paths), "--conventions", "2",
          "--out-stem", str(tmp_path / "out" / "mda_signs")])
    res = json.loads((tmp_path / "out" / "mda_signs.json").read_text())
    assert res["conventions"] == 2 and set(res["readings"]) == {"components", "left_vectors"}
    assert "etf=left_vectors" in capsys.readouterr().out


def test_sensitivity_records_from_eval_jsons(tmp_path):
    from mergelab.plots_analysis import analysis_sensitivity
    members = {"k_0": {"value": 0.25, "label": "d/4"}, "k_1": {"value": None, "label": None}}
    paths = []
    for i, (method, regime, norm) in enumerate([("k_0", "full", {"a": 0.9, "b": 0.7}),
                                                 ("k_1", "lora", {"a": 1.0, "b": 0.5, "c": 0.6})]):
        p = tmp_path / f"{i}.json"
        p.write_text(json.dumps({"method": method, "regime": regime, "alpha": 0.3 + i,
                                 "test_normalized": norm}))
        paths.append(p)
    spec = {"sweep": "mda_k", "xlabel": None, "members": members}
    out = tmp_path / "sens"
    recs = analysis_sensitivity(paths, spec, out.with_suffix(".png"), out.with_suffix(".pdf"),
                                out.with_suffix(".json"))
    assert [(r["x"], r["xtick"], r["label"], r["method"], r["alpha"]) for r in recs] == \
        [(0.25, "d/4", "full", "k_0", 0.3), ("default", "None", "lora", "k_1", 1.3)]
    assert [r["y"] for r in recs] == pytest.approx([80.0, 70.0])
    assert json.loads(out.with_suffix(".json").read_text()) == {"sweep": "mda_k", "records": recs}
    assert out.with_suffix(".png").stat().st_size > 1000
