"""Smoke test: the merge benchmark still runs (1 layer, 2 tasks, one method at a time), and
our merge agrees with the benchmark's independent plain implementation."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("open_clip")
pytest.importorskip("safetensors")


@pytest.mark.parametrize("method", ["tsv_m", "mda"])
def test_bench_merge_quick(capsys, method):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_merge.py"
    spec = importlib.util.spec_from_file_location("bench_merge", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--quick", "--layers", "1", "--tasks", "2", "--methods", method, "--no-f64", "--inprocess"]) == 0
    out = capsys.readouterr().out
    row = [l for l in out.splitlines() if l.startswith(f"| {method} | 2 |")]
    assert row, out
    err = float(row[0].split("|")[-2])
    assert err < 1e-3  # ours vs the plain float32 implementation


def test_profile_stages_matches_the_method(capsys):
    """The stage profile re-runs TSV-M's fast route step by step; it refuses to print a table
    if its result differs from TSVMerge.merge_key (checked on every key of one block)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "profile_stages.py"
    spec = importlib.util.spec_from_file_location("profile_stages", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--tasks", "8", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    block = [l for l in out.splitlines() if l.startswith("| **block** |")]
    assert block, out
    cells = [c.strip() for c in block[0].split("|")[2:-1]]
    plain, stages, ours = float(cells[0]), [float(c) for c in cells[1:-2]], float(cells[-2])
    assert len(stages) == len(mod.STAGES) and abs(sum(stages) - ours) < 1e-2 and plain > 0
