"""End to end: the micro config through Snakemake, then rerun behaviour.

The workflow (Snakefile, rules, profiles, src) is copied into a temporary
directory so that the tests can edit code and config without touching the
checkout.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mergelab.artifacts import job_counts

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str, check: bool = True, targets: tuple[str, ...] = (),
              env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # targets go before --configfile, which takes every following word as a config file
    cmd = [SNAKEMAKE, "--cores", "2", *targets, "--configfile", "config/micro.yaml", *args]
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(workdir),
           "PYTHONHASHSEED": "0", **(env_extra or {})}
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def planned_jobs(workdir: Path) -> dict[str, int]:
    """Rule -> job count of a dry run (empty when nothing is to be done)."""
    return job_counts(snakemake(workdir, "-n", "--quiet", "rules").stdout)


def copy_workflow(dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "rules", "profiles", "src", "config", "envs", "report"):
        src = ROOT / name
        if src.is_dir():  # config/paper/ is not needed; src/mergelab/data/paper/ is
            skip = ("__pycache__", "*.egg-info") + (("paper",) if name == "config" else ())
            shutil.copytree(src, dst / name, symlinks=True, ignore=shutil.ignore_patterns(*skip))
        else:
            shutil.copy2(src, dst / name)
    shutil.copy2(ROOT / "tests" / "micro" / "config.yaml", dst / "config" / "micro.yaml")
    return dst


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    wd = copy_workflow(tmp_path_factory.mktemp("micro"))
    snakemake(wd)
    return wd


def results(wd: Path) -> Path:
    return wd / "results" / "micro"


def test_outputs_exist_and_are_complete(run_dir):
    R = results(run_dir)
    cfg = yaml.safe_load((run_dir / "config" / "micro.yaml").read_text())
    for regime in cfg["regimes"]:
        for suite in cfg["suites"]:
            for ext in ("md", "tex", "csv"):
                assert (R / "tables" / f"{regime}_{suite}.{ext}").stat().st_size > 0
            for ext in ("png", "pdf"):
                assert (R / "figures" / f"accuracy_{regime}_{suite}.{ext}").stat().st_size > 0
    md = (R / "tables" / f"full_{next(iter(cfg['suites']))}.md").read_text()
    assert "Zero-shot" in md and "Individual" in md and "Task arithmetic" in md
    assert " ± " in md and "Δ TA" in md and "paired bootstrap" in md  # intervals (docs/uncertainty.md)
    table = json.loads((R / "tables" / f"full_{next(iter(cfg['suites']))}.json").read_text())
    assert table["seeds"] == [cfg["seed"]] and not table["seeded_paths"]
    assert all(r["normalized_lo"] <= r["normalized"] <= r["normalized_hi"] for r in table["rows"])
    regime = (R / "tables" / "regime.md").read_text()  # with the pairwise disentanglement matrix
    assert "zero-shot average" in regime and "Weight-disentanglement error (%)" in regime
    ev = json.loads((R / "eval" / "full" / next(iter(cfg["suites"])) / "ties.json").read_text())
    assert ev["alpha"] in ev["alpha_grid"]
    prov = ev["provenance"]
    assert prov["code_version"] and "torch" in prov["packages"] and prov["seed"] == cfg["seed"]
    assert prov["config"]["alpha_grid"] == ev["alpha_grid"]
    # every rule wrote a log
    assert any((R / "logs" / "merge").rglob("*.log"))


def test_predictions_round_trip_to_the_metrics(run_dir):
    """Every evaluation wrote its per-sample predictions, and they give back the metrics
    JSON's accuracies exactly (validation: at the chosen α)."""
    from mergelab.predictions import load_predictions, predictions_path
    evals = sorted((results(run_dir) / "eval").rglob("*.json"))
    assert len(evals) >= 12
    for p in evals:
        d = json.loads(p.read_text())
        preds = load_predictions(predictions_path(p))
        for split in ("validation", "test"):
            assert set(preds[split]) == set(d[split]), (p, split)
            for task, acc in d[split].items():
                assert preds[split][task].accuracy == acc, (p, split, task)
                assert (preds[split][task].correct == (preds[split][task].margin > 0)).mean() > 0.99


