"""Interleaved, in-process timing of the SVD methods on one ViT-B-32 block.

``bench_merge.py`` times every merge in its own subprocess, minutes apart; on a machine
shared with other jobs the load changes between rows. This script times, for each key
of one block (in_proj 2304×768, out_proj 768×768, c_fc 3072×768, c_proj 768×3072; σ_i ∝
1/i, ``bench_merge.synth``), back to back: the suite's decomposition
(``linalg.compute_key_basis``), every method alone, its plain float32 version
(``bench_merge.ref_key``) and, for the methods that read it, the merge from the
decomposition; it keeps the fastest of ``--reps`` per key and prints the per-method and
suite totals as Markdown. No memory or error columns (``bench_merge.py`` has them).

    python benchmarks/bench_interleaved.py --reps 3 --threads 2
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_merge import METHODS, SHARED, ref_key, synth  # noqa: E402

SHAPES = {"in_proj": (2304, 768), "out_proj": (768, 768), "c_fc": (3072, 768), "c_proj": (768, 3072)}


def time_block(shapes, T: int, reps: int, methods) -> dict:
    """Fastest of ``reps`` seconds per (kind, method, key)."""
    from mergelab.methods import build
    from mergelab.methods import linalg as L
    from mergelab.methods.base import KeyInfo
    best: dict = {}

    def tick(name, f):
        t0 = time.perf_counter()
        out = f()
        best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
        return out

    g = torch.Generator().manual_seed(0)
    for key, shape in shapes.items():
        taus = [synth(shape, g, "inv", T) for _ in range(T)]
        info = KeyInfo(key=f"visual.{key}", regime="full", n_tasks=T, seed=0, is_matrix=True)
        for _ in range(reps):
            b = tick(("decompose", "", key), lambda: L.compute_key_basis(taus, min(shape) // T))
            with_basis = KeyInfo(key=info.key, regime="full", n_tasks=T, seed=0, is_matrix=True, basis=b)
            for m in methods:
                tick(("ours", m, key), lambda: build(m).merge_key(taus, info))
                tick(("plain", m, key), lambda: ref_key(m, taus, torch.float32))
                if m in SHARED:
                    tick(("shared", m, key), lambda: build(m).merge_key(taus, with_basis))
    return best


def report(best: dict, methods) -> str:
    def total(kind, m=None):
        return sum(v for (k, mm, _), v in best.items() if k == kind and (m is None or mm == m))
    lines = ["| method | ours alone (s) | ours from the shared decomposition (s) | plain f32 (s) | plain / ours alone |",
             "|---|---|---|---|---|"]
    suite = total("decompose")
    for m in methods:
        o, p = total("ours", m), total("plain", m)
        sh = total("shared", m) if m in SHARED else None
        suite += sh if sh is not None else o
        lines.append(f"| {m} | {o:.2f} | {'–' if sh is None else f'{sh:.2f}'} | {p:.2f} | {p / o:.2f}× |")
    plain = total("plain")
    lines.append(f"| **suite** (decompose {total('decompose'):.2f} s + all methods) | {suite:.2f} | | "
                 f"{plain:.2f} | **{plain / suite:.2f}×** |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    ap.add_argument("--keys", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ns = ap.parse_args(argv)
    torch.set_num_threads(ns.threads)
    import os
    print(f"# T={ns.tasks}, reps={ns.reps}, threads={ns.threads}, load average at start {os.getloadavg()}")
    best = time_block({k: SHAPES[k] for k in ns.keys}, ns.tasks, ns.reps, ns.methods)
    print(report(best, ns.methods))
    print(f"# load average at end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
