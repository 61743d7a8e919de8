"""Regime-report benchmark: task-vector CosSim and ‖τt‖/‖θ0‖, streamed vs whole vectors.

Writes T synthetic task vectors with the open_clip ViT-B-32 image-encoder shapes
(``--layers`` residual blocks; ``bench_merge.vit_shapes``) and, each in a fresh subprocess,
computes the regime report's task-vector statistics two ways:

* ``stream``: ``regime.regime_statistics`` (one key of every task in memory at a time);
* ``whole``: every task vector loaded whole and flattened to float64, written inside this
  file as the reference (the report loaded every task vector whole until 2026-11-30, but
  flattened only two at a time).

It prints, per way, the growth of anonymous resident memory (``bench_merge.AnonPeak``),
the wall time, and how far the streamed statistics are from the whole-vector ones
(relative for the norms, absolute for the mean CosSim of these nearly orthogonal vectors).

    python benchmarks/bench_regime.py --layers 12 --tasks 8
"""
from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_merge import AnonPeak, vit_shapes  # noqa: E402


def write_inputs(folder: Path, layers: int, tasks: int, seed: int) -> None:
    from mergelab.io import save_tensors
    shapes = vit_shapes(layers)
    g = torch.Generator().manual_seed(seed)
    save_tensors({k: torch.randn(s, generator=g) for k, s in shapes.items()}, folder / "theta0.safetensors")
    for t in range(tasks):
        save_tensors({k: 1e-3 * torch.randn(s, generator=g) for k, s in shapes.items()}, folder / f"t{t}.safetensors")
    names = [f"t{t}" for t in range(tasks)]
    for kind, acc in (("zeroshot", 0.5), ("individual", 0.9)):
        (folder / f"{kind}.json").write_text(json.dumps({"kind": kind, "regime": "full",
                                                         "test": {n: acc for n in names}}))


def whole_vectors(folder: Path, paths: list[Path], theta0: dict[str, torch.Tensor]) -> dict[str, float]:
    """The reference: all task vectors in memory, flattened, float64 dot products."""
    from mergelab.io import load_tensors
    flat = [torch.cat([v.double().flatten() for _, v in sorted(load_tensors(p).items())]) for p in paths]
    norm0 = float(torch.cat([v.double().flatten() for _, v in sorted(theta0.items())]).norm())
    cos = [float(a @ b / (a.norm() * b.norm())) for a, b in itertools.combinations(flat, 2)]
    return {"cossim_mean": sum(cos) / len(cos), **{p.stem: 100 * float(f.norm()) / norm0 for p, f in zip(paths, flat)}}


def streamed(folder: Path, paths: list[Path], theta0: dict[str, torch.Tensor]) -> dict[str, float]:
    from mergelab import regime
    names = [p.stem for p in paths]
    st = regime.regime_statistics([folder / "zeroshot.json", folder / "individual.json"], {"full": paths},
                                  theta0, names)
    return {"cossim_mean": st["cossim_mean_full"], **st["per_task"]["tau_norm_full"]}


def child(folder: Path, way: str) -> None:
    from mergelab.io import load_tensors
    theta0 = load_tensors(folder / "theta0.safetensors")
    paths = sorted(folder.glob("t[0-9]*.safetensors"), key=lambda p: int(p.stem[1:]))
    base, t0 = AnonPeak.now(), time.perf_counter()
    with AnonPeak() as peak:
        stats = (streamed if way == "stream" else whole_vectors)(folder, paths, theta0)
    print(json.dumps({"way": way, "seconds": time.perf_counter() - t0,
                      "memory_mib": (peak.peak - base) / 1024, "stats": stats}))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=12, help="ViT-B-32 residual blocks (12: the whole encoder)")
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", nargs=2, metavar=("FOLDER", "WAY"), help=argparse.SUPPRESS)
    ns = ap.parse_args(argv)
    if ns.child:
        child(Path(ns.child[0]), ns.child[1])
        return 0
    with tempfile.TemporaryDirectory() as d:
        write_inputs(Path(d), ns.layers, ns.tasks, ns.seed)
        runs = {}
        for way in ("stream", "whole"):
            res = subprocess.run([sys.executable, __file__, "--child", d, way], capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(f"{way} failed:\n{res.stderr[-3000:]}")
            runs[way] = json.loads(res.stdout.strip().splitlines()[-1])
    ref, new = runs["whole"]["stats"], runs["stream"]["stats"]
    norm_diff = max(abs(new[k] - v) / v for k, v in ref.items() if k != "cossim_mean")
    cos_diff = abs(new["cossim_mean"] - ref["cossim_mean"])
    print(f"T = {ns.tasks}, {ns.layers} ViT-B-32 blocks")
    for way, r in runs.items():
        print(f"{way:>6}: {r['seconds']:.1f} s, memory +{r['memory_mib']:.0f} MiB")
    print(f"stream vs whole: ‖τt‖/‖θ0‖ largest relative difference {norm_diff:.1e}, "
          f"mean CosSim {ref['cossim_mean']:.3e}, absolute difference {cos_diff:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
