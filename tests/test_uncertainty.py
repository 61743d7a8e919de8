"""Per-sample predictions, paired bootstrap intervals, seeds (docs/uncertainty.md).

Tables are built from fabricated evaluation outputs (metrics JSON + predictions file)
whose accuracies are known, so every expected value comes from arithmetic here.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from mergelab.artifacts import job_counts
from mergelab.config import ConfigError, validate_config
from mergelab.io import ArtifactError, save_json
from mergelab.predictions import (TaskPredictions, accuracy_of, load_predictions, predictions_path,
                                  save_predictions)
from mergelab.report import build_table, make_report, rank_figure
from mergelab.uncertainty import (Bootstrap, average_ranks, interval, kendall_tau,
                                  resampled_accuracies, summary_metrics)

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["a", "b"]
N = 400


def preds_with(correct: np.ndarray, n_classes: int = 5, seed: int = 0) -> TaskPredictions:
    """Predictions whose correctness is ``correct`` (labels drawn at random)."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, n_classes, len(correct))
    pred = np.where(correct, label, (label + 1) % n_classes)
    margin = np.where(correct, 1.0, -1.0).astype(np.float32)
    return TaskPredictions(np.arange(len(correct)), label, pred, margin)


def correct_with(k: int, n: int = N, seed: int = 0) -> np.ndarray:
    """Exactly k of n correct, at random positions."""
    c = np.zeros(n, bool)
    c[np.random.default_rng(seed).choice(n, k, replace=False)] = True
    return c


def write_eval(path: Path, kind: str | None, seed: int, correct: dict[str, np.ndarray],
               alpha: float | None = None) -> Path:
    """A metrics JSON as the evaluate rules write it, and its predictions file."""
    preds = {t: preds_with(c) for t, c in correct.items()}  # same labels for every row (seed 0)
    d = {"test": {t: p.accuracy for t, p in preds.items()}, "provenance": {"seed": seed}}
    if kind in ("zeroshot", "individual"):
        d["kind"] = kind
    else:
        d.update(method=kind, alpha=alpha)
    save_predictions({"test": preds}, predictions_path(path))
    save_json(d, path)
    return path


def spec(seeds=(0,), **kw) -> dict:
    return {"name": "t", "suites": {"s": TASKS}, "method_order": ["task_arithmetic", "ties", "ta_copy"],
            "seeds": list(seeds), "bootstrap": {"samples": 400, "confidence": 0.95, "seed": 0}, **kw}


def fabricate(tmp: Path, seeds=(0,), shift: int = 0) -> list[Path]:
    """zero-shot 40/60 %, individual 90/80 %, task arithmetic 70/65 %, ties 72/64 %
    (+ shift per seed), and ta_copy with task arithmetic's exact predictions."""
    out = [write_eval(tmp / "zs.json", "zeroshot", 0, {"a": correct_with(160), "b": correct_with(240)})]
    for k, s in enumerate(seeds):
        d = tmp / f"seed{s}"
        out.append(write_eval(d / "ind.json", "individual", s, {"a": correct_with(360, seed=1 + k),
                                                               "b": correct_with(320, seed=1 + k)}))
        ta = {"a": correct_with(280 + shift * k, seed=2 + k), "b": correct_with(260, seed=2 + k)}
        out.append(write_eval(d / "ta.json", "task_arithmetic", s, ta, alpha=0.3))
        out.append(write_eval(d / "ties.json", "ties", s, {"a": correct_with(288, seed=3 + k),
                                                           "b": correct_with(256 - shift * k, seed=3 + k)},
                              alpha=0.4 + 0.1 * k))
        out.append(write_eval(d / "copy.json", "ta_copy", s, ta, alpha=0.3))
    return out


def row(df, method):
    return df.set_index("method").loc[method]


# ---------------------------------------------------------------- predictions files


