"""GPU slots: give concurrent jobs on one multi-GPU machine distinct devices.

Snakemake bounds how many GPU jobs run at once (``--resources gpu=N``) but does not
say *which* GPU a job should use, so without help every job lands on ``cuda:0``.
When ``MERGELAB_GPU_SLOTS=N`` is set (rules/common.smk sets it for local runs with
``--resources gpu=N``, N > 1; see profiles/multigpu and docs/cluster.md), a process
that asks :func:`mergelab.models.pick_device` for ``auto``/``cuda`` takes the first
free one of N slots: slot ``i`` is an exclusive ``fcntl.flock`` on
``<lock dir>/mergelab-gpu-<i>.lock`` and maps to visible device ``i % device_count``.
The lock is held for the life of the process and the kernel drops it when the process
exits, however it exits (also ``kill -9``), so no slot is ever leaked.

Environment:

* ``MERGELAB_GPU_SLOTS``: number of slots (unset, empty or < 1: allocator off).
* ``MERGELAB_GPU_LOCK_DIR``: directory of the lock files (default: the system temp
  directory). Processes that share GPUs must share this directory; two independent
  workflows on one machine then share the slots too.
* ``MERGELAB_GPU_SLOT_TIMEOUT``: seconds to wait for a free slot before giving up
  (default 0 = wait forever; Snakemake's resource bound normally guarantees a free one).
"""
from __future__ import annotations

import errno
import fcntl
import os
import tempfile
import time
from pathlib import Path

ENV_SLOTS = "MERGELAB_GPU_SLOTS"
ENV_LOCK_DIR = "MERGELAB_GPU_LOCK_DIR"
ENV_TIMEOUT = "MERGELAB_GPU_SLOT_TIMEOUT"

_held: tuple[int, int] | None = None  # (slot, fd) held by this process


def configured_slots() -> int:
    """N from ``MERGELAB_GPU_SLOTS``, 0 when the allocator is off."""
    raw = os.environ.get(ENV_SLOTS, "").strip()
    if not raw:
        return 0
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"{ENV_SLOTS}={raw!r}: expected a positive integer") from None
    return max(n, 0)


def lock_dir() -> Path:
    return Path(os.environ.get(ENV_LOCK_DIR) or tempfile.gettempdir())


def lock_path(slot: int, directory: Path | None = None) -> Path:
    return (directory or lock_dir()) / f"mergelab-gpu-{slot}.lock"


def _try_lock(path: Path) -> int | None:
    # O_RDONLY is enough for flock and works on a lock file another user created.
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


def acquire(n_slots: int | None = None, directory: Path | None = None,
            timeout: float | None = None, poll: float = 0.5) -> int:
    """Take a free slot (0 ≤ slot < n) and keep it until :func:`release` or exit.

    Idempotent within a process: a second call returns the slot already held.
    Blocks (polling) while all slots are taken; raises TimeoutError after ``timeout``
    seconds (None: ``MERGELAB_GPU_SLOT_TIMEOUT``, 0 or unset: wait forever).
    """
    global _held
    if _held is not None:
        return _held[0]
    n = configured_slots() if n_slots is None else int(n_slots)
    if n < 1:
        raise ValueError(f"need at least one GPU slot, got {n}")
    d = directory or lock_dir()
    d.mkdir(parents=True, exist_ok=True)
    if timeout is None:
        timeout = float(os.environ.get(ENV_TIMEOUT) or 0)
    start = time.monotonic()
    # Start the scan at a pid-dependent slot so that simultaneous starters rarely
    # contend for the same lock (correctness does not depend on it).
    first = os.getpid() % n
    while True:
        for k in range(n):
            slot = (first + k) % n
            fd = _try_lock(lock_path(slot, d))
            if fd is not None:
                os.set_inheritable(fd, False)
                _held = (slot, fd)
                return slot
        if timeout and time.monotonic() - start >= timeout:
            raise TimeoutError(f"no free GPU slot of {n} in {d} after {timeout:.0f} s")
        time.sleep(poll)


def held() -> int | None:
    """The slot this process holds, or None."""
    return None if _held is None else _held[0]


def release() -> None:
    """Give the slot back early (normally the process exit does it)."""
    global _held
    if _held is not None:
        slot, fd = _held
        _held = None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def device_index(slot: int, device_count: int) -> int:
    """Visible CUDA device for a slot (more slots than devices share devices round-robin)."""
    if device_count < 1:
        raise ValueError("no CUDA device visible")
    return slot % device_count


def main(argv: list[str] | None = None) -> int:
    """``python -m mergelab.gpuslots [N]``: show which slots are free or taken."""
    import sys
    args = sys.argv[1:] if argv is None else argv
    n = int(args[0]) if args else (configured_slots() or 1)
    for slot in range(n):
        fd = _try_lock(lock_path(slot))
        state = "free" if fd is not None else "taken"
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        print(f"slot {slot}: {state} ({lock_path(slot)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
