"""Disk I/O: atomic writes, safetensors, JSON with provenance.

Every artifact is written to a temporary file in the destination directory and
renamed into place, so a killed job never leaves a file that looks complete.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

from safetensors import SafetensorError

from .lazy import torch


class ArtifactError(RuntimeError):
    """An input artifact is missing, corrupt or inconsistent (the message names the file)."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # leftovers of a writer of this same path that was killed (SIGKILL skips `finally`)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        _test_pause(path, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_figure(fig, png: str | os.PathLike | None, pdf: str | os.PathLike | None, *,
                tight: bool = True) -> None:
    """Write a matplotlib figure atomically as PNG and/or PDF (150 dpi; ``tight``: cropped
    to its contents) and close it."""
    import matplotlib.pyplot as plt
    for path, fmt in ((png, "png"), (pdf, "pdf")):
        if path is not None:
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight" if tight else None)
    plt.close(fig)


def figure_paths(stem: str | os.PathLike) -> tuple[Path, Path]:
    """``<stem>.png`` and ``<stem>.pdf`` (the stem may contain dots)."""
    stem = Path(stem)
    return stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")


def _test_pause(path: Path, tmp: Path) -> None:
    """Test hook (tests/test_reliability.py), inert unless MERGELAB_TEST_PAUSE_AT is set:
    when ``path`` contains that substring, write ``$MERGELAB_TEST_PAUSE_DIR/paused``
    (pid, target, temp file) and sleep, so that a test can SIGKILL the process after
    the data is written but before the rename that makes the output visible."""
    at = os.environ.get("MERGELAB_TEST_PAUSE_AT")
    if not at or at not in str(path):
        return
    import time
    marker_dir = Path(os.environ.get("MERGELAB_TEST_PAUSE_DIR", tempfile.gettempdir()))
    marker_dir.mkdir(parents=True, exist_ok=True)
    (marker_dir / "paused.tmp").write_text(json.dumps(
        {"pid": os.getpid(), "path": str(path), "tmp": str(tmp)}))
    os.replace(marker_dir / "paused.tmp", marker_dir / "paused")
    time.sleep(float(os.environ.get("MERGELAB_TEST_PAUSE_SECONDS", "600")))


def save_tensors(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike,
                 metadata: Mapping[str, str] | None = None) -> None:
    """Atomically save a flat dict of tensors as safetensors."""
    from safetensors.torch import save_file
    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(clean, str(tmp), metadata=dict(metadata) if metadata else None)
        _canonical_header(tmp)


def _canonical_header(path: Path) -> None:
    """Sort the safetensors ``__metadata__`` keys in place: safetensors writes them in
    hash-map order, which changes from process to process, so the same tensors and
    metadata would give different bytes (and sha256) on every run."""
    import struct
    with open(path, "rb+") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
        meta = header.get("__metadata__")
        if not meta or len(meta) < 2:
            return
        header["__metadata__"] = dict(sorted(meta.items()))
        out = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(out) > n:  # cannot happen for a re-serialisation of the same header
            return
        fh.seek(8)
        fh.write(out + b" " * (n - len(out)))


def load_tensors(path: str | os.PathLike, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Load safetensors, turning any decoding failure into an error naming the file."""
    from safetensors.torch import load_file
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: file does not exist")
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ArtifactError(f"{path}: not a readable safetensors file ({exc}); "
                            "delete it and rerun the rule that produced it") from exc


def check_finite(tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise if any floating tensor holds NaN or Inf, naming the file and key."""
    for key, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            bad = (~torch.isfinite(t)).sum().item()
            raise ArtifactError(f"{source}: tensor '{key}' has {bad} NaN/Inf entries")


def save_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=2, sort_keys=False, default=_json_default)
            fh.write("\n")


def load_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path}: file does not exist") from exc
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: invalid JSON ({exc})") from exc


def _json_default(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serializable: {type(o)}")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


_PACKAGES = ("torch", "torchvision", "open_clip_torch", "transformers", "datasets", "peft",
             "safetensors", "numpy", "pandas", "snakemake", "scikit-learn")


def package_versions() -> dict[str, str]:
    from importlib import metadata
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def code_version() -> str:
    """git describe of the checkout (with -dirty), or the package version outside git."""
    from . import __version__
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"],
                             cwd=here, capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return f"{__version__}+{out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    return __version__


def provenance(config: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """The block every metrics JSON carries: config subset, seed, code and package versions."""
    prov = {"code_version": code_version(), "packages": package_versions()}
    if config is not None:
        prov["config"] = config
    prov.update(extra)
    return prov