def test_predictions_round_trip_exactly(tmp_path):
    p = preds_with(correct_with(123, 401))
    path = save_predictions({"test": {"a": p}, "validation": {"a": p}}, tmp_path / "m.npz")
    back = load_predictions(path)
    assert set(back) == {"test", "validation"}
    q = back["test"]["a"]
    for f in ("index", "label", "pred", "margin"):
        assert np.array_equal(getattr(q, f), getattr(p, f))
    assert q.accuracy == 123 / 401 == accuracy_of(p.label, p.pred)
    with np.load(path, allow_pickle=False) as z:  # plain arrays, no pickled objects
        assert z["test/a/index"].dtype == np.int32 and z["test/a/margin"].dtype == np.float32


def test_predictions_file_errors_name_the_file(tmp_path):
    with pytest.raises(ArtifactError, match="missing.npz"):
        load_predictions(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{"test/a/index": np.arange(3)})
    with pytest.raises(ArtifactError, match="lacks array"):
        load_predictions(bad)


def test_report_refuses_predictions_that_disagree_with_the_json(tmp_path):
    files = fabricate(tmp_path)
    d = json.loads(files[2].read_text())
    d["test"]["a"] += 1 / N
    files[2].write_text(json.dumps(d))
    with pytest.raises(ArtifactError, match="stale predictions"):
        build_table(spec(), files, "full", "s")


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_interval_matches_the_binomial_normal_approximation():
    n, p = 4000, 0.7
    boot = Bootstrap(samples=4000, confidence=0.95, seed=3)
    reps = resampled_accuracies(correct_with(int(p * n), n)[None], boot, "t")[0]
    lo, hi = interval(reps, 0.95)
    half = 1.959964 * math.sqrt(p * (1 - p) / n)  # 0.0142
    assert abs(reps.mean() - p) < 0.1 * half
    assert lo == pytest.approx(p - half, abs=0.1 * half)
    assert hi == pytest.approx(p + half, abs=0.1 * half)


def test_bootstrap_is_seeded_and_per_task():
    c = correct_with(100, 300)[None]
    a = resampled_accuracies(c, Bootstrap(200, 0.95, 0), "x")
    assert np.array_equal(a, resampled_accuracies(c, Bootstrap(200, 0.95, 0), "x"))
    assert not np.array_equal(a, resampled_accuracies(c, Bootstrap(200, 0.95, 0), "y"))
    assert not np.array_equal(a, resampled_accuracies(c, Bootstrap(200, 0.95, 1), "x"))


def test_identical_rows_have_a_zero_width_paired_difference(tmp_path):
    df, summary = build_table(spec(), fabricate(tmp_path), "full", "s")
    copy, ties = row(df, "ta_copy"), row(df, "ties")
    for m in ("avg", "normalized", "nai"):
        assert copy[f"d_ta_{m}"] == copy[f"d_ta_{m}_lo"] == copy[f"d_ta_{m}_hi"] == 0
        assert copy[f"{m}_lo"] < copy[f"{m}_hi"]  # the rows themselves are uncertain
    assert ties["d_ta_normalized_lo"] < ties["d_ta_normalized_hi"]


def test_paired_differences_of_similar_rows_are_narrow():
    """Two rows that differ on 10 of 1000 images: each is uncertain by about ±2.8 points,
    their paired difference (+1 point) only by about ±0.6."""
    a = correct_with(700, 1000)
    b = a.copy()
    b[np.flatnonzero(~a)[:10]] = True
    reps = resampled_accuracies(np.stack([a, b]), Bootstrap(2000, 0.95, 0), "t")
    lo, hi = interval(reps[1] - reps[0], 0.95)
    rlo, rhi = interval(reps[0], 0.95)
    assert 0 < lo < 0.01 < hi < 0.02
    assert hi - lo < (rhi - rlo) / 3


