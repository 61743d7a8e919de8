"""Paper-style tables (Markdown, LaTeX, CSV) and figures of one regime and suite."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .io import atomic_path, load_json, provenance, save_json  # noqa: E402

PRETTY = {
    "zeroshot": "Zero-shot", "individual": "Individual", "weight_averaging": "Weight averaging",
    "task_arithmetic": "Task arithmetic", "ties": "TIES", "dare_ta": "DARE (TA)",
    "dare_ties": "DARE (TIES)", "consensus": "Consensus TA", "tsv_m": "TSV-M", "iso_c": "Iso-C",
    "iso_cts": "Iso-CTS", "wudi": "WUDI", "knots": "KnOTS", "dc_merge": "DC-Merge",
    "mda": "MDA (TA)", "adamerging": "AdaMerging (layer)", "adamerging_task": "AdaMerging (task)",
    "mda_am": "MDA (AM)", "mda_am_norot": "MDA (AM, no rotation)",
}


def pretty(name: str) -> str:
    return PRETTY.get(name, name)


def build_table(spec: Mapping[str, Any], results: Sequence[str | Path], regime: str,
                suite: str) -> pd.DataFrame:
    """One row per method: per-task test accuracy (%), averages, normalized accuracy, NAI, α."""
    tasks: list[str] = list(spec["suites"][suite])
    zs: dict[str, float] = {}
    ind: dict[str, float] = {}
    merged: list[dict[str, Any]] = []
    for p in map(Path, results):
        d = load_json(p)
        if d.get("kind") == "zeroshot":
            zs.update(d["test"])
        elif d.get("kind") == "individual":
            ind.update(d["test"])
        else:
            merged.append(d)
    missing = [t for t in tasks if t not in zs or t not in ind]
    if missing:
        raise ValueError(f"report {regime}/{suite}: no zero-shot/individual result for {missing}")
    rows = []

    def row(name: str, acc: Mapping[str, float], alpha: float | None) -> dict[str, Any]:
        a = np.array([acc[t] for t in tasks])
        z = np.array([zs[t] for t in tasks])
        f = np.array([ind[t] for t in tasks])
        nai = np.where(np.abs(f - z) > 1e-9, (a - z) / np.where(np.abs(f - z) > 1e-9, f - z, 1), np.nan)
        r = {"method": name, **{t: 100 * acc[t] for t in tasks},
             "avg": 100 * a.mean(), "normalized": 100 * (a / f).mean(),
             "nai": 100 * np.nanmean(nai) if np.isfinite(nai).any() else np.nan,
             "alpha": alpha}
        return r

    rows.append(row("zeroshot", zs, 0.0))
    rows.append(row("individual", ind, None))
    order = list(spec.get("method_order", []))
    merged.sort(key=lambda d: (order.index(d["method"]) if d["method"] in order else len(order),
                               d["method"]))
    for d in merged:
        rows.append(row(d["method"], d["test"], d["alpha"]))
    return pd.DataFrame(rows)


def _fmt(df: pd.DataFrame, tasks: Sequence[str]) -> pd.DataFrame:
    out = pd.DataFrame()
    out["Method"] = [pretty(m) for m in df["method"]]
    for t in tasks:
        out[t] = df[t].map(lambda v: f"{v:.1f}")
    out["Avg."] = df["avg"].map(lambda v: f"{v:.1f}")
    out["Norm."] = df["normalized"].map(lambda v: f"{v:.1f}")
    out["NAI"] = df["nai"].map(lambda v: "–" if pd.isna(v) else f"{v:.1f}")
    out["α"] = df["alpha"].map(lambda v: "–" if v is None or pd.isna(v) else f"{v:.3g}")
    return out


def write_tables(df: pd.DataFrame, tasks: Sequence[str], stem: Path, caption: str) -> list[Path]:
    fmt = _fmt(df, tasks)
    paths = []
    md = stem.with_suffix(".md")
    with atomic_path(md) as tmp:
        lines = [f"**{caption}**", "", "| " + " | ".join(fmt.columns) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(fmt.columns) - 1)) + "|"]
        lines += ["| " + " | ".join(map(str, r)) + " |" for r in fmt.itertuples(index=False)]
        tmp.write_text("\n".join(lines) + "\n")
    paths.append(md)
    csv = stem.with_suffix(".csv")
    with atomic_path(csv) as tmp:
        df.to_csv(tmp, index=False, float_format="%.4f")
    paths.append(csv)
    tex = stem.with_suffix(".tex")
    with atomic_path(tex) as tmp:
        cols = "l" + "r" * (len(fmt.columns) - 1)
        esc = lambda s: str(s).replace("_", r"\_").replace("%", r"\%").replace("α", r"$\alpha$")  # noqa: E731
        body = [r"\begin{table}[t]", r"\centering", r"\small",
                rf"\caption{{{esc(caption)}}}", rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
                " & ".join(esc(c) for c in fmt.columns) + r" \\", r"\midrule"]
        for i, r in enumerate(fmt.itertuples(index=False)):
            body.append(" & ".join(esc(v) for v in r) + r" \\")
            if i == 1:
                body.append(r"\midrule")
        body += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        tmp.write_text("\n".join(body) + "\n")
    paths.append(tex)
    return paths


def accuracy_figure(df: pd.DataFrame, tasks: Sequence[str], stem: Path, title: str) -> None:
    """Left: per-method per-task test accuracy heatmap. Right: average normalized accuracy."""
    methods = [pretty(m) for m in df["method"]]
    acc = df[list(tasks)].to_numpy()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(4 + 0.75 * len(tasks) + 4, 1.2 + 0.42 * len(methods)),
                                 gridspec_kw={"width_ratios": [len(tasks) + 1.5, 4]})
    im = ax.imshow(acc, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(tasks)), tasks, rotation=35, ha="right")
    ax.set_yticks(range(len(methods)), methods)
    for i in range(acc.shape[0]):
        for j in range(acc.shape[1]):
            ax.text(j, i, f"{acc[i, j]:.0f}", ha="center", va="center", fontsize=8,
                    color="white" if acc[i, j] < 60 else "black")
    ax.set_title("Test accuracy per task (%)")
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02)
    norm = df["normalized"].to_numpy()
    colors = ["#bbbbbb" if m in ("zeroshot", "individual") else "#3b75af" for m in df["method"]]
    y = np.arange(len(methods))
    bx.barh(y, norm, color=colors)
    bx.set_yticks(y, [""] * len(methods))
    bx.invert_yaxis()
    bx.set_xlim(0, max(105, float(np.nanmax(norm)) + 5))
    bx.axvline(100, color="k", lw=0.8, ls="--")
    for yi, v in zip(y, norm):
        bx.text(v + 1, yi, f"{v:.1f}", va="center", fontsize=8)
    bx.set_xlabel("Average normalized accuracy (%)")
    bx.set_title("Normalized accuracy")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    for ext in (".png", ".pdf"):
        with atomic_path(stem.with_suffix(ext)) as tmp:
            fig.savefig(tmp, dpi=150, format=ext[1:])
    plt.close(fig)


def make_report(spec: Mapping[str, Any], results: Sequence[str | Path], out_dir: str | Path,
                regime: str, suite: str) -> pd.DataFrame:
    out_dir = Path(out_dir)
    tasks = list(spec["suites"][suite])
    df = build_table(spec, results, regime, suite)
    name = spec.get("name", "mergelab")
    caption = (f"{name}: {regime} fine-tuning, suite '{suite}' ({len(tasks)} tasks), "
               "test accuracy (%), α chosen on validation")
    write_tables(df, tasks, out_dir / "tables" / f"{regime}_{suite}", caption)
    accuracy_figure(df, tasks, out_dir / "figures" / f"accuracy_{regime}_{suite}",
                    f"{name} — {regime} fine-tuning, {len(tasks)} tasks ({suite})")
    save_json({"regime": regime, "suite": suite, "rows": df.to_dict(orient="records"),
               "sources": [str(p) for p in results], "provenance": provenance(dict(spec))},
              out_dir / "tables" / f"{regime}_{suite}.json")
    return df
