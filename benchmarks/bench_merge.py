"""Merge benchmark: the SVD-family methods, exact, against the plain public-code way.

Builds the open_clip ViT-B-32 image-encoder shapes (2-D ``visual.*`` keys plus a few
vector keys; ``--layers`` residual blocks), synthetic task vectors with one of several
spectra, writes them as safetensors and merges through ``SafetensorsSource`` +
``method.merge``. Spectra (``--spectra``; random orthogonal factors, seeded):

* ``inv``: σ_i ∝ i⁻¹ (a 1 % gap at the cut k = r/T);
* ``noise_floor``: a rank-32 signal with σ log-spaced 1e-2 … 1e-4 plus i.i.d. Gaussian
  noise of sd 1e-5 (issue 14's input: a flat noise floor at the cut);
* ``near_degenerate``: σ_i ∝ i⁻¹ with σ_{k+1} = σ_k (1 − 1e-4) at k = r // T.

Per method it times, each in a fresh subprocess with the same threads:

* ``ours``: the method alone (it computes its own decomposition);
* ``plain f32``: the public-code way written inside this file (``ref_key``): a full
  float32 ``torch.linalg.svd`` per task per matrix and SVD-based polar factors;
* ``exact f64``: the same plain algorithm in float64: the error reference.

and the suite: ``decompose`` once (``mergelab.basis``) plus every method reading it
(TSV-M, DC-Merge, MDA; Iso-C and Iso-CTS compute their own), against the plain
implementations run one by one. Errors are relative Frobenius errors over all keys.

On a CPU shared with other jobs, OpenMP threads that spin at barriers make LAPACK calls
10-100x slower, so the subprocesses run with ``OMP_WAIT_POLICY=PASSIVE``
(``--omp-wait-policy``). "merge memory" is the growth of the subprocess's anonymous
resident memory during the merge (peak ``RssAnon`` sampled every 2 ms minus the value
before): what the merge allocates, without the page cache of the memory-mapped inputs.

    python benchmarks/bench_merge.py --layers 2                # T = 8, three spectra
    python benchmarks/bench_merge.py --quick --tasks 2 --methods tsv_m --inprocess
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
SHARED = {"tsv_m", "dc_merge", "mda"}      # read the suite's decomposition
SPECTRA = ["inv", "noise_floor", "near_degenerate"]


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


def synth(shape, g: torch.Generator, spectrum: str = "inv", T: int = 8) -> torch.Tensor:
    if len(shape) != 2:
        return torch.randn(shape, generator=g) * 1e-3
    m, n = shape
    r = min(m, n)
    U, _ = torch.linalg.qr(torch.randn(m, r, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, r, generator=g, dtype=torch.float64))
    i = torch.arange(1, r + 1, dtype=torch.float64)
    s = 1e-2 / i
    noise = 0.0
    if spectrum == "noise_floor":
        s = torch.zeros(r, dtype=torch.float64)
        s[:min(32, r)] = torch.logspace(-2, -4, 32, dtype=torch.float64)[:r]
        noise = 1e-5
    elif spectrum == "near_degenerate" and r // T < r:
        k = max(1, r // T)
        s[k] = s[k - 1] * (1 - 1e-4)
    elif spectrum != "inv":
        raise ValueError(f"unknown spectrum {spectrum!r}")
    tau = (U * s) @ V.T
    if noise:
        tau = tau + noise * torch.randn(m, n, generator=g, dtype=torch.float64)
    return tau.float()


def write_tasks(shapes, T: int, seed: int, folder: Path, spectrum: str) -> list[Path]:
    from safetensors.torch import save_file
    paths = []
    for t in range(T):
        g = torch.Generator().manual_seed(seed * 1000 + t)
        p = folder / f"task{t}.safetensors"
        save_file({k: synth(s, g, spectrum, T).contiguous() for k, s in shapes.items()}, str(p))
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
    from mergelab import basis as B
    from mergelab.methods import build
    from mergelab.methods.base import MergeContext
    from mergelab.taskvectors import SafetensorsSource
    paths = json.loads(args.paths)
    tasks = [str(i) for i in range(len(paths))]
    src = SafetensorsSource(paths)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    base_anon = AnonPeak.now()
    t0 = time.perf_counter()
    extra = {}
    with AnonPeak() as anon:
        if args.kind == "decompose":
            info = B.decompose(paths, tasks, "full", "bench", args.out, args.out + ".json", device=args.device)
            extra["routes"] = info["routes"]
            out = None
        elif args.kind in ("ours", "shared"):
            ctx = MergeContext(regime="full", tasks=tasks, device=torch.device(args.device))
            if args.kind == "shared":
                ctx.basis = B.BasisSource(args.basis, tasks, "full")
            out = build(args.method).merge(src, ctx)
        else:
            dtype = torch.float64 if args.kind == "ref64" else torch.float32
            out = {}
            for k in src.keys():
                taus = [t.to(args.device, dtype) for t in src.get(k)]
                with cached_task_svds(taus, enabled=args.kind == "ref64"):
                    for m in args.method.split(","):
                        out[(m, k)] = ref_key(m, taus, dtype).float().cpu()
            # ref64 holds every method's reference (``split_refs``), ref32 one method's
            out = {(f"{m}::{k}" if args.kind == "ref64" else k): v for (m, k), v in out.items()}
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if out is not None:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in out.items()}, args.out)
    print(json.dumps({"seconds": dt, "peak_kb": peak, "base_kb": base_rss,
                      "anon_growth_kb": anon.peak - base_anon, **extra}))


class cached_task_svds:
    """While active, ``torch.linalg.svd`` of one of ``taus`` (the same tensor object) is
    computed once: the float64 references of TSV-M, DC-Merge and MDA all start from the
    same per-task SVDs (the error reference only; timed runs never use it)."""

    def __init__(self, taus, enabled: bool):
        self.ids = {id(t) for t in taus} if enabled else set()
        self.cache: dict = {}

    def __enter__(self):
        self.real = torch.linalg.svd

        def svd(X, full_matrices=True, **kw):
            if id(X) in self.ids and not kw:
                key = (id(X), full_matrices)
                if key not in self.cache:
                    self.cache[key] = self.real(X, full_matrices=full_matrices)
                return self.cache[key]
            return self.real(X, full_matrices=full_matrices, **kw)
        torch.linalg.svd = svd
        return self

    def __exit__(self, *exc):
        torch.linalg.svd = self.real


def run_child(kind, method, paths, out, ns, basis=None) -> dict:
    if ns.inprocess:  # smoke tests: no subprocess (peak RSS is then the whole process's)
        import contextlib
        import io
        buf = io.StringIO()
        sub = argparse.Namespace(kind=kind, method=method, paths=json.dumps([str(p) for p in paths]),
                                 out=str(out), device=ns.device, threads=ns.threads, basis=str(basis))
        with contextlib.redirect_stdout(buf):
            child(sub)
        return json.loads(buf.getvalue().strip().splitlines()[-1])
    cmd = [sys.executable, __file__, "--child", kind, "--method", method or "-",
           "--paths", json.dumps([str(p) for p in paths]), "--out", str(out), "--device", ns.device,
           "--threads", str(ns.threads), "--basis", str(basis)]
    env = dict(os.environ)
    if ns.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = ns.omp_wait_policy
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{kind} {method} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def best_of(kind, method, paths, out, ns, basis=None) -> dict:
    """``run_child`` ``--repeat`` times; the run with the fewest seconds (on a shared machine
    the minimum is the least disturbed by other jobs)."""
    runs = [run_child(kind, method, paths, out, ns, basis) for _ in range(max(1, ns.repeat))]
    return min(runs, key=lambda r: r["seconds"])


def rel_err(a_path, b_path) -> float:
    from safetensors.torch import load_file
    a, b = load_file(str(a_path)), load_file(str(b_path))
    num = sum(float((a[k].double() - b[k].double()).pow(2).sum()) for k in b)
    den = sum(float(b[k].double().pow(2).sum()) for k in b)
    return (num / den) ** 0.5


def split_refs(path: Path, d: Path) -> None:
    """all_ref64.st (``<method>::<key>``) -> one ``<method>_ref64.st`` per method."""
    from safetensors.torch import load_file, save_file
    allr = load_file(str(path))
    for m in {n.split("::")[0] for n in allr}:
        save_file({n.split("::", 1)[1]: v for n, v in allr.items() if n.startswith(m + "::")},
                  str(d / f"{m}_ref64.st"))
    path.unlink()


def fmt_err(x: float) -> str:
    return "–" if x != x else f"{x:.1e}"


def mib(kb: float) -> str:
    return f"{kb / 1024:.0f}"


def run_case(spectrum: str, T: int, shapes, ns, d: Path, with_plain: bool) -> dict:
    """Every method of one (spectrum, T): rows of the method table and the suite totals."""
    paths = write_tasks(shapes, T, ns.seed, d, spectrum)
    rows, suite = [], {"ours": 0.0, "plain": 0.0}
    dec = best_of("decompose", None, paths, d / "basis.st", ns)
    suite["decompose"] = dec["seconds"]
    suite["ours"] += dec["seconds"]
    fallback = sum(v.get("routes", {}).get("svd", 0) for v in dec["routes"].values())
    suite["fallback"] = f"{fallback}/{sum(sum(v.get('routes', {}).values()) for v in dec['routes'].values())}"
    if ns.f64:   # every method's float64 reference in one process (shared task SVDs)
        run_child("ref64", ",".join(ns.methods), paths, d / "all_ref64.st", ns)
        split_refs(d / "all_ref64.st", d)
    for m in ns.methods:
        ours = best_of("ours", m, paths, d / f"{m}_ours.st", ns)
        ref64 = ns.f64
        err = rel_err(d / f"{m}_ours.st", d / f"{m}_ref64.st") if ref64 else float("nan")
        row = {"method": m, "T": T, "spectrum": spectrum, "ours": ours, "err": err,
               "load": os.getloadavg()[0]}
        if m in SHARED:
            sh = best_of("shared", m, paths, d / f"{m}_shared.st", ns, basis=d / "basis.st")
            row["shared_err"] = rel_err(d / f"{m}_shared.st", d / f"{m}_ours.st")
            suite["ours"] += sh["seconds"]
            row["shared"] = sh
        else:
            suite["ours"] += ours["seconds"]
        if with_plain:
            plain = best_of("ref32", m, paths, d / f"{m}_ref32.st", ns)
            row["plain"] = plain
            row["plain_err"] = rel_err(d / f"{m}_ref32.st", d / f"{m}_ref64.st") if ref64 else float("nan")
            suite["plain"] += plain["seconds"]
        print_row(row)
        rows.append(row)
        for p in d.glob(f"{m}_*.st"):
            p.unlink()
    for p in list(paths) + list(d.glob("basis.st*")):
        p.unlink()
    return {"rows": rows, "suite": suite}


def print_row(row) -> None:
    o, p, sh = row["ours"], row.get("plain"), row.get("shared")
    cells = [row["spectrum"], row["method"], str(row["T"]), f"{o['seconds']:.2f}",
             f"{sh['seconds']:.2f}" if sh else "–",
             f"{p['seconds']:.2f}" if p else "–",
             f"{p['seconds'] / o['seconds']:.2f}×" if p else "–",
             mib(o["anon_growth_kb"]), mib(p["anon_growth_kb"]) if p else "–", mib(o["peak_kb"]),
             fmt_err(row["err"]), fmt_err(row.get("plain_err", float("nan"))),
             fmt_err(row.get("shared_err", float("nan"))), f"{row['load']:.1f}"]
    print("| " + " | ".join(cells) + " |", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, nargs="+", default=[8])
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    ap.add_argument("--spectra", nargs="+", default=SPECTRA, choices=SPECTRA)
    ap.add_argument("--plain-spectra", nargs="*", default=None, choices=SPECTRA,
                    help="spectra on which the plain float32 code is timed too (default: the first)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--quick", action="store_true", help="1 transformer layer (smoke test)")
    ap.add_argument("--layers", type=int, default=None, help="number of transformer layers (default: all 12)")
    ap.add_argument("--only", nargs="+", default=None,
                    help="keep only the keys containing one of these strings (smoke tests)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1,
                    help="time every run this many times and keep the fastest (shared machines)")
    ap.add_argument("--inprocess", action="store_true", help="run the merges in this process (smoke test)")
    ap.add_argument("--no-f64", dest="f64", action="store_false",
                    help="skip the float64 exact reference (no error columns)")
    ap.add_argument("--omp-wait-policy", default="PASSIVE",
                    help="OMP_WAIT_POLICY of the measured subprocesses ('' = inherit)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--method", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--paths", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--basis", default=None, help=argparse.SUPPRESS)
    ns = ap.parse_args(argv)
    if ns.child:
        ns.kind = ns.child
        child(ns)
        return 0
    layers = ns.layers if ns.layers is not None else (1 if ns.quick else None)
    plain_spectra = ns.spectra[:1] if ns.plain_spectra is None else ns.plain_spectra
    shapes = vit_shapes(layers)
    if ns.only:
        shapes = {k: v for k, v in shapes.items() if any(o in k for o in ns.only)}
    n_mat = sum(len(s) == 2 for s in shapes.values())
    tv_mb = sum(torch.Size(s).numel() for s in shapes.values()) * 4 / 2**20
    print(f"# ViT-B-32 visual, {layers if layers is not None else 12} blocks: {len(shapes)} keys ({n_mat} matrices), "
          f"one task vector = {tv_mb:.1f} MiB; device={ns.device}, threads={ns.threads}, "
          f"OMP_WAIT_POLICY={ns.omp_wait_policy or 'inherited'}; load average at start {os.getloadavg()}")
    print()
    print("| spectrum | method | T | ours alone (s) | ours from the shared decomposition (s) | plain f32 (s) "
          "| plain / ours alone | merge memory ours (MiB) | merge memory plain (MiB) | peak RSS ours (MiB) "
          "| ours vs exact f64 | plain f32 vs exact f64 | shared vs alone | load avg (1 min) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    suites = []
    with tempfile.TemporaryDirectory() as tmp:
        for T in ns.tasks:
            for spectrum in ns.spectra:
                d = Path(tmp) / f"{spectrum}_T{T}"
                d.mkdir()
                res = run_case(spectrum, T, shapes, ns, d, spectrum in plain_spectra)
                suites.append((spectrum, T, res["suite"]))
    print()
    print("| spectrum | T | decompose (s) | tasks on the SVD fallback | suite ours: decompose + all methods (s) "
          "| suite plain: methods one by one (s) | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for spectrum, T, s in suites:
        plain = f"{s['plain']:.2f} | {s['plain'] / s['ours']:.2f}×" if s["plain"] else "– | –"
        print(f"| {spectrum} | {T} | {s['decompose']:.2f} | {s['fallback']} | {s['ours']:.2f} | {plain} |")
    print(f"# load average at end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
