"""The fork server (mergelab.forkserver): a command run through it behaves like the same
command in a process of its own (output, exit status, working directory, signals), and
it declines jobs whose environment differs in what the preloaded libraries read at
import. The pipeline-level check (identical tensors and metrics with and without it) is
tests/test_pipeline.py::test_rerun_is_deterministic."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mergelab import forkserver

ROOT = Path(__file__).resolve().parents[1]
EXTRA = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
FORKED = "mergelab: job forked from the fork server"
ENTRY = "mergelab.cli:run"


def test_entry_point_is_loaded_by_name():
    assert forkserver.load_entry("os.path:join")("a", "b") == os.path.join("a", "b")
    with pytest.raises(ValueError, match="module:function"):
        forkserver.load_entry("mergelab.cli")


def test_env_difference_ignores_runtime_variables():
    job = {"PATH": "/bin", "TMPDIR": "/a", "MERGELAB_GPU_SLOTS": "2", "OMP_NUM_THREADS": "1",
           "HF_HOME": "/x"}
    server = {"PATH": "/bin", "TMPDIR": "/b", "OMP_NUM_THREADS": "2"}
    assert forkserver.env_difference(job, server) == ["HF_HOME", "OMP_NUM_THREADS"]


@pytest.mark.parametrize("value", [None, "off", "/nonexistent/forkserver.sock"])
def test_no_server_means_run_in_process(monkeypatch, value):
    if value is None:
        monkeypatch.delenv(forkserver.ENV, raising=False)
    else:
        monkeypatch.setenv(forkserver.ENV, value)
    assert forkserver.delegate(["methods"]) is None


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.fixture(scope="module")
def server():
    proc, path = forkserver.start(EXTRA, ENTRY)
    wait_for(lambda: os.path.exists(path) or proc.poll() is not None, 180, "fork server not ready")
    assert proc.poll() is None, "fork server exited"
    env = {**os.environ, **EXTRA, forkserver.ENV: path}
    yield env
    proc.terminate()
    proc.wait(timeout=30)
    assert not os.path.exists(os.path.dirname(path))  # socket and its directory removed


def cli(*args, env, cwd=ROOT, **kw):
    return subprocess.run([sys.executable, "-m", "mergelab.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120, **kw)


@pytest.mark.slow  # starts a fork server (make test, not test-fast)
def test_same_output_and_status_as_own_process(server, tmp_path):
    own = {k: v for k, v in server.items() if k != forkserver.ENV}
    for args in (["methods"], ["validate-config", "config/config.yaml"]):
        a, b = cli(*args, env=server), cli(*args, env=own)
        assert FORKED in a.stderr and FORKED not in b.stderr
        assert (a.returncode, a.stdout) == (b.returncode, b.stdout) == (0, b.stdout)
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: zero\n")
    a, b = cli("validate-config", str(bad), env=server), cli("validate-config", str(bad), env=own)
    assert FORKED in a.stderr and a.returncode == b.returncode != 0
    assert "seed" in a.stderr and a.stderr.strip().splitlines()[-1] == b.stderr.strip().splitlines()[-1]


@pytest.mark.slow  # starts a fork server (make test, not test-fast)
def test_relative_paths_use_the_jobs_directory(server):
    a = cli("validate-config", "config.yaml", env=server, cwd=ROOT / "config")
    assert FORKED in a.stderr and a.returncode == 0 and "config.yaml: valid" in a.stdout


@pytest.mark.slow  # starts a fork server (make test, not test-fast)
def test_declines_a_different_environment(server):
    env = {**server, "OMP_NUM_THREADS": "2"}
    a = cli("methods", env=env)
    assert "fork server not used: environment differs in OMP_NUM_THREADS" in a.stderr
    assert FORKED not in a.stderr and a.returncode == 0 and "tsv_m" in a.stdout


def _blocked_job(server, tmp_path):
    """A job that blocks (reading a FIFO) in a fork-server child: (client, child pid)."""
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    err = tmp_path / "stderr"
    with open(err, "w") as fh:
        client = subprocess.Popen([sys.executable, "-m", "mergelab.cli", "validate-config",
                                   str(fifo)], env=server, cwd=ROOT, stdout=subprocess.DEVNULL,
                                  stderr=fh)
    wait_for(lambda: "fork server (pid" in err.read_text() or client.poll() is not None, 60,
             "job did not start")
    m = re.search(r"fork server \(pid (\d+)\)", err.read_text())
    assert m and client.poll() is None, err.read_text()
    return client, int(m.group(1))


def _alive(pid) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow  # starts a fork server (make test, not test-fast)
def test_signal_to_the_job_reaches_the_child(server, tmp_path):
    client, child = _blocked_job(server, tmp_path)
    client.send_signal(signal.SIGTERM)
    assert client.wait(timeout=30) == 128 + signal.SIGTERM
    wait_for(lambda: not _alive(child), 30, "the child kept running")


@pytest.mark.slow  # starts a fork server (make test, not test-fast)
def test_child_stops_when_the_job_process_is_killed(server, tmp_path):
    client, child = _blocked_job(server, tmp_path)
    client.kill()
    client.wait(timeout=30)
    wait_for(lambda: not _alive(child), 30, "the child kept running")


@pytest.mark.slow  # starts a fork server (make test, not test-fast)
def test_server_exits_with_its_parent():
    """Snakemake killed outright (no onerror hook): the server notices and cleans up."""
    code = ("import time; from mergelab import forkserver; p, path = forkserver.start({}, %r); "
            "print(path, flush=True); time.sleep(600)") % ENTRY
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    path = parent.stdout.readline().strip()
    wait_for(lambda: os.path.exists(path), 180, "fork server not ready")
    parent.kill()
    parent.wait(timeout=30)
    wait_for(lambda: not os.path.exists(os.path.dirname(path)), 60,
             "fork server outlived its parent")
