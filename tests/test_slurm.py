"""The SLURM profile (profiles/slurm) without a cluster.

Fake `sbatch`, `srun`, `sacct`, `squeue`, `sacctmgr`, `scancel`, `sinfo` (one Python
script, FAKE_SLURM below) are put first on PATH. They log their arguments and really
run the jobs: `sbatch` runs the `--wrap` command (or the script on stdin) synchronously
in its `-D` directory with SLURM_* variables set, records COMPLETED/FAILED and prints
the job id (`--parsable`); `sacct`/`squeue` report the recorded states in the formats
snakemake-executor-plugin-slurm parses; inside a job the jobstep plugin calls `srun`,
which drops its options and executes the command. A cut-down micro config then runs through
`--profile profiles/slurm` in a temporary copy of the workflow (placeholders replaced
by dummy account and partitions), and the test checks which jobs were submitted with
which requests, that the light rules ran locally, and that the run completed.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from test_pipeline import ROOT, SNAKEMAKE, copy_workflow

pytestmark = pytest.mark.slow

GPU_RULES = {"pretrain", "heads", "finetune", "eval_zeroshot", "eval_individual", "merge",
             "eval_merged", "eval_generalization", "eval_lowrank", "eval_disentanglement"}
CPU_CLUSTER_RULES = {"extract_task_vector"}
LOCAL_RULES = {"all", "prepare_task", "build_corpus", "report", "analysis_spectrum",
               "analysis_similarity", "analysis_etf", "analysis_sensitivity",
               "generalization_report", "task_count_figure", "manifest", "regime_report",
               "pretrain_reproduction"}
ACCOUNT, CPU_PART, GPU_PART = "testacct", "cpu_part", "gpu_part"

FAKE_SLURM = r'''#!__PYTHON__
"""Fake SLURM client commands for tests/test_slurm.py (dispatch on argv[0])."""
import fcntl, json, os, subprocess, sys, time
from pathlib import Path

STATE = Path(os.environ["FAKE_SLURM_DIR"])
JOBS = STATE / "jobs"
cmd = Path(sys.argv[0]).name
args = sys.argv[1:]


def log(**extra):
    with open(STATE / "calls.jsonl", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(json.dumps({"cmd": cmd, "args": args, "time": time.time(), **extra}) + "\n")


def next_id():
    with open(STATE / "counter", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        n = int(f.read() or 1000) + 1
        f.seek(0)
        f.truncate()
        f.write(str(n))
    return str(n)


def opt(name, default=None):
    """Value of `--name value`, `--name=value` or `-x value`."""
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a[len(name) + 1:]
    return default


def jobs():
    for p in sorted(JOBS.glob("*.json")):
        yield json.loads(p.read_text())


def sbatch():
    jid = next_id()
    name, out = opt("--job-name"), opt("--output", f"slurm-{jid}.out")
    workdir = opt("-D", os.getcwd())
    wrap = opt("--wrap")
    script = None
    if wrap is None:
        script = sys.stdin.read()
    log(jobid=jid)
    rec = {"id": jid, "name": name, "comment": opt("--comment"), "state": "RUNNING"}
    (JOBS / f"{jid}.json").write_text(json.dumps(rec))
    env = dict(os.environ, SLURM_JOB_ID=jid, SLURM_JOBID=jid, SLURM_JOB_NAME=name or "",
               SLURM_SUBMIT_DIR=os.getcwd(), SLURM_NTASKS="1")
    gpus = opt("--gpus")
    if gpus:
        env["SLURM_GPUS"] = gpus.split(":")[-1]
    cpus = opt("--cpus-per-task")
    if cpus:
        env["SLURM_CPUS_PER_TASK"] = cpus
    out = Path(workdir, out.replace("%j", jid))
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as log_f:
        if wrap is not None:
            rc = subprocess.call(["/bin/sh", "-c", wrap], cwd=workdir, env=env,
                                 stdin=subprocess.DEVNULL, stdout=log_f, stderr=subprocess.STDOUT)
        else:
            p = subprocess.Popen(["/bin/sh", "-s"], cwd=workdir, env=env, stdin=subprocess.PIPE,
                                 stdout=log_f, stderr=subprocess.STDOUT, text=True)
            p.communicate(script)
            rc = p.returncode
    rec["state"] = "COMPLETED" if rc == 0 else "FAILED"
    rec["exit"] = rc
    (JOBS / f"{jid}.json").write_text(json.dumps(rec))
    print(jid)


def sacct():
    log()
    fmt = (opt("--format") or opt("-o") or "").lower()
    if "reason" in fmt or "account" in fmt or "nodelist" in fmt:
        if "account" in fmt:
            print(os.environ.get("FAKE_SLURM_ACCOUNTS", "").split(",")[0])
        return
    name = opt("--name")
    for j in jobs():
        if name is None or j["name"] == name:
            print(f"{j['id']}|{j['state']}")


def squeue():
    log()
    name = opt("--name")
    for j in jobs():
        if name is None or j["name"] == name:
            print(f"{j['id']}|{j['state']}")


def srun():
    log()
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 1
    os.execvp(args[i], args[i:])


def scancel():
    log()
    for jid in args:
        p = JOBS / f"{jid}.json"
        if p.exists():
            rec = json.loads(p.read_text())
            rec["state"] = "CANCELLED"
            p.write_text(json.dumps(rec))


def sacctmgr():
    log()
    print("\n".join(os.environ.get("FAKE_SLURM_ACCOUNTS", "").split(",")))


def sinfo():
    log()
    print("PARTITION\n" + "\n".join(os.environ.get("FAKE_SLURM_PARTITIONS", "").split(",")))


{"sbatch": sbatch, "sacct": sacct, "squeue": squeue, "srun": srun, "scancel": scancel,
 "sacctmgr": sacctmgr, "sinfo": sinfo}[cmd]()
'''

COMMANDS = ("sbatch", "srun", "sacct", "squeue", "sacctmgr", "scancel", "sinfo")


def install_fake_slurm(d: Path) -> Path:
    bin_dir = d / "bin"
    (d / "jobs").mkdir(parents=True)
    bin_dir.mkdir()
    script = bin_dir / "fake_slurm.py"
    script.write_text(FAKE_SLURM.replace("__PYTHON__", sys.executable))
    script.chmod(0o755)
    for name in COMMANDS:
        (bin_dir / name).symlink_to(script.name)
    return bin_dir


def calls(state: Path, cmd: str | None = None) -> list[dict]:
    lines = (state / "calls.jsonl").read_text().splitlines()
    return [c for c in map(json.loads, lines) if cmd is None or c["cmd"] == cmd]


def sbatch_rule(call: dict) -> str:
    comment = call["args"][call["args"].index("--comment") + 1]
    return re.match(r"rule_(\w+?)(_wildcards_.*)?$", comment).group(1)


def slurm_config() -> dict:
    """The micro config cut down to what exercises every kind of job (full fine-tuning,
    two tasks, one method, no regime report): 11 submitted jobs. Each submitted job starts
    Snakemake twice (sbatch -> jobstep -> srun -> the job), ~8 CPU-s, so the whole micro
    config (40 submitted jobs) would take several minutes on two cores."""
    cfg = yaml.safe_load((ROOT / "tests" / "micro" / "config.yaml").read_text())
    tasks = ["digits", "signs"]
    cfg.update(name="slurm", results_dir="results/slurm", regimes=["full"],
               suites={"duo": tasks}, methods={"task_arithmetic": {"method": "task_arithmetic"}})
    cfg["data"]["tasks"] = {t: cfg["data"]["tasks"][t] for t in tasks}
    cfg.setdefault("analysis", {})["enabled"] = False
    # the regime report's evaluations are GPU jobs like eval_individual: 3 more submissions,
    # nothing new to the profile
    cfg.setdefault("report", {})["regime"] = False
    return cfg


def job_stats(log: str) -> dict[str, int]:
    """Rule -> job count from the first "Job stats" table Snakemake logs."""
    counts, in_table = {}, False
    for line in log.splitlines():
        if line.startswith("Job stats"):
            in_table = True
            continue
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if in_table and m:
            if m.group(1) == "total":
                break
            counts[m.group(1)] = int(m.group(2))
    return counts


def run(cmd: list[str], cwd: Path, env: dict, timeout: int) -> subprocess.CompletedProcess:
    """subprocess.run that kills the whole process group on timeout: submitted jobs are
    children of the fake sbatch and would outlive Snakemake otherwise."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"timed out after {timeout} s:\n{err[-6000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory):
    wd = copy_workflow(tmp_path_factory.mktemp("slurm"))
    (wd / "config" / "slurm.yaml").write_text(yaml.safe_dump(slurm_config(), sort_keys=False))
    state = tmp_path_factory.mktemp("fake_slurm")
    bin_dir = install_fake_slurm(state)
    profile = wd / "profiles" / "slurm" / "config.yaml"
    text = profile.read_text()
    for placeholder, value in [("CHANGE_ME_ACCOUNT", ACCOUNT), ("CHANGE_ME_CPU_PARTITION", CPU_PART),
                               ("CHANGE_ME_GPU_PARTITION", GPU_PART)]:
        assert placeholder in text
        text = text.replace(placeholder, value)
    assert not re.search(r"^[^#]*CHANGE_ME", text, re.M)  # outside comments
    profile.write_text(text)
    env = {"PATH": f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(wd),
           "PYTHONHASHSEED": "0", "FAKE_SLURM_DIR": str(state),
           "FAKE_SLURM_ACCOUNTS": f"{ACCOUNT},other",
           "FAKE_SLURM_PARTITIONS": f"{CPU_PART}*,{GPU_PART}"}
    cmd = [SNAKEMAKE, "--cores", "2", "--configfile", "config/slurm.yaml",
           "--profile", "profiles/slurm",
           # fast polling instead of the cluster defaults; fail fast in a test
           "--slurm-init-seconds-before-status-checks", "1", "--retries", "0",
           "--slurm-keep-successful-logs"]
    t0 = time.time()
    proc = run(cmd, wd, env, timeout=1200)
    elapsed = time.time() - t0
    if proc.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}"
                         for p in sorted((wd / ".snakemake" / "slurm_logs").rglob("*.log"))[-3:])
        raise AssertionError(f"snakemake --profile profiles/slurm failed:\n{proc.stderr[-8000:]}\n{logs}")
    plan = job_stats(proc.stderr)
    assert plan.get("finetune"), proc.stderr[-3000:]
    return {"wd": wd, "state": state, "plan": plan, "stderr": proc.stderr, "elapsed": elapsed}


