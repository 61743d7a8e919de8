"""Shared fixtures for the slow tests that need a finished run (tests/test_dvc.py,
tests/test_reliability.py): one *nano* run per session, a cut-down micro config
(full fine-tuning only, two tasks, one merge method) made the workflow's embedded
default (config/config.yaml) in a temporary copy of the workflow, so that plain
`snakemake`, dvc.yaml and `mergelab artifacts` all see it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest-xdist worker per core: OpenMP threads that spin while they
    # wait would take the other workers' cores (set before torch loads OpenMP)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch
        torch.set_num_threads(1)  # one worker per core already fills the machine


def nano_config() -> dict:
    cfg = yaml.safe_load((ROOT / "tests" / "micro" / "config.yaml").read_text())
    tasks = ["digits", "signs"]
    cfg["name"] = "nano"
    cfg["results_dir"] = "results/nano"
    cfg["data"]["root"] = "data/nano"
    cfg["regimes"] = ["full"]
    cfg["data"]["tasks"] = {t: cfg["data"]["tasks"][t] for t in tasks}
    cfg["suites"] = {"duo": tasks}
    cfg["methods"] = {"task_arithmetic": {"method": "task_arithmetic"}}
    cfg["evaluation"]["alpha_grid"] = [0.5, 1.0]
    cfg.setdefault("analysis", {})["enabled"] = False
    return cfg


def tool_env(home: Path, **extra: str) -> dict[str, str]:
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(home), "PYTHONHASHSEED": "0",
           "GIT_CONFIG_NOSYSTEM": "1", "DVC_NO_ANALYTICS": "1", "LANG": "C.UTF-8"}
    env.update(extra)
    return env


def smk(wd: Path, *args: str, check: bool = True, env: dict | None = None,
        timeout: int = 1200) -> subprocess.CompletedProcess:
    """Plain `snakemake` in ``wd`` (its config/config.yaml is the nano config)."""
    cmd = [str(BIN / "snakemake"), "--cores", "2", *args]
    proc = subprocess.run(cmd, cwd=wd, capture_output=True, text=True,
                          env=env or tool_env(wd), timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-6000:]}")
    return proc


def jobs_of(proc: subprocess.CompletedProcess) -> dict[str, int]:
    from mergelab.artifacts import job_counts
    return job_counts(proc.stdout)


def planned(wd: Path) -> dict[str, int]:
    """Rule -> job count of a dry run (empty when nothing is to be done)."""
    return jobs_of(smk(wd, "-n", "--quiet", "rules"))


def copy_nano_workflow(dst: Path) -> Path:
    """The workflow (Snakefile, rules, profiles, envs, src, config, dvc files, Makefile)
    with the nano config as its embedded default."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "rules", "profiles", "envs", "src", "config", "report",
                 "dvc.yaml", ".dvc", ".dvcignore", "Makefile", "pyproject.toml"):
        src = ROOT / name
        if src.is_dir():  # not config/paper/, .dvc's cache and local config; src/ whole
            skip = {"config": ("paper",), ".dvc": ("cache", "tmp", "config.local")}.get(name, ())
            shutil.copytree(src, dst / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", *skip))
        elif src.exists():
            shutil.copy2(src, dst / name)
    (dst / "config" / "config.yaml").write_text(yaml.safe_dump(nano_config(), sort_keys=False))
    (dst / ".gitignore").write_text("/results/\n/data/\n.snakemake/\n__pycache__/\n/dvc-remote/\n")
    return dst


def copy_run(src: Path, dst: Path) -> Path:
    """A copy of a finished run (timestamps and .snakemake metadata preserved)."""
    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns("locks", "dvc-remote"))
    return dst


def nano_results(wd: Path) -> Path:
    return wd / "results" / "nano"


@pytest.fixture(scope="session")
def nano_run(tmp_path_factory) -> Path:
    """A finished nano run. Tests must not modify it: take a copy_run() first.

    Under pytest-xdist (`make test`) every worker has its own session; the first worker
    that asks builds the run in the directory the workers share, the others wait for it."""
    from filelock import FileLock
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        wd = copy_nano_workflow(tmp_path_factory.mktemp("nano") / "wf")
        smk(wd)
        return wd
    shared = tmp_path_factory.getbasetemp().parent / "nano"
    with FileLock(str(shared) + ".lock"):
        if not (shared / "done").exists():
            shutil.rmtree(shared, ignore_errors=True)
            smk(copy_nano_workflow(shared / "wf"))
            (shared / "done").touch()
    return shared / "wf"


# The slowest modules first: `make test` hands whole modules to its pytest-xdist workers
# in this order (--dist loadfile), so the long end-to-end runs start at once and the
# unit tests fill the gaps (their times: docs/benchmarks.md, "Test suite run time").
SLOW_MODULES_FIRST = ["test_smoke.py", "test_smoke_lora.py", "test_pipeline.py", "test_slurm.py",
                      "test_reliability.py", "test_smoke_imports.py", "test_ablations_e2e.py",
                      "test_dvc.py"]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_MODULES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: keeps file order


def sha_tree(root: Path, pattern: str = "*") -> dict[str, str]:
    from mergelab.io import sha256_file
    return {p.relative_to(root).as_posix(): sha256_file(p)
            for p in sorted(root.rglob(pattern)) if p.is_file() and "logs" not in p.parts}


