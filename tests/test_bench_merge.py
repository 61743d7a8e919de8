"""Smoke test: the merge benchmark still runs (1 layer, 2 tasks, one method at a time), our
merge agrees with the benchmark's independent float64 implementation on every spectrum,
and the merge from the suite's shared decomposition equals the method's own."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("open_clip")
pytest.importorskip("safetensors")

pytestmark = pytest.mark.slow  # runs the benchmark script end to end (make test, not test-fast)


def _bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_merge.py"
    spec = importlib.util.spec_from_file_location("bench_merge", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("method", ["tsv_m", "iso_c"])
def test_bench_merge_quick(capsys, method):
    mod = _bench()
    assert mod.main(["--quick", "--tasks", "2", "--methods", method, "--inprocess",
                     "--spectra", "noise_floor", "near_degenerate",
                     "--only", "out_proj.weight", "ln_post"]) == 0
    out = capsys.readouterr().out
    rows = [l.split("|")[1:-1] for l in out.splitlines() if l.startswith("| noise_floor |")
            or l.startswith("| near_degenerate |")]
    rows = [[c.strip() for c in r] for r in rows if len(r) > 8]
    assert len(rows) == 2, out
    for r in rows:
        assert float(r[10]) <= 1e-4                         # ours vs exact f64
        assert (r[12] == "–") == (method == "iso_c")       # only TSV-M reads the decomposition
        if method == "tsv_m":
            assert float(r[12]) == 0.0                      # shared == alone, to the bit
    assert (rows[0][5] != "–") and (rows[1][5] == "–")     # plain f32 timed on the first spectrum only
    suite = [l for l in out.splitlines() if l.startswith("| noise_floor | 2 |")]
    assert suite and float(suite[0].split("|")[5]) > 0


def test_bench_interleaved_prints_every_method_and_the_suite(capsys):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_interleaved.py"
    spec = importlib.util.spec_from_file_location("bench_interleaved", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--tasks", "2", "--reps", "1", "--threads", "1", "--keys", "out_proj"]) == 0
    out = capsys.readouterr().out
    rows = {l.split("|")[1].strip(): l for l in out.splitlines() if l.startswith("| ")}
    assert set(mod.METHODS) <= set(rows) and any(k.startswith("**suite**") for k in rows)
    assert rows["iso_c"].split("|")[3].strip() == "–" and rows["tsv_m"].split("|")[3].strip() != "–"