def test_workflow_completes(slurm_run):
    R = slurm_run["wd"] / "results" / "slurm"
    cfg = yaml.safe_load((slurm_run["wd"] / "config" / "slurm.yaml").read_text())
    for regime in cfg["regimes"]:
        for suite in cfg["suites"]:
            for ext in ("md", "tex", "csv"):
                assert (R / "tables" / f"{regime}_{suite}.{ext}").stat().st_size > 0
    assert (R / "manifest.json").stat().st_size > 0
    print(f"slurm run: {slurm_run['elapsed']:.0f} s")


def test_submitted_exactly_the_cluster_rules(slurm_run):
    plan, state = slurm_run["plan"], slurm_run["state"]
    submitted = [sbatch_rule(c) for c in calls(state, "sbatch")]
    expected = {r: n for r, n in plan.items() if r in GPU_RULES | CPU_CLUSTER_RULES}
    assert {r: submitted.count(r) for r in set(submitted)} == expected
    # every rule of the run is classified, and the light ones were never submitted
    assert set(plan) <= GPU_RULES | CPU_CLUSTER_RULES | LOCAL_RULES, set(plan)
    assert not set(submitted) & LOCAL_RULES
    assert {"prepare_task", "build_corpus", "report", "manifest"} <= set(plan)
    # ... and ran locally: their outputs exist although no job was submitted for them
    R = slurm_run["wd"] / "results" / "slurm"
    assert (R / "manifest.json").exists() and (slurm_run["wd"] / "data" / "micro" / "digits").is_dir()


