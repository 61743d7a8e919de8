# How jobs run on this machine: the shell environment every job exports, GPU slots for
# local multi-GPU runs, and the fork server that spares each job its imports.

import os
import shlex
import sys
from pathlib import Path

SRC = str(Path(workflow.basedir) / "src")
# What every job's shell exports (also the fork server's environment, below).
# Rules call `python -m mergelab.cli`; the package is importable from the checkout too.
# OMP_WAIT_POLICY=PASSIVE: OpenMP threads sleep instead of spinning, which keeps torch
# fast when jobs share cores (docs/benchmarks.md).
# PATH starts with the bin directory of the interpreter running Snakemake, so `python` in a
# job is that environment's even when it is not activated (.venv/bin/snakemake ...).
JOB_ENV = {
    "PATH": ":".join(p for p in (str(Path(sys.executable).parent), os.environ.get("PATH")) if p),
    "PYTHONPATH": ":".join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p),
    "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY") or "PASSIVE",
}
shell.prefix(
    "export "
    + " ".join(f"{k}={shlex.quote(v)}" for k, v in JOB_ENV.items()).replace("{", "{{").replace("}", "}}")
    + "; "
)


def _gpu_slots():
    """Local runs with `--resources gpu=N`, N > 1 (profiles/multigpu): jobs take distinct
    GPUs through mergelab.gpuslots (docs/cluster.md). Off under cluster executors (SLURM
    pins GPUs itself) and when MERGELAB_GPU_SLOTS is already set (it then wins)."""
    n = workflow.global_resources.get("gpu")
    n = getattr(n, "value", n)
    if workflow.local_exec and isinstance(n, int) and n > 1:
        os.environ.setdefault("MERGELAB_GPU_SLOTS", str(n))


_gpu_slots()


# Local runs: jobs run in children of a fork server that has imported torch, open_clip,
# transformers and datasets once (src/mergelab/forkserver.py) instead of each job importing
# them (timings: docs/benchmarks.md). Its environment is what the jobs' shell sets up (JOB_ENV and the
# thread variables Snakemake sets for a 1-thread job); jobs whose environment differs
# (more threads, --use-conda) run in their own process. MERGELAB_FORKSERVER=off disables it.
_FORKSERVER = {}
_THREAD_VARS = ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def start_forkserver():
    from mergelab import forkserver
    if not workflow.local_exec or os.environ.get(forkserver.ENV):
        return
    try:
        proc, path = forkserver.start({**JOB_ENV, **{k: "1" for k in _THREAD_VARS}}, "mergelab.cli:run")
    except OSError as exc:  # e.g. no writable temporary directory: jobs import for themselves
        print(f"mergelab: fork server not started: {exc}", file=sys.stderr)
        return
    _FORKSERVER.update(proc=proc, path=path)
    os.environ[forkserver.ENV] = path


def stop_forkserver():
    import shutil
    from mergelab import forkserver
    if _FORKSERVER:
        _FORKSERVER["proc"].terminate()  # a running server removes its socket and directory;
        _FORKSERVER["proc"].wait()  # one still importing dies at once, so remove them here too
        shutil.rmtree(os.path.dirname(_FORKSERVER["path"]), ignore_errors=True)
        os.environ.pop(forkserver.ENV, None)
        _FORKSERVER.clear()


onstart:
    start_forkserver()


onsuccess:
    stop_forkserver()


onerror:
    stop_forkserver()