def test_averages_point_estimates_and_their_consistency(tmp_path):
    df, summary = build_table(spec(), fabricate(tmp_path), "full", "s")
    zs, ind, ta = (np.array(v) for v in ([.4, .6], [.9, .8], [.7, .65]))
    r = row(df, "task_arithmetic")
    assert r["a"] == pytest.approx(70) and r["b"] == pytest.approx(65)
    assert r["avg"] == pytest.approx(100 * ta.mean())
    assert r["normalized"] == pytest.approx(100 * (ta / ind).mean())
    assert r["nai"] == pytest.approx(100 * ((ta - zs) / (ind - zs)).mean())
    # the references are exact in every resample: individual = 100 % normalized and NAI,
    # zero-shot = 0 % NAI (the same summary_metrics on points and resamples)
    i, z = row(df, "individual"), row(df, "zeroshot")
    assert i["normalized"] == i["normalized_lo"] == i["normalized_hi"] == pytest.approx(100)
    assert i["nai_lo"] == i["nai_hi"] == pytest.approx(100)
    assert z["nai_lo"] == z["nai_hi"] == pytest.approx(0)
    for m in ("avg", "normalized", "nai"):
        assert (df[f"{m}_lo"] <= df[m] + 1e-9).all() and (df[m] <= df[f"{m}_hi"] + 1e-9).all()
    assert summary["best"] == "ties" and summary["compare_on"] == "normalized"


def test_summary_metrics_leaves_out_tasks_where_individual_equals_zeroshot():
    acc, zs, ind = np.array([0.7, 0.5]), np.array([0.4, 0.5]), np.array([0.9, 0.5])
    m = summary_metrics(acc, zs, ind)
    assert m["nai"] == pytest.approx(100 * 0.3 / 0.5)
    assert m["normalized"] == pytest.approx(100 * (0.7 / 0.9 + 1) / 2)


def test_rows_not_distinguishable_from_the_best_are_marked(tmp_path):
    df, summary = build_table(spec(), fabricate(tmp_path), "full", "s")
    best = row(df, "ties")
    assert best["tied_with_best"] and best["d_best_normalized"] == 0
    # task arithmetic and its copy are 1.2 points below ties on 400 images a task: noise
    assert row(df, "task_arithmetic")["tied_with_best"] == (row(df, "task_arithmetic")["d_best_normalized_hi"] >= 0)
    assert not row(df, "individual")["tied_with_best"] and not row(df, "zeroshot")["tied_with_best"]


def test_a_clear_gap_is_not_marked(tmp_path):
    files = fabricate(tmp_path)
    write_eval(files[3], "ties", 0, {"a": correct_with(340, seed=9), "b": correct_with(300, seed=9)}, 0.4)
    df, summary = build_table(spec(), files, "full", "s")
    assert summary["best"] == "ties"
    assert not row(df, "task_arithmetic")["tied_with_best"]
    assert row(df, "task_arithmetic")["d_best_normalized_hi"] < 0


# ---------------------------------------------------------------- seeds


def test_seeds_aggregate_mean_spread_and_ranks(tmp_path):
    files = fabricate(tmp_path, seeds=(0, 1, 2), shift=20)
    df, summary = build_table(spec(seeds=(0, 1, 2)), files, "full", "s")
    ta = row(df, "task_arithmetic")
    per_seed = [summary["per_seed"][s]["task_arithmetic"]["avg"] for s in (0, 1, 2)]
    assert per_seed == pytest.approx([100 * (280 + 20 * k + 260) / 800 for k in range(3)])
    assert ta["avg"] == pytest.approx(np.mean(per_seed))
    assert ta["avg_seed_sd"] == pytest.approx(np.std(per_seed, ddof=1))
    assert math.isnan(row(df, "zeroshot")["avg_seed_sd"]) is False  # shared row: sd 0
    assert row(df, "zeroshot")["avg_seed_sd"] == 0
    # seed 0: ties best; seeds 1, 2: task arithmetic (and its copy) best
    assert summary["ranks"][0]["ties"] == 1 and summary["ranks"][2]["ties"] == 3
    assert summary["ranks"][2]["task_arithmetic"] == summary["ranks"][2]["ta_copy"] == 1.5
    assert set(summary["kendall_tau"]) == {"0-1", "0-2", "1-2"}
    assert summary["kendall_tau"]["1-2"] == pytest.approx(1.0)
    assert ta["alpha"] == 0.3 and math.isnan(row(df, "ties")["alpha"])


