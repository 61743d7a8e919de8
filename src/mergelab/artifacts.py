"""`make push` / `make pull`: DVC versioning of the Snakemake DAG's artifacts.

push: check that Snakemake has nothing left to do, ``dvc commit`` the ``pipeline``
      stage (dvc.lock records the hashes of the config, code and every artifact
      directory; the artifacts go into the DVC cache) and ``dvc push`` them.
pull: ``dvc pull`` the stage's outputs, check that the config and code of this
      checkout are those recorded in dvc.lock, then ``snakemake --touch
      --forceall``: Snakemake walks its DAG in order, giving every output a
      timestamp newer than its inputs and recording its metadata (params, code,
      software-env hashes) for the current config. Without this a fresh clone
      has arbitrary checkout timestamps and no ``.snakemake/metadata``: Snakemake
      would rerun everything older than its inputs, and could not notice a later
      params change for jobs whose metadata is missing. Touching is only sound
      because dvc.lock proves that the artifacts were produced by this very
      config and code; when they differ the pull stops before touching (the
      files stay restored, Snakemake then decides by timestamps).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import yaml

from .io import ArtifactError

STAGE = "pipeline"


def _tool(name: str) -> str:
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise ArtifactError(f"'{name}' not found (install the locked environment: make env)")
    return found


def _run(cmd: Sequence[str], cwd: Path, capture: bool = False) -> subprocess.CompletedProcess:
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.run(list(cmd), cwd=cwd, text=True,
                          capture_output=capture)
    if proc.returncode != 0:
        detail = (proc.stdout or "")[-3000:] + (proc.stderr or "")[-3000:] if capture else ""
        raise ArtifactError(f"'{' '.join(cmd)}' failed (exit {proc.returncode}){': ' + detail if detail else ''}")
    return proc


def run_config(root: Path) -> str:
    """The config the ``pipeline`` stage runs (``vars: - run_config: ...`` in dvc.yaml)."""
    path = root / "dvc.yaml"
    if not path.exists():
        raise ArtifactError(f"{path}: no dvc.yaml (run from the repository root)")
    doc = yaml.safe_load(path.read_text())
    for v in doc.get("vars", []):
        if isinstance(v, dict) and "run_config" in v:
            return str(v["run_config"])
    raise ArtifactError(f"{path}: no 'run_config' under vars")


def snakemake_args(root: Path) -> list[str]:
    return [_tool("snakemake"), "--configfile", run_config(root)]


def job_counts(stdout: str) -> dict[str, int]:
    """Rule -> job count from the "Job stats" table of ``snakemake -n --quiet rules``."""
    counts = {}
    for line in stdout.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def planned_jobs(root: Path) -> dict[str, int]:
    """Rule -> job count of ``snakemake -n`` (empty: nothing to do)."""
    proc = _run(snakemake_args(root) + ["--cores", "1", "-n", "--quiet", "rules"], root, capture=True)
    return job_counts(proc.stdout)


def changed_deps(root: Path) -> list[str]:
    """Dependencies of the stage (config, rules, code) that differ from dvc.lock."""
    proc = _run([_tool("dvc"), "status", STAGE, "--json"], root, capture=True)
    status = json.loads(proc.stdout or "{}")
    out = []
    for item in status.get(STAGE, []):
        if isinstance(item, dict):
            for path, state in item.get("changed deps", {}).items():
                out.append(f"{path} ({state})")
        elif isinstance(item, str) and item.startswith("changed command"):
            out.append("stage command")
    return out


def push(root: Path, remote: str | None = None, check: bool = True) -> None:
    if check:
        jobs = planned_jobs(root)
        if jobs:
            raise ArtifactError(
                f"Snakemake still has jobs to run ({jobs}); run the pipeline first (make run), "
                "so that the pushed artifacts are complete and up to date")
    _run([_tool("dvc"), "commit", "--force", STAGE], root)
    _run([_tool("dvc"), "push", STAGE] + (["--remote", remote] if remote else []), root)
    print("pushed. Version it: git add dvc.lock && git commit -m 'artifacts of <run>'",
          file=sys.stderr)


def pull(root: Path, remote: str | None = None, force: bool = False) -> dict[str, int]:
    _run([_tool("dvc"), "pull", STAGE] + (["--remote", remote] if remote else []), root)
    changed = changed_deps(root)
    if changed and not force:
        raise ArtifactError(
            "artifacts restored, but this checkout's config/code differ from those that "
            f"produced them (dvc.lock): {', '.join(changed)}. Timestamps were left as "
            "checked out, so Snakemake will rerun what looks older than its inputs. To accept "
            "the artifacts as up to date for the current config anyway: "
            "python -m mergelab.cli artifacts pull --force")
    _run(snakemake_args(root) + ["--cores", "1", "--touch", "--forceall", "--quiet", "all"], root,
         capture=True)
    jobs = planned_jobs(root)
    print(f"restored; Snakemake has {'nothing' if not jobs else jobs} to do", file=sys.stderr)
    return jobs
