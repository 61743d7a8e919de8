"""Where TSV-M's time goes on one ViT-B-32 block: our fast route stage by stage vs the plain code.

For each matrix of one transformer block (in_proj 2304×768, out_proj 768×768, c_fc
3072×768, c_proj 768×3072) and T synthetic task vectors (σ_i ∝ 1/i, as in bench_merge.py)
it times, on the given number of threads:

* plain: T full float32 SVDs plus the two SVD-based polar factors (the public code);
* ours, by stage: ``linalg.top_svd_batched`` (forming the T Gram matrices, the Gram power
  steps, the two-sided step, the Rayleigh–Ritz step; it reports them through its ``lap``
  hook), the polar factors (``FastPolar``) of the concatenated U's and V's, and the final
  product, as ``TSVMerge.merge_key`` does them.

The script also checks that its τm equals ``TSVMerge.merge_key``'s, so the table cannot
drift from the method. It prints a Markdown table and the bound on the speed-up that
the Gram products and the polar factors alone leave (docs/benchmarks.md, "Where a 5×
speed-up at T = 8 would have to come from").

    python benchmarks/profile_stages.py              # T = 8, 1 thread
    python benchmarks/profile_stages.py --tasks 8 --threads 2
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_merge import synth  # noqa: E402

SHAPES = {"attn.in_proj_weight": (2304, 768), "attn.out_proj.weight": (768, 768),
          "mlp.c_fc.weight": (3072, 768), "mlp.c_proj.weight": (768, 3072)}
STAGES = ["gram", "gram steps", "two-sided step", "Rayleigh–Ritz", "polar U", "polar V", "product"]


class Clock:
    def __init__(self):
        self.t = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        dt, self.t = now - self.t, now
        return dt


def ours_by_stage(A: torch.Tensor, k: int) -> tuple[dict[str, float], torch.Tensor]:
    """TSV-M's fast route on A [T, m, n], timed per stage; returns (seconds, τm).

    Runs the package's own functions (``top_svd_batched`` reports its stages through
    ``lap``); the assembly is ``TSVMerge.merge_key``'s."""
    from mergelab.methods import linalg as L
    from mergelab.methods.linalg import cat_tasks
    sec: dict[str, float] = {}
    c = Clock()

    def lap(stage: str) -> None:
        sec[stage] = c.lap()

    U, S, V = L.top_svd_batched(A, k, lap=lap)
    pu = L.FastPolar(cat_tasks(U))
    lap("polar U")
    pv = L.FastPolar(cat_tasks(V))
    lap("polar V")
    out = (pu.P * S.reshape(-1).to(torch.float32)) @ pv.P.T
    lap("product")
    if list(sec) != STAGES:
        raise SystemExit(f"top_svd_batched did not take the power-step route (stages: {list(sec)})")
    return sec, out


def plain(A: torch.Tensor, k: int) -> float:
    c = Clock()
    Us, Vs = [], []
    for a in A:
        U, S, Vh = torch.linalg.svd(a, full_matrices=False)
        Us.append(U[:, :k]), Vs.append(Vh[:k].T)
    for X in (torch.cat(Us, 1), torch.cat(Vs, 1)):
        torch.linalg.svd(X, full_matrices=False)
    return c.lap()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from mergelab.methods import build
    from mergelab.methods.base import KeyInfo
    T = args.tasks
    rows, tot_plain, tot = [], 0.0, dict.fromkeys(STAGES, 0.0)
    for key, shape in SHAPES.items():
        g = torch.Generator().manual_seed(args.seed)
        A = torch.stack([synth(shape, g) for _ in range(T)])
        k = min(shape) // T
        if 2 * k > 0.6 * min(shape):
            raise SystemExit(f"--tasks {T}: k = r/T is too large for the power-step route")
        sec, out = ours_by_stage(A, k)
        ref = build("tsv_m").merge_key(list(A), KeyInfo(key=key, regime="full", n_tasks=T, seed=0,
                                                         is_matrix=True))
        if not torch.allclose(out, ref, rtol=0, atol=1e-6 * float(ref.abs().max())):
            raise SystemExit(f"{key}: the stage-by-stage result differs from TSVMerge.merge_key")
        p = plain(A, k)
        tot_plain += p
        for s in STAGES:
            tot[s] += sec[s]
        rows.append((key, p, sec))
    print(f"# TSV-M, one ViT-B-32 block, T = {T}, {args.threads} thread(s); seconds\n")
    print("| key | plain | " + " | ".join(STAGES) + " | ours | speed-up |")
    print("|---|---:|" + "---:|" * (len(STAGES) + 2))
    for key, p, sec in rows + [("**block**", tot_plain, tot)]:
        ours = sum(sec.values())
        print(f"| {key} | {p:.3f} | " + " | ".join(f"{sec[s]:.3f}" for s in STAGES)
              + f" | {ours:.3f} | {p / ours:.2f}× |")
    fixed = tot["gram"] + tot["polar U"] + tot["polar V"]
    print(f"\nGram products + polar factors alone: {fixed:.3f} s = {fixed / tot_plain:.0%} of the plain "
          f"time; the 5× target leaves {tot_plain / 5:.3f} s for the whole block, i.e. "
          f"{tot_plain / 5 - fixed:.3f} s for the power steps, Rayleigh–Ritz and product of "
          f"{4 * T} matrices (now {sum(tot.values()) - fixed:.3f} s).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
