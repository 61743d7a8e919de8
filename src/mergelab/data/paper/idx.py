"""The IDX layout of the MNIST family (LeCun's format, also Fashion-MNIST, KMNIST):
``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]`` and the same with the
``t10k`` prefix for the test split, read with numpy."""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from .tasks import PaperDataError

#: split name -> file-name prefix of the IDX distribution
IDX_PREFIXES = {"train": "train", "test": "t10k"}
#: magic number = 0x0000 | type code (0x08: unsigned byte) | number of dimensions
IDX_UBYTE = 0x08
_KINDS = {"images": 3, "labels": 1}


def idx_file_name(prefix: str, kind: str) -> str:
    return f"{prefix}-{kind}-idx{_KINDS[kind]}-ubyte"


def _existing(path: Path, name: str) -> Path | None:
    """``path/name`` or ``path/name.gz``, the uncompressed file first."""
    for candidate in (path / name, path / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_idx(path: Path) -> dict[str, tuple[Path, Path]]:
    """split -> (images file, labels file) for every split whose IDX files are in ``path``;
    an images file without its labels file (or the reverse) is an error naming the missing
    file."""
    found = {}
    for split, prefix in IDX_PREFIXES.items():
        images = _existing(path, idx_file_name(prefix, "images"))
        labels = _existing(path, idx_file_name(prefix, "labels"))
        if images is None and labels is None:
            continue
        if images is None or labels is None:
            have, missing = (images, "labels") if labels is None else (labels, "images")
            raise PaperDataError(f"IDX layout at {path}: {have.name} has no matching "
                                 f"{idx_file_name(prefix, missing)}[.gz]")
        found[split] = (images, labels)
    return found


def _read_bytes(file: Path) -> bytes:
    try:
        if file.suffix == ".gz":
            with gzip.open(file, "rb") as fh:
                return fh.read()
        return file.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise PaperDataError(f"IDX file {file}: cannot decompress/read it "
                             f"({type(exc).__name__}: {exc})") from exc


def read_idx(file: Path, ndim: int) -> np.ndarray:
    """The uint8 array stored in IDX file ``file``, which must have ``ndim`` dimensions;
    a wrong magic number or a size that disagrees with the header is an error naming it."""
    raw = _read_bytes(file)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise PaperDataError(f"IDX file {file}: {len(raw)} bytes, shorter than its "
                             f"{header}-byte header (truncated)")
    magic = int.from_bytes(raw[:4], "big")
    expected = (IDX_UBYTE << 8) | ndim
    if magic != expected:
        raise PaperDataError(f"IDX file {file}: magic number 0x{magic:08x}, expected "
                             f"0x{expected:08x} (unsigned bytes, {ndim} dimension(s))")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    n_data = len(raw) - header
    if n_data != int(np.prod(dims)):
        what = "truncated" if n_data < int(np.prod(dims)) else "trailing bytes"
        raise PaperDataError(f"IDX file {file}: header says shape {dims} = "
                             f"{int(np.prod(dims))} bytes of data, file has {n_data} ({what})")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_idx_split(images_file: Path, labels_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images ``[n, h, w]`` uint8, labels ``[n]`` int64) of one split; the two files must
    hold the same number of examples."""
    images = read_idx(images_file, 3)
    labels = read_idx(labels_file, 1).astype(np.int64)
    if len(images) != len(labels):
        raise PaperDataError(f"IDX files {images_file} ({len(images)} images) and "
                             f"{labels_file} ({len(labels)} labels) disagree on the count")
    return images, labels
