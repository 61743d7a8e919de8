"""The KnOTS validation/test partitions of the LoRA protocol, shipped as plain data.

The public LoRA code (``gstoica27/KnOTS`` ``dataset/shuffled_idxs/*.pt``; the DC-Merge repo
``Tobeginwith/DC-Merge`` ``vision_lora_merge/dataset/shuffled_idxs/`` holds byte-identical
copies) splits the test split of Cars, GTSRB, MNIST, SUN397 and SVHN with one fixed shuffled
index array per dataset: the first ``int(n · 0.2)`` indices are validation, the rest test.
Those files are ``torch.save`` pickles of a NumPy int64 array. They were converted to
``knots_splits/<task>.npy`` (int32, ``np.load(..., allow_pickle=False)``) by :func:`read_index_pt`,
which never unpickles: it walks the pickle's opcodes with ``pickletools.genops`` (no code
runs) and takes the array's raw bytes, dtype and shape from the opcode arguments.
Provenance (repository, commit, file hashes) is in ``knots_splits/README.md``.
"""
from __future__ import annotations

import pickletools
import zipfile
from pathlib import Path

import numpy as np

SPLIT_DIR = Path(__file__).resolve().parent / "knots_splits"
#: tasks with a shipped permutation -> test-split size it indexes
KNOTS_TEST_SIZES = {"Cars": 8041, "GTSRB": 12630, "MNIST": 10000, "SUN397": 19850, "SVHN": 26032}
_RECONSTRUCT = {"numpy.core.multiarray _reconstruct", "numpy._core.multiarray _reconstruct"}


class IndexFileError(ValueError):
    """An index file is not the plain NumPy integer array this reader accepts."""


def read_index_pt(path: str | Path) -> np.ndarray:
    """The int array inside a ``torch.save``-d NumPy array, read without unpickling.

    Accepts exactly one pickled 1-D little-endian integer ndarray (the shape of the KnOTS
    files) and refuses anything else, naming the file.
    """
    path = Path(path)
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if n.endswith("data.pkl")]
        if len(names) != 1:
            raise IndexFileError(f"{path}: expected one data.pkl in the archive, found {names}")
        ops = list(pickletools.genops(z.read(names[0])))
    globals_ = {arg for op, arg, _ in ops if op.name in ("GLOBAL", "STACK_GLOBAL")}
    allowed = _RECONSTRUCT | {"numpy ndarray", "numpy dtype", "_codecs encode"}
    if not globals_ & _RECONSTRUCT or not globals_ <= allowed:
        raise IndexFileError(f"{path}: not a plain pickled ndarray (globals {sorted(globals_)})")
    strings = [arg for op, arg, _ in ops if op.name in ("BINUNICODE", "SHORT_BINUNICODE",
                                                        "BINBYTES", "SHORT_BINBYTES")]
    dtypes = [s for s in strings if isinstance(s, str) and s in ("i8", "i4")]
    if len(dtypes) != 1:
        raise IndexFileError(f"{path}: expected an int64/int32 array, dtype strings {dtypes}")
    payload = max((s for s in strings if s not in dtypes), key=len)
    raw = payload.encode("latin1") if isinstance(payload, str) else payload
    arr = np.frombuffer(raw, dtype="<" + dtypes[0])
    ints = {arg for op, arg, _ in ops if op.name in ("BININT1", "BININT2", "BININT", "LONG1")}
    if arr.size not in ints:
        raise IndexFileError(f"{path}: {arr.size} entries but the pickled shape says otherwise")
    return arr.astype(np.int64)


def knots_permutation(task: str) -> np.ndarray | None:
    """The shipped KnOTS permutation of ``task``'s test split (int64), or None."""
    path = SPLIT_DIR / f"{task}.npy"
    if task not in KNOTS_TEST_SIZES or not path.exists():
        return None
    perm = np.load(path, allow_pickle=False).astype(np.int64)
    if perm.shape != (KNOTS_TEST_SIZES[task],):
        raise IndexFileError(f"{path}: shape {perm.shape}, expected ({KNOTS_TEST_SIZES[task]},)")
    return perm


def knots_split(task: str, n: int, fraction: float = 0.2) -> tuple[list[int], list[int]] | None:
    """(validation, test) indices of ``task``'s test split of size ``n`` by the KnOTS file:
    the first ``int(n · fraction)`` entries are validation. None when no file applies
    (no file for the task, or a test split of another size than the file indexes)."""
    perm = knots_permutation(task)
    if perm is None or len(perm) != n:
        return None
    n_val = int(n * fraction)
    return perm[:n_val].tolist(), perm[n_val:].tolist()
