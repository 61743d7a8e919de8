"""GPU slot allocator (mergelab.gpuslots): no GPU needed, only processes and flock."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mergelab import gpuslots

SRC = str(Path(__file__).resolve().parents[1] / "src")

# A child that takes a slot, prints it, then sleeps until killed or told to exit.
HOLDER = """
import sys, time
from mergelab import gpuslots
slot = gpuslots.acquire()
print(slot, flush=True)
sys.stdin.readline()
"""


def _env(lock_dir: Path, n: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"PYTHONPATH": SRC, gpuslots.ENV_SLOTS: str(n),
                gpuslots.ENV_LOCK_DIR: str(lock_dir)})
    return env


def _holder(lock_dir: Path, n: int) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER], env=_env(lock_dir, n),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip().isdigit(), f"holder printed {line!r}"
    return proc, int(line)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


@pytest.fixture(autouse=True)
def _no_held_slot():
    gpuslots.release()
    yield
    gpuslots.release()


def test_off_unless_configured(monkeypatch):
    monkeypatch.delenv(gpuslots.ENV_SLOTS, raising=False)
    assert gpuslots.configured_slots() == 0
    monkeypatch.setenv(gpuslots.ENV_SLOTS, "")
    assert gpuslots.configured_slots() == 0
    monkeypatch.setenv(gpuslots.ENV_SLOTS, "3")
    assert gpuslots.configured_slots() == 3
    monkeypatch.setenv(gpuslots.ENV_SLOTS, "two")
    with pytest.raises(ValueError):
        gpuslots.configured_slots()


def test_two_processes_get_different_slots(tmp_path):
    a, slot_a = _holder(tmp_path, 2)
    b, slot_b = _holder(tmp_path, 2)
    try:
        assert {slot_a, slot_b} == {0, 1}
        # both taken: a third one in this process cannot get one
        with pytest.raises(TimeoutError):
            gpuslots.acquire(2, directory=tmp_path, timeout=0.3, poll=0.05)
    finally:
        _stop(a)
        _stop(b)


def test_slot_freed_on_normal_exit(tmp_path):
    a, slot = _holder(tmp_path, 1)
    a.stdin.write("\n")
    a.stdin.flush()
    assert a.wait(timeout=30) == 0
    assert gpuslots.acquire(1, directory=tmp_path, timeout=5, poll=0.05) == slot


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_slot_freed_when_holder_is_killed(tmp_path, sig):
    a, slot = _holder(tmp_path, 1)
    with pytest.raises(TimeoutError):
        gpuslots.acquire(1, directory=tmp_path, timeout=0.2, poll=0.05)
    os.kill(a.pid, sig)
    a.wait(timeout=30)
    assert gpuslots.acquire(1, directory=tmp_path, timeout=5, poll=0.05) == slot


def test_waiter_gets_slot_when_holder_exits(tmp_path):
    a, slot = _holder(tmp_path, 1)
    waiter = subprocess.Popen([sys.executable, "-c", HOLDER], env=_env(tmp_path, 1),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        assert waiter.poll() is None  # still waiting
        os.kill(a.pid, signal.SIGKILL)
        assert int(waiter.stdout.readline()) == slot
    finally:
        _stop(a)
        _stop(waiter)


def test_idempotent_and_release(tmp_path):
    s = gpuslots.acquire(3, directory=tmp_path)
    assert gpuslots.acquire(3, directory=tmp_path) == s == gpuslots.held()
    gpuslots.release()
    assert gpuslots.held() is None
    # released: another process can take every slot
    procs = [_holder(tmp_path, 3) for _ in range(3)]
    try:
        assert sorted(slot for _, slot in procs) == [0, 1, 2]
    finally:
        for p, _ in procs:
            _stop(p)


def test_many_concurrent_processes_distinct(tmp_path):
    procs = [_holder(tmp_path, 4) for _ in range(4)]
    try:
        assert sorted(slot for _, slot in procs) == [0, 1, 2, 3]
    finally:
        for p, _ in procs:
            _stop(p)


def test_device_index_round_robin():
    assert [gpuslots.device_index(s, 2) for s in range(4)] == [0, 1, 0, 1]
    with pytest.raises(ValueError):
        gpuslots.device_index(0, 0)


def test_pick_device_uses_slot(monkeypatch, tmp_path):
    """pick_device('auto') on a (faked) 2-GPU machine with 2 slots, one taken."""
    import torch

    from mergelab import models
    monkeypatch.setenv(gpuslots.ENV_SLOTS, "2")
    monkeypatch.setenv(gpuslots.ENV_LOCK_DIR, str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: chosen.append(i))
    other, other_slot = _holder(tmp_path, 2)
    try:
        dev = models.pick_device("auto")
        assert dev == torch.device(f"cuda:{1 - other_slot}")
        assert chosen == [1 - other_slot]
        assert models.pick_device("cuda") == dev  # same slot on a second call
        assert models.pick_device("cuda:0") == torch.device("cuda:0")  # explicit: untouched
    finally:
        _stop(other)


def test_pick_device_without_slots_is_unchanged(monkeypatch):
    import torch

    from mergelab import models
    monkeypatch.delenv(gpuslots.ENV_SLOTS, raising=False)
    assert models.pick_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert models.pick_device("auto") == torch.device("cuda")


@pytest.mark.slow
@pytest.mark.parametrize("args, expected", [
    (["--profile", "profiles/multigpu"], "2"),      # the profile's resources: gpu=2
    (["--resources", "gpu=3"], "3"),
    (["--resources", "gpu=1"], "unset"),            # one GPU: nothing to choose
    ([], "unset"),
])
def test_workflow_exports_slots_for_local_multi_gpu_runs(tmp_path, args, expected):
    """rules/common/hooks.smk sets MERGELAB_GPU_SLOTS for local runs with --resources gpu=N>1."""
    from test_pipeline import SNAKEMAKE, copy_workflow
    wd = copy_workflow(tmp_path)
    with open(wd / "Snakefile", "a") as f:
        f.write('\n\nrule gpu_env_probe:\n    output: "gpu_env.txt"\n    resources: gpu=1\n'
                '    shell: "echo ${{MERGELAB_GPU_SLOTS:-unset}} > {output}"\n')
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(wd)}
    proc = subprocess.run([SNAKEMAKE, "gpu_env.txt", "--cores", "1", "--configfile",
                           "config/micro.yaml", *args], cwd=wd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (wd / "gpu_env.txt").read_text().strip() == expected
