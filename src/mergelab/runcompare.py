"""Compare two runs' results directories: are the numbers bit for bit the same?

Used to show that a refactor, a new machine or a new library version leaves results
unchanged (`python -m mergelab.cli compare-runs A B`). Tensors (.safetensors) and
predictions (.npz) are compared by content; metrics and table JSONs by their numbers, with
the provenance blocks (code version, timings, paths) left out; Markdown, LaTeX and CSV
tables by text. Logs, figures and the manifest (which records code versions) are skipped.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Keys whose values legitimately differ between two runs of the same computation.
VOLATILE_KEYS = frozenset({"provenance", "code_version", "files", "seconds", "images_per_second"})
COMPARED = (".safetensors", ".npz", ".json", ".md", ".tex", ".csv")
SKIPPED_DIRS = frozenset({"logs", "figures"})
SKIPPED_FILES = frozenset({"manifest.json"})


@dataclass
class Comparison:
    compared: int = 0
    differ: list[str] = field(default_factory=list)
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not (self.differ or self.only_a or self.only_b)

    def summary(self) -> str:
        lines = [f"{self.compared} files compared: "
                 + ("identical" if self.identical else f"{len(self.differ)} differ")]
        for title, names in (("differ", self.differ), ("only in A", self.only_a), ("only in B", self.only_b)):
            lines += [f"  {title}: {n}" for n in names]
        return "\n".join(lines)


def result_files(root: Path) -> set[str]:
    """Relative paths of the files compared under a results directory."""
    out = set()
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if (p.is_file() and p.suffix in COMPARED and p.name not in SKIPPED_FILES
                and not SKIPPED_DIRS.intersection(rel.parts)):
            out.add(rel.as_posix())
    return out


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in VOLATILE_KEYS}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _same_json(a: Path, b: Path) -> bool:
    def load(p):  # NaN == NaN for this purpose: json.loads maps "NaN" to float('nan')
        return json.loads(p.read_text(), parse_constant=lambda c: f"<{c}>")
    return _strip(load(a)) == _strip(load(b))


def _same_arrays(a: dict, b: dict) -> bool:
    if set(a) != set(b):
        return False
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
            return False
    return True


def _same_file(a: Path, b: Path) -> bool:
    if a.suffix == ".json":
        return _same_json(a, b)
    if a.suffix == ".safetensors":
        from safetensors.numpy import load_file
        try:
            return _same_arrays(load_file(str(a)), load_file(str(b)))
        except (TypeError, ValueError):  # bfloat16 and other dtypes numpy lacks: compare bytes
            return a.read_bytes() == b.read_bytes()
    if a.suffix == ".npz":
        with np.load(a, allow_pickle=False) as x, np.load(b, allow_pickle=False) as y:
            return _same_arrays(dict(x), dict(y))
    return a.read_bytes() == b.read_bytes()


def compare_runs(a: str | Path, b: str | Path) -> Comparison:
    a, b = Path(a), Path(b)
    for root in (a, b):
        if not root.is_dir():
            raise FileNotFoundError(f"compare-runs: {root} is not a results directory")
    fa, fb = result_files(a), result_files(b)
    cmp = Comparison(only_a=sorted(fa - fb), only_b=sorted(fb - fa))
    for rel in sorted(fa & fb):
        cmp.compared += 1
        if not _same_file(a / rel, b / rel):
            cmp.differ.append(rel)
    return cmp