def test_a_seed_missing_for_a_method_is_an_error(tmp_path):
    files = [f for f in fabricate(tmp_path, seeds=(0, 1)) if f != tmp_path / "seed1" / "ties.json"]
    with pytest.raises(ArtifactError, match="'ties' has no result for seed"):
        build_table(spec(seeds=(0, 1)), files, "full", "s")


def test_kendall_tau_and_ranks_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.integers(0, 4, 7).astype(float), rng.integers(0, 4, 7).astype(float)
        expected = stats.kendalltau(x, y).statistic
        got = kendall_tau(x, y)
        assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)
        assert np.array_equal(average_ranks(x), stats.rankdata(-x))


# ---------------------------------------------------------------- outputs


def test_tables_and_figures_carry_the_intervals(tmp_path):
    files = fabricate(tmp_path / "in", seeds=(0, 1), shift=4)
    out = tmp_path / "out"
    make_report(spec(seeds=(0, 1)), files, out, "full", "s")
    md = (out / "tables" / "full_s.md").read_text()
    assert "| Method | a | b | Avg. | Norm. | NAI | Δ TA | Δ best | α |" in md
    line = next(ln for ln in md.splitlines() if ln.startswith("| Task arithmetic"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    import re
    assert re.fullmatch(r"\d+\.\d ± \d+\.\d \(\d+\.\d\)", cells[3].strip("*")), cells
    assert cells[6] == "0"  # Δ TA of task arithmetic itself
    assert "**" in md and "Kendall τ" in md and "2 seeds" in md
    tex = (out / "tables" / "full_s.tex").read_text()
    assert r"$\pm$" in tex and r"\textbf{" in tex and "±" not in tex
    csv = (out / "tables" / "full_s.csv").read_text().splitlines()
    for col in ("normalized_lo", "normalized_hi", "normalized_seed_sd", "d_ta_normalized_lo",
                "d_best_normalized_hi", "tied_with_best", "alpha_per_seed"):
        assert col in csv[0].split(",")
    tj = json.loads((out / "tables" / "full_s.json").read_text())
    assert tj["seeds"] == [0, 1] and tj["bootstrap"]["samples"] == 400
    assert {r["method"] for r in tj["rows"]} == {"zeroshot", "individual", "task_arithmetic", "ties", "ta_copy"}
    assert (out / "figures" / "accuracy_full_s.png").stat().st_size > 0
    rank_figure(out / "tables" / "full_s.json", out / "figures" / "ranks_full_s")
    assert (out / "figures" / "ranks_full_s.png").stat().st_size > 0
    assert (out / "figures" / "ranks_full_s.pdf").stat().st_size > 0


def test_single_seed_table_has_no_seed_spread(tmp_path):
    out = tmp_path / "out"
    make_report(spec(), fabricate(tmp_path / "in"), out, "full", "s")
    md = (out / "tables" / "full_s.md").read_text()
    assert "(" not in md.split("\n")[4] and "Kendall" not in md


# ---------------------------------------------------------------- config and DAG


def test_seeds_key_is_validated():
    cfg = yaml.safe_load((ROOT / "tests" / "micro" / "config.yaml").read_text())
    assert validate_config(cfg)["seeds"] is None
    for bad in ([], [0, 0], [-1], 3):
        with pytest.raises(ConfigError, match="config key 'seeds"):
            validate_config({**cfg, "seeds": bad})
    with pytest.raises(ConfigError, match="report.bootstrap.samples"):
        validate_config({**cfg, "report": {"bootstrap": {"samples": 10}}})


def test_seeds_mini_config_is_the_default_plus_three_seeds():
    default = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    seeds = yaml.safe_load((ROOT / "config" / "seeds_mini.yaml").read_text())
    assert seeds["seeds"] == [0, 1, 2] and seeds["seed"] == default["seed"]
    assert seeds["data"]["root"] == default["data"]["root"]  # same datasets
    assert seeds["results_dir"] != default["results_dir"]
    differ = {k for k in set(default) | set(seeds) if default.get(k) != seeds.get(k)}
    assert differ == {"name", "results_dir", "seeds", "analysis"}, differ
    validate_config(seeds)


def _dry_run(workdir: Path, config: str) -> str:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(workdir)}
    proc = subprocess.run([str(Path(sys.executable).with_name("snakemake")), "-n", "-p", "--cores", "1",
                           "--configfile", config], cwd=workdir, capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_a_seed_list_replicates_finetuning_merging_and_evaluation(tmp_path):
    import shutil
    for name in ("Snakefile", "rules", "src", "config", "envs", "report", "profiles"):
        src = ROOT / name
        (shutil.copytree(src, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
         if src.is_dir() else shutil.copy2(src, tmp_path / name))
    cfg = yaml.safe_load((ROOT / "tests" / "micro" / "config.yaml").read_text())
    cfg["seeds"] = [0, 1]
    (tmp_path / "config" / "seeds.yaml").write_text(yaml.safe_dump(cfg))
    out = _dry_run(tmp_path, "config/seeds.yaml")
    jobs = job_counts(out)
    R, T, M, S = 2, len(cfg["data"]["tasks"]), len(cfg["methods"]), 2  # regimes, tasks, methods, seeds
    assert jobs == {"build_corpus": 1, "prepare_task": T, "pretrain": 1, "heads": T,
                    "eval_zeroshot": R * T, "finetune": S * R * T, "extract_task_vector": S * R * T,
                    "eval_individual": S * R * T, "merge": S * R * M, "eval_merged": S * R * M,
                    "report": R, "report_ranks": R, "manifest": 1, "all": 1,
                    # the regime report reads the first seed's run (rules/regime.smk)
                    "eval_lowrank": T, "eval_disentanglement": 1, "regime_report": 1}, jobs
    res = "results/micro"
    for s in (0, 1):
        assert f"{res}/seed{s}/finetune/full/digits.safetensors" in out
        assert f"{res}/seed{s}/merged/lora/trio/ties.safetensors" in out
        assert f"{res}/seed{s}/eval/full/trio/task_arithmetic.npz" in out
        assert f'"seed":{s}' in out  # the seed reaches the jobs' specs
    assert f"{res}/eval/full/zeroshot/digits.npz" in out  # shared by the seeds
    assert f"{res}/seed0/eval/full/zeroshot" not in out and f"{res}/seed0/heads" not in out
    assert f"{res}/figures/ranks_lora_trio.png" in out


def test_manifest_traces_every_seed_and_the_predictions(tmp_path):
    from mergelab.manifest import _kind, trace_rows
    table = tmp_path / "t.json"
    rows = [{"method": m} for m in ("zeroshot", "individual", "ties")]
    table.write_text(json.dumps({"regime": "full", "suite": "s", "seeds": [0, 1],
                                 "seeded_paths": True, "rows": rows}))
    traced = trace_rows(table, "R", "D", TASKS)
    ties = traced["ties"]
    for s in (0, 1):
        assert f"R/seed{s}/eval/full/s/ties.npz" in ties and f"R/seed{s}/merged/full/s/ties.safetensors" in ties
        assert f"R/seed{s}/finetune/full/a.safetensors" in traced["individual"]
    assert "R/eval/full/zeroshot/b.npz" in traced["zeroshot"] and "R/heads/a.safetensors" in ties
    assert _kind("R/seed1/eval/full/s/ties.npz") == "predictions"
    # a single-seed table keeps the historical paths
    table.write_text(json.dumps({"regime": "full", "suite": "s", "seeds": [0], "rows": rows}))
    assert "R/eval/full/s/ties.npz" in trace_rows(table, "R", "D", TASKS)["ties"]
