"""A fork server that saves each pipeline job the time of importing torch, open_clip,
transformers and datasets (docs/benchmarks.md, "Pipeline run time").

A local Snakemake run starts one server (``onstart`` in rules/common.smk) with the entry
point the jobs run (``mergelab.cli:run``). The server imports the heavy libraries and that
entry point once, without running any tensor operation, and waits on a Unix socket. A
job's ``python -m mergelab.cli ...`` then only connects (``delegate``), hands over its argv,
working directory, environment and its stdin/stdout/stderr file descriptors, and the
server forks a child that calls the entry point with that argv exactly as the job process
would have, writing to the job's own log. The child's exit status becomes the
job's. Signals sent to the job (Snakemake cancelling it) are forwarded to the child, and a
child whose job process disappears terminates itself.

Whenever the server cannot serve a job exactly as a fresh process would, the job runs in
its own process as before: no server (``MERGELAB_FORKSERVER`` unset or ``off``, cluster
executors, dry runs), another Python or environment prefix (``--use-conda``), or an
environment that differs in anything read at import time (e.g. a rule with more threads:
``OMP_NUM_THREADS``). Results are therefore identical with and without the server
(tests/test_forkserver.py); ``MERGELAB_FORKSERVER=off snakemake ...`` turns it off.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
from typing import Any, Callable, Mapping, Sequence

ENV = "MERGELAB_FORKSERVER"
# Imported by the server before it forks; each one a job would otherwise import itself.
# The entry point's module is imported as well.
PRELOAD = ("numpy", "torch", "safetensors.torch", "tqdm.auto", "open_clip", "datasets",
           "peft", "mergelab.evaluate", "mergelab.finetune",
           "mergelab.merge", "mergelab.extract", "mergelab.heads", "mergelab.methods")
# Read at run time only (not when the preloaded modules were imported), so a job may
# differ from the server here; every other variable must be equal.
RUNTIME_ENV = {"PWD", "OLDPWD", "SHLVL", "_", "TMPDIR", "TMP", "TEMP", "TEMPDIR",
               "CUDA_VISIBLE_DEVICES", "CUBLAS_WORKSPACE_CONFIG", ENV}
RUNTIME_PREFIXES = ("MERGELAB_", "SNAKEMAKE_")
_HEADER = struct.Struct("!Q")
_RC = struct.Struct("!i")


def env_difference(job: Mapping[str, str], server: Mapping[str, str]) -> list[str]:
    """Variables, other than run-time ones, whose values differ between job and server."""
    keys = set(job) | set(server)
    return sorted(k for k in keys if k not in RUNTIME_ENV and not k.startswith(RUNTIME_PREFIXES)
                  and job.get(k) != server.get(k))


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return bytes(buf)


# ----------------------------------------------------------------------------- client

def delegate(argv: list[str]) -> int | None:
    """Run the server's entry point with ``argv`` in a child of the fork server. Returns its exit
    status, or None when the server is absent or declines (the caller then runs the
    command itself; nothing has been executed)."""
    path = os.environ.get(ENV, "")
    if not path or path == "off" or not hasattr(socket, "send_fds"):
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(5.0)
        conn.connect(path)
        payload = json.dumps({"argv": list(argv), "cwd": os.getcwd(), "env": dict(os.environ),
                              "executable": sys.executable, "prefix": sys.prefix}).encode()
        socket.send_fds(conn, [_HEADER.pack(len(payload))], [0, 1, 2])
        conn.sendall(payload)
        kind = _recv_exact(conn, 1)
        if kind == b"R":  # declined: the reason, for the job's log
            reason = _recv_exact(conn, _HEADER.unpack(_recv_exact(conn, _HEADER.size))[0])
            print(f"mergelab: fork server not used: {reason.decode()}", file=sys.stderr)
            return None
        (pid,) = _RC.unpack(_recv_exact(conn, _RC.size))
    except (OSError, ConnectionError, struct.error):
        conn.close()
        return None
    conn.settimeout(None)

    forwarded: list[int] = []

    def forward(signum, _frame):
        forwarded.append(signum)
        try:
            os.killpg(pid, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        (rc,) = _RC.unpack(_recv_exact(conn, _RC.size))
    except (ConnectionError, OSError):
        if forwarded:  # killed by the signal the job received, like a process of its own
            rc = 128 + forwarded[-1]
        else:
            print(f"mergelab: the fork server's child {pid} ended without an exit status",
                  file=sys.stderr)
            rc = 1
    conn.close()
    return rc


# ----------------------------------------------------------------------------- server

def load_entry(entry: str) -> Callable[[list[str]], int]:
    """The function named by ``"module:function"`` (argv -> exit status)."""
    import importlib
    module, sep, name = entry.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"fork server entry point must be 'module:function', got {entry!r}")
    return getattr(importlib.import_module(module), name)


def _child(conn: socket.socket, server_env: dict[str, str], added: dict[str, str],
           run: Callable[[list[str]], int]) -> None:
    """In the forked child: check the request, take over the job's fds, run the command."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.setpgid(0, 0)  # the job's signals go to this group (the child and its subprocesses)
    msg, fds, _flags, _addr = socket.recv_fds(conn, _HEADER.size, 3)
    req: dict[str, Any] = json.loads(_recv_exact(conn, _HEADER.unpack(msg)[0]))
    reason = None
    if len(fds) != 3:
        reason = "file descriptors not received"
    elif (os.path.realpath(req["executable"]), req["prefix"]) != (os.path.realpath(sys.executable), sys.prefix):
        reason = f"the job runs {req['executable']}, the server {sys.executable}"
    else:
        diff = env_difference(req["env"], server_env)
        if diff:
            reason = "environment differs in " + ", ".join(diff[:8])
    if reason:
        data = reason.encode()
        conn.sendall(b"R" + _HEADER.pack(len(data)) + data)
        os._exit(0)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    for key, value in added.items():  # what importing the libraries set, as in a fresh process
        os.environ.setdefault(key, value)
    import tempfile
    tempfile.tempdir = None  # re-read TMPDIR
    sys.argv = [sys.argv[0]] + list(req["argv"])
    conn.sendall(b"P" + _RC.pack(os.getpid()))
    reported = []  # set once the exit status is sent: the job then closes the connection
    print(f"mergelab: job forked from the fork server (pid {os.getpid()})", file=sys.stderr,
          flush=True)

    import threading

    def watch() -> None:  # the job process is gone (killed): stop working for it
        try:
            while conn.recv(1):
                pass
        except OSError:
            pass
        if not reported:
            os.killpg(0, signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()
    rc = 1
    try:
        rc = run(list(req["argv"]))
    except SystemExit as exc:
        if exc.code is None:
            rc = 0
        elif isinstance(exc.code, int):
            rc = exc.code
        else:
            print(exc.code, file=sys.stderr)
            rc = 1
    except BaseException:  # noqa: BLE001 - report like the interpreter would
        import traceback
        traceback.print_exc()
        rc = 1
    finally:
        try:
            import logging
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            reported.append(rc)
            conn.sendall(_RC.pack(rc))
        finally:
            os._exit(rc)


def preload(names: Sequence[str] = PRELOAD) -> None:
    """Import ``names`` and run each module's code: one registered as a lazy module
    (mergelab.lazy, e.g. torch after importing mergelab.methods) is executed here too."""
    import importlib
    for name in names:
        try:
            vars(importlib.import_module(name))
        except Exception:  # noqa: BLE001 - an optional library: the job imports it itself
            pass


def serve(path: str, parent: int, entry: str) -> None:
    """Preload, then fork a child per connection, each running ``entry`` ("module:function")
    on its job's argv, until SIGTERM or until the parent process (Snakemake) is gone. No
    idle timeout: at paper scale a single job can run for hours."""
    server_env = dict(os.environ)
    preload()
    run = load_entry(entry)  # fails before the socket exists: jobs then run on their own
    added = {k: v for k, v in os.environ.items() if server_env.get(k) != v}
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children reap themselves
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = f"{path}.{os.getpid()}.tmp"
    sock.bind(tmp)
    sock.listen(64)
    os.replace(tmp, path)  # the socket appears only once the server is ready
    sock.settimeout(1.0)
    try:
        while not stop and os.getppid() == parent:
            try:
                conn, _ = sock.accept()
            except (socket.timeout, InterruptedError):
                continue
            if os.fork() == 0:
                sock.close()
                conn.settimeout(None)
                _child(conn, server_env, added, run)
            conn.close()
    finally:
        sock.close()
        import shutil
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)  # made by start() for it


def start(extra_env: Mapping[str, str], entry: str) -> tuple[Any, str]:
    """Start a server for this process (used by the Snakefile's ``onstart``) and return
    (Popen, socket path). ``extra_env``: what the jobs' shell adds to the environment;
    ``entry``: "module:function" that the jobs' children call with their argv (the
    function returns the exit status). The socket lives in a new private temporary
    directory, removed when the server exits."""
    import subprocess
    import tempfile
    path = os.path.join(tempfile.mkdtemp(prefix="mergelab-"), "forkserver.sock")
    env = dict(os.environ)
    env.update(extra_env)
    env.pop(ENV, None)
    proc = subprocess.Popen([sys.executable, "-m", "mergelab.forkserver", path, str(os.getpid()), entry],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    return proc, path


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), sys.argv[3])
