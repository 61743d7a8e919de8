"""Merge benchmark: our SVD-family methods vs a plain exact implementation.

Builds the open_clip ViT-B-32 image-encoder shapes (2-D ``visual.*`` keys plus a
few vector keys), synthetic task vectors with a decaying spectrum
(σ_i ∝ i^-1, random orthogonal factors, seeded), writes them as safetensors and
merges through ``SafetensorsSource`` + ``method.merge``. The reference is the
public-code way: a full ``torch.linalg.svd`` per task per matrix (float32) and
SVD-based polar factors, timed in the same run. The error column is the
relative Frobenius error of our τm (all keys) against that float32 plain
implementation; ``--f64`` adds the same plain algorithm in float64 ("exact")
and both implementations' distance to it.

Both implementations run in fresh subprocesses with the same torch thread count
(``--threads``, default: all) and ``OMP_WAIT_POLICY=PASSIVE`` (``--omp-wait-policy``):
on a CPU shared with other jobs, OpenMP threads that spin at barriers make
LAPACK calls (SVD, eigh, QR) 10-100x slower and the timings meaningless.

Memory: each timed merge runs in a fresh subprocess. "merge memory" is the growth
of its anonymous resident memory during the merge (peak ``RssAnon`` sampled every
2 ms minus the value before): what the merge allocates, without the page cache of
the memory-mapped inputs. "peak RSS" is ``ru_maxrss`` (includes the Python + torch
baseline, printed separately, and every input page the merge touched).

    python benchmarks/bench_merge.py                   # 12 blocks, T = 8 14 20
    python benchmarks/bench_merge.py --tasks 8 --methods tsv_m iso_cts dc_merge
    python benchmarks/bench_merge.py --quick           # 2 layers, smoke test
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

METHODS = ["tsv_m", "iso_c", "iso_cts", "dc_merge", "mda"]


# -- synthetic task vectors ---------------------------------------------------------

def vit_shapes(layers: int | None) -> dict[str, tuple[int, ...]]:
    import open_clip
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    out = {}
    for k, v in model.state_dict().items():
        if not k.startswith("visual.") or not v.is_floating_point():
            continue
        if layers is not None and ".resblocks." in k and int(k.split(".resblocks.")[1].split(".")[0]) >= layers:
            continue
        if v.dim() == 2 or k.endswith(("ln_post.weight", "class_embedding", "ln_1.bias")):
            out[k] = tuple(v.shape)
    return out


def synth(shape, g: torch.Generator) -> torch.Tensor:
    if len(shape) != 2:
        return torch.randn(shape, generator=g) * 1e-3
    m, n = shape
    r = min(m, n)
    U, _ = torch.linalg.qr(torch.randn(m, r, generator=g))
    V, _ = torch.linalg.qr(torch.randn(n, r, generator=g))
    s = torch.arange(1, r + 1, dtype=torch.float32) ** -1.0
    return (U * s) @ V.T * 1e-2


def write_tasks(shapes, T: int, seed: int, folder: Path) -> list[Path]:
    from safetensors.torch import save_file
    paths = []
    for t in range(T):
        g = torch.Generator().manual_seed(seed * 1000 + t)
        p = folder / f"task{t}.safetensors"
        save_file({k: synth(s, g).contiguous() for k, s in shapes.items()}, str(p))
        paths.append(p)
    return paths


# -- plain exact reference (public-code style: full SVD per task per matrix) -------------

def _polar(X):
    P, _, Qh = torch.linalg.svd(X, full_matrices=False)
    return P @ Qh


def ref_key(name: str, taus: list[torch.Tensor], dtype) -> torch.Tensor:
    taus = [t.to(dtype) for t in taus]
    if taus[0].dim() != 2:
        return torch.stack(taus).mean(0)
    T = len(taus)
    m, n = taus[0].shape
    r = min(m, n)
    if name == "iso_c":
        U, S, Vh = torch.linalg.svd(sum(taus), full_matrices=False)
        return S.mean() * U @ Vh
    if name == "iso_cts":
        c = int(r * 0.8)
        c = r - round((r - c) / T) * T
        nt = (r - c) // T
        U, S, Vh = torch.linalg.svd(sum(taus), full_matrices=False)
        Uc, Sc, Vc = U[:, :c], S[:c], Vh[:c]
        Us, Ss, Vs = [], [], []
        for t in taus:
            u, s, vh = torch.linalg.svd(t - Uc @ (Uc.T @ t), full_matrices=False)
            Us.append(u[:, :nt]), Ss.append(s[:nt]), Vs.append(vh[:nt])
        s_bar = torch.cat(Ss + [Sc]).mean()
        return s_bar * _polar(torch.cat(Us + [Uc], 1)) @ _polar(torch.cat(Vs + [Vc], 0))
    if name == "mda":  # Algorithm 1 (docs/mda.md, "components" reading), the direct full-SVD way
        k = min(max(1, round(m / T)), r // T)
        Us, Ss, Vs = [], [], []
        for a in taus:
            U, S, Vh = torch.linalg.svd(a, full_matrices=False)
            Us.append(U[:, :k]), Ss.append(S[:k]), Vs.append(Vh[:k].T)
        Uo, Vo = _polar(torch.cat(Us, 1)), _polar(torch.cat(Vs, 1))
        s = torch.cat(Ss)
        K = s.numel()
        return (K / (K - 1)) ** 0.5 * (Uo * (s - s.mean())) @ Vo.T
    k = r // T
    Ucat = torch.zeros(m, r, dtype=dtype)
    Vcat = torch.zeros(r, n, dtype=dtype)
    Scat = torch.zeros(r, dtype=dtype)
    Ts = []
    for t, a in enumerate(taus):
        U, S, Vh = torch.linalg.svd(a, full_matrices=False)
        Ucat[:, t * k:(t + 1) * k] = U[:, :k]
        Vcat[t * k:(t + 1) * k] = Vh[:k]
        Scat[t * k:(t + 1) * k] = S[:k]
        if name == "dc_merge":
            Ts.append(U[:, :k] @ torch.diag(S[:k]) @ Vh[:k])
    Uo, Vo = _polar(Ucat), _polar(Vcat)
    if name == "tsv_m":
        return Uo @ torch.diag(Scat) @ Vo
    Ms = []
    for Tt in Ts:
        M = Uo.T @ Tt @ Vo.T
        cnt = max(1, int(0.001 * M.numel()))
        thr = torch.topk(M.abs().flatten(), cnt).values.min()
        Ms.append(M * (M.abs() >= thr))
    st = torch.stack(Ms)
    tot = st.sum(0)
    agree = torch.sign(st) == torch.sign(tot)
    A = (st * agree).sum(0) / agree.sum(0).clamp(min=1)
    A = torch.where(tot == 0, torch.zeros_like(A), A)
    mask = torch.zeros(r, r, dtype=dtype)
    for t in range(T):
        mask[t * k:(t + 1) * k, t * k:(t + 1) * k] = 1
    return Uo @ (A * mask) @ Vo


# -- one measured run (in a subprocess) ----------------------------------------------

class AnonPeak:
    """Peak anonymous resident memory (``RssAnon`` of /proc/self/status, sampled every
    ``interval`` s by a thread). Unlike ``ru_maxrss`` it leaves out file-backed pages,
    i.e. the page cache of the memory-mapped safetensors inputs, which the kernel can
    drop at any time: it is the memory the merge itself allocates."""

    def __init__(self, interval: float = 0.002):
        import threading
        self.interval, self.peak, self._stop = interval, self.now(), threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def now() -> int:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.now())


def child(args) -> None:
    torch.set_num_threads(args.threads)
    from mergelab.methods import build
    from mergelab.methods.base import MergeContext
    from mergelab.taskvectors import SafetensorsSource
    paths = json.loads(args.paths)
    src = SafetensorsSource(paths)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    base_anon = AnonPeak.now()
    t0 = time.perf_counter()
    with AnonPeak() as anon:
        if args.kind == "ours":
            out = build(args.method).merge(src, MergeContext(regime="full",
                                                             tasks=[str(i) for i in range(len(paths))],
                                                             device=torch.device(args.device)))
        else:
            dtype = torch.float64 if args.kind == "ref64" else torch.float32
            out = {k: ref_key(args.method, [t.to(args.device) for t in src.get(k)], dtype).float().cpu()
                   for k in src.keys()}
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in out.items()}, args.out)
    print(json.dumps({"seconds": dt, "peak_kb": peak, "base_kb": base_rss,
                      "anon_growth_kb": anon.peak - base_anon}))


def run_child(kind, method, paths, out, ns) -> dict:
    if ns.inprocess:  # smoke tests: no subprocess (peak RSS is then the whole process's)
        import contextlib
        import io
        buf = io.StringIO()
        sub = argparse.Namespace(kind=kind, method=method, paths=json.dumps([str(p) for p in paths]),
                                 out=str(out), device=ns.device, threads=ns.threads)
        with contextlib.redirect_stdout(buf):
            child(sub)
        return json.loads(buf.getvalue().strip().splitlines()[-1])
    cmd = [sys.executable, __file__, "--child", kind, "--method", method, "--paths", json.dumps([str(p) for p in paths]),
           "--out", str(out), "--device", ns.device, "--threads", str(ns.threads)]
    env = dict(os.environ)
    if ns.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = ns.omp_wait_policy
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{kind} {method} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def rel_err(a_path, b_path) -> float:
    from safetensors.torch import load_file
    a, b = load_file(str(a_path)), load_file(str(b_path))
    num = sum(float((a[k].double() - b[k].double()).pow(2).sum()) for k in b)
    den = sum(float(b[k].double().pow(2).sum()) for k in b)
    return (num / den) ** 0.5


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, nargs="+", default=[8, 14, 20])
    ap.add_argument("--methods", nargs="+", default=["tsv_m", "iso_cts", "dc_merge"], choices=METHODS)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--quick", action="store_true", help="2 transformer layers (smoke test)")
    ap.add_argument("--layers", type=int, default=None, help="number of transformer layers (default: all 12)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--inprocess", action="store_true", help="run the merges in this process (smoke test)")
    ap.add_argument("--f64", action="store_true", help="also run the plain algorithm in float64 (slow)")
    ap.add_argument("--no-f64", action="store_true", help="(default) skip the float64 exact reference")
    ap.add_argument("--no-ref-tasks", type=int, nargs="*", default=[],
                    help="task counts for which only ours runs (time and memory rows, no plain reference)")
    ap.add_argument("--omp-wait-policy", default="PASSIVE",
                    help="OMP_WAIT_POLICY of the measured subprocesses ('' = inherit)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--method", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--paths", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ns = ap.parse_args(argv)
    if ns.child:
        ns.kind = ns.child
        child(ns)
        return 0
    layers = ns.layers if ns.layers is not None else (2 if ns.quick else None)
    use_f64 = ns.f64 and not ns.no_f64
    shapes = vit_shapes(layers)
    n_mat = sum(len(s) == 2 for s in shapes.values())
    tv_mb = sum(torch.Size(s).numel() for s in shapes.values()) * 4 / 2**20
    print(f"# ViT-B-32 visual: {len(shapes)} keys ({n_mat} matrices), one task vector = {tv_mb:.1f} MiB; "
          f"device={ns.device}, threads={ns.threads}, OMP_WAIT_POLICY={ns.omp_wait_policy or 'inherited'}; "
          f"load average at start {os.getloadavg()}")
    print()
    print("| method | T | ours (s) | plain f32 (s) | speed-up | merge memory ours (MiB) | merge memory plain (MiB) "
          "| peak RSS ours (MiB) | peak RSS plain (MiB) "
          "| RSS before merge (MiB) | load avg (1 min) | ours vs exact f64 | plain f32 vs exact f64 | rel. err ours vs plain f32 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for T in ns.tasks:
            d = tmp / f"T{T}"
            d.mkdir()
            paths = write_tasks(shapes, T, ns.seed, d)
            for m in ns.methods:
                ours = run_child("ours", m, paths, d / f"{m}_ours.st", ns)
                if T in ns.no_ref_tasks:
                    load = os.getloadavg()[0]
                    print(f"| {m} | {T} | {ours['seconds']:.2f} | – | – | {ours['anon_growth_kb'] / 1024:.0f} | – "
                          f"| {ours['peak_kb'] / 1024:.0f} | – | {ours['base_kb'] / 1024:.0f} | {load:.1f} "
                          f"| – | – | – |", flush=True)
                    for p in d.glob(f"{m}_*.st"):
                        p.unlink()
                    continue
                ref = run_child("ref32", m, paths, d / f"{m}_ref32.st", ns)
                load = os.getloadavg()[0]
                err32 = rel_err(d / f"{m}_ours.st", d / f"{m}_ref32.st")
                err64 = ref32_vs64 = float("nan")
                if use_f64:
                    run_child("ref64", m, paths, d / f"{m}_ref64.st", ns)
                    err64 = rel_err(d / f"{m}_ours.st", d / f"{m}_ref64.st")
                    ref32_vs64 = rel_err(d / f"{m}_ref32.st", d / f"{m}_ref64.st")
                f = (lambda x: "–" if x != x else f"{x:.1e}")
                print(f"| {m} | {T} | {ours['seconds']:.2f} | {ref['seconds']:.2f} "
                      f"| {ref['seconds'] / ours['seconds']:.2f}× | {ours['anon_growth_kb'] / 1024:.0f} "
                      f"| {ref['anon_growth_kb'] / 1024:.0f} | {ours['peak_kb'] / 1024:.0f} "
                      f"| {ref['peak_kb'] / 1024:.0f} | {ours['base_kb'] / 1024:.0f} | {load:.1f} "
                      f"| {f(err64)} | {f(ref32_vs64)} | {err32:.1e} |", flush=True)
                for p in d.glob(f"{m}_*.st"):
                    p.unlink()
            for p in paths:
                p.unlink()
    print(f"# load average at end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
