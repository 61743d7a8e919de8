"""Smoke test: the regime benchmark runs (1 ViT-B-32 block, 2 tasks), and its streamed
statistics agree with the benchmark's whole-vector float64 reference."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

pytest.importorskip("open_clip")

pytestmark = pytest.mark.slow  # runs the benchmark script end to end, two subprocesses


def test_bench_regime_quick(capsys):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_regime.py"
    spec = importlib.util.spec_from_file_location("bench_regime", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--layers", "1", "--tasks", "2"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^stream: [\d.]+ s, memory \+\d+ MiB$", out, re.M), out
    m = re.search(r"largest relative difference ([\d.e+-]+), mean CosSim ([\d.e+-]+), absolute difference ([\d.e+-]+)", out)
    assert m, out
    assert float(m.group(1)) <= 1e-12 and float(m.group(3)) <= 1e-12
