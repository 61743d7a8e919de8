"""DVC round trip: a finished run is pushed to a local remote; a fresh git clone pulls
it, and Snakemake then has nothing to do (no pretraining, fine-tuning or task-vector
job), the restored artifacts are byte-identical, and a later config change is still
detected (the pull recorded Snakemake's metadata)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import BIN, copy_run, nano_results, planned, sha_tree, tool_env

pytestmark = pytest.mark.slow

TRAINING = ("pretrain", "finetune", "extract_task_vector")


def sh(cwd: Path, *cmd: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True,
                          env=tool_env(cwd), timeout=900)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return sh(cwd, "git", "-c", "user.name=mergelab test", "-c", "user.email=test@example.com",
              "-c", "init.defaultBranch=main", *args)


def artifacts(cwd: Path, action: str) -> subprocess.CompletedProcess:
    return sh(cwd, sys.executable, "-m", "mergelab.cli", "artifacts", action)


def test_push_then_pull_in_fresh_clone(nano_run, tmp_path):
    remote = tmp_path / "remote"
    origin = copy_run(nano_run, tmp_path / "origin")
    git(origin, "init", "-q")
    git(origin, "add", ".")
    git(origin, "commit", "-q", "-m", "workflow")
    sh(origin, str(BIN / "dvc"), "remote", "modify", "--local", "local", "url", str(remote))

    artifacts(origin, "push")
    assert (origin / "dvc.lock").exists()
    assert remote.is_dir() and any(remote.rglob("*"))
    git(origin, "add", "dvc.lock")
    git(origin, "commit", "-q", "-m", "artifacts of the nano run")

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    assert not (clone / "results").exists() and not (clone / ".snakemake").exists()
    sh(clone, str(BIN / "dvc"), "remote", "modify", "--local", "local", "url", str(remote))
    artifacts(clone, "pull")

    jobs = planned(clone)
    assert not [r for r in TRAINING if r in jobs], jobs
    assert jobs == {}, jobs
    # byte-identical artifacts (checkpoints, task vectors, merges, metrics, datasets)
    for sub in (nano_results(origin), origin / "data" / "nano"):
        a = sha_tree(sub)
        b = sha_tree(clone / sub.relative_to(origin))
        assert a and a == b, sub
    assert any(k.endswith(".safetensors") for k in sha_tree(nano_results(origin)))

    # the pull recorded Snakemake metadata: a changed fine-tuning lr is still noticed
    cfg_path = clone / "config" / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["finetune"]["full"]["lr"] *= 2
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    jobs = planned(clone)
    assert jobs.get("finetune") == len(cfg["data"]["tasks"]), jobs


def test_manifest_traces_every_row(nano_run):
    """manifest.json: every artifact with sha256 and its config subset; every table row
    traced to artifacts listed in it; verify-manifest passes on the run and catches a change."""
    import json
    from mergelab.io import sha256_file
    man = json.loads((nano_results(nano_run) / "manifest.json").read_text())
    arts = man["artifacts"]
    assert man["code_version"] and "torch" in man["packages"] and man["config"]["name"] == "nano"
    for path, entry in arts.items():
        if not (nano_run / path).is_dir():
            assert entry["sha256"] == sha256_file(nano_run / path), path
        if entry["kind"] in ("finetuned", "task_vector", "merged", "metrics", "pretrained",
                             "head", "table"):
            assert entry["config"], path
    ft = arts["results/nano/finetune/full/digits.safetensors"]
    assert ft["config"]["finetune"]["lr"] == nano_config_lr() and ft["seed"] == 0
    assert arts["results/nano/taskvectors/full/digits.safetensors"]["config"]["model"]
    table = man["tables"]["full_duo"]
    assert set(table["rows"]) == {"zeroshot", "individual", "task_arithmetic"}
    row = table["rows"]["task_arithmetic"]
    assert "results/nano/merged/full/duo/task_arithmetic.safetensors" in row
    assert "results/nano/finetune/full/digits.safetensors" in row
    assert all(p in arts for r in table["rows"].values() for p in r)
    ok = sh(nano_run, sys.executable, "-m", "mergelab.cli", "verify-manifest",
            "results/nano/manifest.json")
    assert "matches" in ok.stdout


def nano_config_lr() -> float:
    from conftest import nano_config
    return nano_config()["finetune"]["full"]["lr"]
