"""Analysis quantities and figures."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from mergelab import analysis
from mergelab.plots_analysis import (analysis_etf, analysis_similarity, analysis_spectrum,
                                     plot_sensitivity)


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
    rows = analysis_etf(paths, names, None, out / "etf.png", out / "etf.pdf", out / "etf.json")
    assert rows and all(r["after"] < r["before"] for r in rows)
    summary = json.loads((out / "etf.json").read_text())
    assert summary["mean_after"] < summary["mean_before"]

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
