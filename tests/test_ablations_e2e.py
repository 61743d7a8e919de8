"""End to end: the ablation rules (rules/ablations.smk and the analysis sweeps) on a
cut-down micro config: generalization of a 2-task merge to a held-out task, accuracy
vs number of merged tasks (2 and 3), MDA AM with and without rotation, and the MDA
rank-k sensitivity sweep. Checks the tables, figures and their numbers against the
per-method evaluation JSONs the rules read."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, copy_nano_workflow, smk

pytestmark = pytest.mark.slow


def ablation_config() -> dict:
    cfg = yaml.safe_load((ROOT / "tests" / "micro" / "config.yaml").read_text())
    cfg.update(name="micro-ablations", results_dir="results/abl", regimes=["full"])
    cfg["data"]["root"] = "data/abl"
    cfg["data"]["tasks"]["shapes"] = {"source": "mini"}
    cfg["suites"] = {"duo": ["digits", "signs"], "trio": ["digits", "signs", "textures"]}
    am = {"steps": 3, "lr": 0.01, "batch_size": 8, "batches_per_step": 1}
    cfg["methods"] = {
        "task_arithmetic": {"method": "task_arithmetic"},
        "mda": {"method": "mda"},
        "mda_am": {"method": "mda_am", "params": am},
        "mda_am_norot": {"method": "mda_am", "params": {**am, "rotation": False}},
    }
    cfg["evaluation"]["alpha_grid"] = [0.5, 1.0]
    cfg["report"] = {"main_suite": "trio"}
    cfg["generalization"] = {"suite": "duo", "heldout": ["shapes"],
                             "methods": ["task_arithmetic", "mda_am"]}
    cfg["task_count"] = {"suites": ["duo", "trio"], "methods": ["task_arithmetic", "mda"]}
    cfg["analysis"] = {"enabled": True, "suite": "trio", "similarity_methods": ["task_arithmetic"],
                       "sweeps": {"mda_k": {"base": "mda", "param": "k_fraction",
                                            "values": [0.1, None], "labels": ["0.1", "1/T"],
                                            "xlabel": "MDA rank k"}}}
    return cfg


@pytest.fixture(scope="module")
def abl_run(tmp_path_factory) -> Path:
    wd = copy_nano_workflow(tmp_path_factory.mktemp("abl") / "wf")
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(ablation_config(), sort_keys=False))
    smk(wd, timeout=1800)
    return wd / "results" / "abl"


def test_generalization_table_matches_eval_jsons(abl_run):
    recs = {m: json.loads((abl_run / "eval" / "full" / "generalization" / f"{m}.json").read_text())
            for m in ("task_arithmetic", "mda_am")}
    for m, rec in recs.items():
        assert rec["merged_tasks"] == ["digits", "signs"] and rec["heldout"] == ["shapes"]
        merged_eval = json.loads((abl_run / "eval" / "full" / "duo" / f"{m}.json").read_text())
        assert rec["alpha"] == merged_eval["alpha"]         # α of the suite's own selection
        assert 0.0 <= rec["test"]["shapes"] <= 1.0
        zs = json.loads((abl_run / "eval" / "full" / "zeroshot" / "shapes.json").read_text())
        assert rec["zeroshot"]["shapes"] == zs["test"]["shapes"]
    table = json.loads((abl_run / "tables" / "generalization_full.json").read_text())
    rows = {r["method"]: r for r in table["rows"]}
    assert list(rows) == ["zeroshot", "task_arithmetic", "mda_am"]
    for m, rec in recs.items():
        assert rows[m]["shapes"] == pytest.approx(100 * rec["test"]["shapes"])
    with open(abl_run / "tables" / "generalization_full.csv") as f:
        assert len(list(csv.reader(f))) == 4               # header + zero-shot + 2 methods
    assert "Avg." in (abl_run / "tables" / "generalization_full.md").read_text()
    for ext in ("png", "pdf"):
        assert (abl_run / "figures" / f"generalization_full.{ext}").stat().st_size > 1000


def test_task_count_figure_points_are_the_suite_averages(abl_run):
    data = json.loads((abl_run / "figures" / "task_count_full.json").read_text())
    assert set(data["points"]) == {"task_arithmetic", "mda"}
    for m, pts in data["points"].items():
        assert [n for n, _ in pts] == [2, 3]
        for (n, y), suite in zip(pts, ("duo", "trio")):
            ev = json.loads((abl_run / "eval" / "full" / suite / f"{m}.json").read_text())
            norm = ev["test_normalized"]
            assert y == pytest.approx(100 * sum(norm[t] for t in ev["tasks"]) / n)
    for ext in ("png", "pdf"):
        assert (abl_run / "figures" / f"task_count_full.{ext}").stat().st_size > 1000


def test_rotation_ablation_and_sweep_outputs(abl_run):
    from safetensors import safe_open
    with safe_open(str(abl_run / "merged" / "full" / "trio" / "mda_am.safetensors"), "pt") as f:
        rot = [k for k in f.keys() if k.startswith("feature_rotation.")]
    assert sorted(rot) == ["feature_rotation.digits", "feature_rotation.signs", "feature_rotation.textures"]
    with safe_open(str(abl_run / "merged" / "full" / "trio" / "mda_am_norot.safetensors"), "pt") as f:
        assert not any(k.startswith("feature_rotation.") for k in f.keys())
    rows = list(csv.DictReader(open(abl_run / "tables" / "full_trio.csv")))
    assert {"mda_am", "mda_am_norot"} <= {r[next(iter(r))] for r in rows}
    for ext in ("png", "pdf"):
        assert (abl_run / "figures" / "analysis" / f"sensitivity_mda_k.{ext}").stat().st_size > 1000
    sweep = json.dumps(json.loads((abl_run / "figures" / "analysis" / "sensitivity_mda_k.json").read_text()))
    assert "0.1" in sweep and "1/T" in sweep


def test_mda_am_starts_at_the_validated_mda_alpha(abl_run):
    """The mda_am merge read the mda eval JSON of its own suite and started λ at its α."""
    for suite in ("duo", "trio"):
        mda = json.loads((abl_run / "eval" / "full" / suite / "mda.json").read_text())
        for inst in ("mda_am", "mda_am_norot"):
            info = json.loads((abl_run / "merged" / "full" / suite / f"{inst}.json").read_text())
            assert info["aux"]["init_from"]["alpha"] == mda["alpha"]
            assert info["aux"]["init"] == {"lambda": mda["alpha"], "from_method": "mda"}


def test_task_level_etf_figure(abl_run):
    """analysis_etf: the task-level ΔETF of the similarity methods, per layer key; task
    arithmetic's contributions are the task vectors themselves (Euler residual ≈ 0)."""
    data = json.loads((abl_run / "figures" / "analysis" / "etf_full.json").read_text())
    assert data["method_order"] == ["task_arithmetic"] and data["tasks"] == ["digits", "signs", "textures"]
    rows = data["layers"]["task_arithmetic"]
    assert rows and all(0 <= r["delta_etf"] and r["euler_residual"] < 1e-3 for r in rows)
    assert data["mda_components"]["layers"]
    for ext in ("png", "pdf"):
        assert (abl_run / "figures" / "analysis" / f"etf_full.{ext}").stat().st_size > 1000
