"""Smoke test: the merge benchmark still runs (2 layers, 2 tasks, one method)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("open_clip")
pytest.importorskip("safetensors")


def test_bench_merge_quick(capsys):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_merge.py"
    spec = importlib.util.spec_from_file_location("bench_merge", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--quick", "--layers", "1", "--tasks", "2", "--methods", "tsv_m", "--no-f64", "--inprocess"]) == 0
    out = capsys.readouterr().out
    row = [l for l in out.splitlines() if l.startswith("| tsv_m | 2 |")]
    assert row, out
    err = float(row[0].split("|")[-2])
    assert err < 1e-3  # ours vs the plain float32 implementation
