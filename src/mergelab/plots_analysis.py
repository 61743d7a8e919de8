"""Analysis figures (PNG + PDF, matplotlib Agg).

Entry functions take plain inputs (paths of task-vector / merged-vector
safetensors, lists of records) and write to the given output paths atomically:

* ``analysis_spectrum``  – normalised singular-value spectrum per task, averaged
  over layers (DC-Merge Figure 1);
* ``analysis_similarity`` – CosSim and DirSim heatmaps, task×task and task×merged;
* ``analysis_etf``       – task-level ΔETF of every method per layer (+ JSON, with MDA's
  component-level ΔETF before / after its alignment);
* ``mda_sign_spread_report`` – MDA's τm under random SVD sign conventions (JSON);
* ``analysis_sensitivity`` – a hyperparameter sweep's eval JSONs as records, figure and JSON
  (``plot_sensitivity``: average normalised accuracy vs the hyperparameter, e.g. DC-Merge
  mask size 8r … r/8, MDA k).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from . import analysis  # noqa: E402
from .io import atomic_path, load_json, save_figure, save_json  # noqa: E402


def _write_json(obj: Any, path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))


def _short_key(key: str) -> str:
    """'visual.transformer.resblocks.3.mlp.c_fc.weight' -> 'L3 mlp.c_fc'."""
    m = re.search(r"(?:resblocks|layers)\.(\d+)\.(.*?)(?:\.weight|_weight)?$", key)
    return f"L{m.group(1)} {m.group(2)}" if m else key


# ------------------------------------------------------------------ (a) spectrum

def plot_spectrum(spectra: Sequence[Sequence[float]], task_names: Sequence[str], out_png, out_pdf,
                  energy: Sequence[float] | None = None, norm: str = "max") -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    cmap = plt.get_cmap("tab10" if len(task_names) <= 10 else "tab20")
    for i, (s, name) in enumerate(zip(spectra, task_names)):
        label = name if energy is None else f"{name} (top-1% energy {100 * energy[i]:.0f}%)"
        ax.plot(range(1, len(s) + 1), s, label=label, color=cmap(i % cmap.N), lw=1.4)
    ax.set_xscale("log")
    ax.set_xlabel("singular value index (log scale)")
    ax.set_ylabel("σ_i / σ_1" if norm == "max" else "σ_i / Σσ")
    ax.set_title("Normalized singular-value spectrum of task vectors (mean over layers)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2 if len(task_names) > 6 else 1)
    save_figure(fig, out_png, out_pdf)


def analysis_spectrum(taskvector_paths, task_names, out_png, out_pdf, out_json=None, norm: str = "max") -> dict:
    res = analysis.spectrum_per_task(taskvector_paths, norm=norm)
    plot_spectrum(res["spectra"], task_names, out_png, out_pdf, energy=res["energy_top1pct"], norm=norm)
    if out_json is not None:
        _write_json({"tasks": list(task_names), **res}, out_json)
    return res


# ------------------------------------------------------------------ (b) similarity

def _heatmap(ax, mat, rows, cols, title, fig):
    import numpy as np
    arr = np.asarray(mat, dtype=float)
    vmax = max(1e-12, float(np.abs(arr).max()))
    im = ax.imshow(arr, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_title(title, fontsize=10)
    if arr.size <= 400:
        for i in range(arr.shape[0]):
            for j in range(arr.shape[1]):
                ax.text(j, i, f"{arr[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if abs(arr[i, j]) > 0.6 * vmax else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)


def plot_similarity(sims: Mapping[str, Any], task_names, merged_names, out_png, out_pdf) -> None:
    has_merged = len(merged_names) > 0
    nrows = 2 if has_merged else 1
    t = len(task_names)
    fig, axes = plt.subplots(nrows, 2, figsize=(11, (4.5 if t <= 10 else 7) * nrows), squeeze=False)
    _heatmap(axes[0][0], sims["cos_tt"], task_names, task_names, "CosSim between task vectors", fig)
    _heatmap(axes[0][1], sims["dir_tt"], task_names, task_names, "DirSim between task vectors", fig)
    if has_merged:
        _heatmap(axes[1][0], sims["cos_tm"], task_names, merged_names, "CosSim: task vector vs merged", fig)
        _heatmap(axes[1][1], sims["dir_tm"], task_names, merged_names, "DirSim: task vector vs merged", fig)
        for ax in axes[1]:
            ax.set_xlabel("merged vector")
    for row in axes:
        row[0].set_ylabel("task vector")
    fig.suptitle("Similarity of task vectors (mean over layers)")
    fig.tight_layout()
    save_figure(fig, out_png, out_pdf)


def analysis_similarity(taskvector_paths, task_names, merged_paths, merged_names, out_png, out_pdf,
                        out_json=None, top_n: int | None = None) -> dict:
    sims = analysis.similarity_matrices(taskvector_paths, merged_paths, top_n=top_n)
    plot_similarity(sims, list(task_names), list(merged_names), out_png, out_pdf)
    if out_json is not None:
        _write_json({"tasks": list(task_names), "merged": list(merged_names), **sims}, out_json)
    return sims


# ------------------------------------------------------------------ (c) ΔETF

def plot_etf(per_method: Mapping[str, Sequence[Mapping[str, Any]]], n_tasks: int, out_png, out_pdf,
             title_suffix: str = "") -> None:
    """Task-level ΔETF per layer key, one line per method, with the value of T pairwise
    orthogonal directions (1/sqrt(T)) as a reference."""
    keys = [r["key"] for r in next(iter(per_method.values()), [])]
    fig, ax = plt.subplots(figsize=(max(6.4, 0.16 * len(keys) + 3), 4.4))
    x = list(range(len(keys)))
    markers = "os^vDP*Xh<>"
    for i, (name, rows) in enumerate(per_method.items()):
        vals = [r["delta_etf"] for r in rows]
        mean = sum(vals) / max(1, len(vals))
        ax.plot(x, vals, marker=markers[i % len(markers)], ms=3, lw=1.2, label=f"{name} (mean {mean:.3f})")
    ax.axhline(analysis.orthogonal_delta_etf(n_tasks), color="grey", ls=":", lw=1,
               label=f"pairwise orthogonal (1/√T = {analysis.orthogonal_delta_etf(n_tasks):.3f})")
    ax.set_xticks(x, [_short_key(k) for k in keys], rotation=90, fontsize=6)
    ax.set_xlabel("layer (matrix key)")
    ax.set_ylabel("task-level ΔETF = ‖Ĝ − G_ETF‖_F / ‖G_ETF‖_F")
    ax.set_ylim(bottom=0)
    ax.set_title("Deviation of the per-task contributions from a simplex ETF" + title_suffix, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    save_figure(fig, out_png, out_pdf)


def _method_summary(rows: Sequence[Mapping[str, Any]]) -> dict:
    n = max(1, len(rows))
    return {"mean_delta_etf": sum(r["delta_etf"] for r in rows) / n,
            "mean_cos": sum(r["mean_cos"] for r in rows) / n,
            "max_euler_residual": max((r["euler_residual"] for r in rows), default=0.0)}


def analysis_etf(taskvector_paths, task_names, methods: Sequence[Mapping[str, Any]], regime: str,
                 out_png, out_pdf, out_json, k_fraction: float | None = None,
                 lora_rank: int | None = None, seed: int = 0) -> dict:
    """Task-level ΔETF of every method instance in ``methods`` ([{name, method, params}], in
    the figure's order), per layer key (figure + JSON), and MDA's component-level ΔETF before / after its own
    alignment (JSON, ``mda_components``)."""
    from . import methods as M
    if not methods:
        raise ValueError("analysis etf: no methods given (config analysis.similarity_methods)")
    per_method, summary = {}, {}
    for spec in methods:
        name = spec["name"]
        method = M.build(spec["method"], **spec.get("params", {}))
        rows = analysis.method_task_etf(taskvector_paths, method, regime, task_names, seed=seed,
                                        lora_rank=lora_rank)
        per_method[name] = rows
        summary[name] = {"method": spec["method"], "params": method.params, **_method_summary(rows)}
    plot_etf(per_method, len(task_names), out_png, out_pdf,
             title_suffix=f" ({regime}, T = {len(task_names)})")
    mda_rows = analysis.etf_deviation_per_layer(taskvector_paths, k_fraction, lora_rank)
    result = {"tasks": list(task_names), "regime": regime, "euler_step": analysis.EULER_STEP,
              "orthogonal_reference": analysis.orthogonal_delta_etf(len(task_names)),
              "method_order": list(per_method), "methods": summary, "layers": per_method,
              "mda_components": {"k_fraction": k_fraction, "layers": mda_rows}}
    _write_json(result, out_json)
    return result


def mda_sign_spread_report(taskvector_paths, out_json, conventions: int = 8,
                           k_fraction: float | None = None, lora_rank: int | None = None,
                           regime: str = "full", exact: bool = False) -> dict:
    """``analysis.mda_sign_spread`` written to JSON; returns it."""
    res = analysis.mda_sign_spread(taskvector_paths, conventions, k_fraction=k_fraction,
                                   lora_rank=lora_rank, regime=regime, exact=exact)
    _write_json(res, out_json)
    return res


# ------------------------------------------------------------------ (d) sensitivity

def plot_sensitivity(records: Sequence[Mapping[str, Any]], xlabel: str, out_png, out_pdf,
                     ylabel: str = "average normalized accuracy", title: str | None = None) -> None:
    """Line plot of ``y`` against ``x``; one line per ``label`` (optional).

    Each record: ``{"x": value, "y": accuracy, "label": series (optional),
    "xtick": tick text (optional, e.g. "r/8")}``. Numeric x spanning ≥ 8× is
    drawn on a log2 axis; non-numeric x is categorical in first-seen order.
    """
    if not records:
        raise ValueError("plot_sensitivity: no records")
    numeric = all(isinstance(r["x"], (int, float)) and not isinstance(r["x"], bool) for r in records)
    series: dict[str, list] = {}
    for r in records:
        series.setdefault(str(r.get("label", "")), []).append(r)
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    ticks: dict[Any, str] = {}
    cats: list[str] = []
    if not numeric:
        for r in records:
            if str(r["x"]) not in cats:
                cats.append(str(r["x"]))
    for label, rs in series.items():
        if numeric:
            rs = sorted(rs, key=lambda r: r["x"])
            xs = [float(r["x"]) for r in rs]
        else:
            rs = sorted(rs, key=lambda r: cats.index(str(r["x"])))
            xs = [cats.index(str(r["x"])) for r in rs]
        ys = [float(r["y"]) for r in rs]
        ax.plot(xs, ys, "o-", label=label or None)
        for r, xv in zip(rs, xs):
            ticks[xv] = str(r.get("xtick", r["x"]))
    if numeric:
        xs_all = [float(r["x"]) for r in records]
        if min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 8:
            ax.set_xscale("log", base=2)
            ax.minorticks_off()
    ax.set_xticks(list(ticks), list(ticks.values()))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"Sensitivity to {xlabel}")
    ax.grid(alpha=0.3)
    if any(series.keys() - {""}):
        ax.legend(fontsize=8)
    save_figure(fig, out_png, out_pdf)


def sensitivity_records(results: Sequence[str | Path], members: Mapping[str, Mapping[str, Any]]
                        ) -> list[dict[str, Any]]:
    """One record per eval JSON of a sweep: x = the swept value (``members[method]``, from
    the sweep spec), y = average normalized test accuracy (%), one series per regime."""
    records = []
    for path in results:
        d = load_json(path)
        sw = members[d["method"]]
        norm = d["test_normalized"]
        records.append({"x": sw["value"] if sw["value"] is not None else "default",
                        "xtick": sw["label"] or str(sw["value"]),
                        "y": 100 * sum(norm.values()) / len(norm), "label": d["regime"],
                        "alpha": d["alpha"], "method": d["method"]})
    return records


def analysis_sensitivity(results: Sequence[str | Path], spec: Mapping[str, Any], out_png, out_pdf,
                         out_json) -> list[dict[str, Any]]:
    """Figure and JSON of one hyperparameter sweep (``spec``: sweep, xlabel, members)."""
    records = sensitivity_records(results, spec["members"])
    plot_sensitivity(records, spec["xlabel"] or spec["sweep"], out_png, out_pdf,
                     ylabel="average normalized test accuracy (%)",
                     title=f"Sensitivity: {spec['sweep']}")
    save_json({"sweep": spec["sweep"], "records": records}, out_json)
    return records


__all__ = ["analysis_spectrum", "analysis_similarity", "analysis_etf", "mda_sign_spread_report",
           "analysis_sensitivity",
           "sensitivity_records", "plot_sensitivity",
           "plot_spectrum", "plot_similarity", "plot_etf"]