def test_changing_the_bootstrap_reruns_only_the_tables(run_dir):
    cfg_path = run_dir / "config" / "micro.yaml"
    original = cfg_path.read_text()
    cfg = yaml.safe_load(original)
    cfg["report"] = {"bootstrap": {"samples": 500}}
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    try:
        jobs = planned_jobs(run_dir)
    finally:
        cfg_path.write_text(original)
    n = len(cfg["regimes"]) * len(cfg["suites"])
    assert jobs == {"report": n, "manifest": 1, "all": 1}, jobs


def test_nothing_to_do_after_run(run_dir):
    assert planned_jobs(run_dir) == {}


def test_hyperparameter_change_reruns_only_that_method(run_dir):
    cfg_path = run_dir / "config" / "micro.yaml"
    original = cfg_path.read_text()
    cfg = yaml.safe_load(original)
    cfg["methods"]["ties"]["params"] = {"k": 50}
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    try:
        jobs = planned_jobs(run_dir)
    finally:
        cfg_path.write_text(original)
    n_reg, n_suites = len(cfg["regimes"]), len(cfg["suites"])
    # the method's merges, their evaluations, the tables, the run manifest; nothing else
    assert jobs == {"merge": n_reg * n_suites, "eval_merged": n_reg * n_suites,
                    "report": n_reg * n_suites, "manifest": 1, "all": 1}, jobs


def test_method_code_change_reruns_its_merges(run_dir):
    src = run_dir / "src" / "mergelab" / "methods" / "basic.py"
    text = src.read_text()
    src.write_text(text + "\n# edited\n")
    try:
        jobs = planned_jobs(run_dir)
        cfg = yaml.safe_load((run_dir / "config" / "micro.yaml").read_text())
        from mergelab import methods as M
        affected = [m for m, spec in cfg["methods"].items()
                    if "basic.py" in {p.name for p in M.source_files(spec["method"])}]
        n = len(cfg["regimes"]) * len(cfg["suites"])
        assert jobs["merge"] == len(affected) * n, jobs
        assert "finetune" not in jobs and "extract_task_vector" not in jobs
    finally:
        src.write_text(text)
        # restore the old mtime order: a rerun of the affected merges makes it consistent
        snakemake(run_dir)


def test_rerun_is_deterministic(run_dir, tmp_path):
    """A second run from scratch of the full-fine-tuning half of the DAG (data, θ0, heads,
    fine-tuning, task vectors, merges, evaluations, its table) gives identical tensors,
    predictions, metrics and tables. Then one fine-tuning, one merge and one evaluation are
    forced again with every job in its own process (MERGELAB_FORKSERVER=off; both runs use
    the fork server): identical too, so the fork server does not change results. The LoRA
    half is left out to keep `make test` short: it runs the same job code."""
    from mergelab.runcompare import compare_runs
    wd2 = copy_workflow(tmp_path / "again")
    snakemake(wd2, targets=("results/micro/tables/full_trio.json",))
    a, b = results(run_dir), results(wd2)
    cmp = compare_runs(a, b)  # tensors, predictions, metrics and tables, bit for bit
    assert not (cmp.differ or cmp.only_b), cmp.summary()
    assert all("lora" in name or "regime" in name or "/lowrank/" in name for name in cmp.only_a), cmp.summary()
    assert cmp.compared >= 40, cmp.summary()

    own = {"finetune/full/signs.safetensors": "finetune/full/signs.log",  # output: its log
           "merged/full/trio/ties.safetensors": "merge/full/trio/ties.log",
           "eval/full/trio/ties.json": "eval/full/trio/ties.log"}
    for out in own:
        (b / out).unlink()
    snakemake(wd2, "--force", targets=tuple(f"results/micro/{out}" for out in own),
              env_extra={"MERGELAB_FORKSERVER": "off"})
    for log in own.values():
        assert "mergelab: job forked" in (a / "logs" / log).read_text(), log
        assert "mergelab: job forked" not in (b / "logs" / log).read_text(), log
    cmp = compare_runs(a, b)
    assert not (cmp.differ or cmp.only_b), cmp.summary()