def _by_rule(state: Path, rule: str) -> list[list[str]]:
    return [c["args"] for c in calls(state, "sbatch") if sbatch_rule(c) == rule]


def test_gpu_rules_request_a_gpu(slurm_run):
    profile = yaml.safe_load((slurm_run["wd"] / "profiles" / "slurm" / "config.yaml").read_text())
    state = slurm_run["state"]
    for rule in GPU_RULES & set(slurm_run["plan"]):
        res = profile["set-resources"][rule]
        for args in _by_rule(state, rule):
            line = " ".join(args)
            assert "--gpus=1" in args or "--gres=gpu:1" in line, (rule, args)
            assert args[args.index("-p") + 1] == GPU_PART, (rule, args)
            assert args[args.index("-A") + 1] == ACCOUNT, (rule, args)
            assert f"--cpus-per-task={res['cpus_per_task']}" in args, (rule, args)
            assert args[args.index("--mem") + 1] == str(res["mem_mb"]), (rule, args)
            assert "-t" in args, (rule, args)
    # human-friendly wall times are converted to minutes
    ft = _by_rule(state, "finetune")[0]
    assert ft[ft.index("-t") + 1] == "720"


def test_cpu_cluster_rule_gets_no_gpu(slurm_run):
    for args in _by_rule(slurm_run["state"], "extract_task_vector"):
        assert not any(a.startswith(("--gpus", "--gres")) for a in args), args
        assert args[args.index("-p") + 1] == CPU_PART
        assert "--ntasks=1" in args


def test_jobs_ran_through_srun_with_their_gpu(slurm_run):
    """Inside each job the jobstep plugin runs the rule through srun (one step per job)."""
    state = slurm_run["state"]
    sruns = calls(state, "srun")
    n_sbatch = len(calls(state, "sbatch"))
    assert len(sruns) == n_sbatch
    with_gpu = sum("--gpus=1" in c["args"] for c in sruns)
    assert with_gpu == sum(n for r, n in slurm_run["plan"].items() if r in GPU_RULES)
    # status came from sacct, filtered by the run's job name
    assert any("--name" in c["args"] for c in calls(state, "sacct"))
