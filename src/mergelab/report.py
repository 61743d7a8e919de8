"""Paper-style tables (Markdown, LaTeX, CSV, JSON) and figures of one regime and suite,
computed from the evaluations' per-sample predictions, with paired bootstrap intervals,
paired differences and (several seeds) the spread across seeds (docs/uncertainty.md)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .io import (ArtifactError, atomic_path, figure_paths, load_json, provenance, save_figure,  # noqa: E402
                 save_json)
from .predictions import load_predictions, predictions_path  # noqa: E402
from .uncertainty import METRICS, REFERENCE_ROWS, Bootstrap, summarize, table_statistics  # noqa: E402

#: the reference rows' names; a merged row is named by its method (``MergeMethod.label``)
REFERENCE_LABELS = {"zeroshot": "Zero-shot", "individual": "Individual"}


def pretty(name: str, labels: Mapping[str, str] | None = None) -> str:
    """A row's display name: ``labels[name]`` (``instance_labels``), a reference row's, the
    display name of a method instance named like its registry method, else ``name``."""
    from . import methods as M
    if labels and name in labels:
        return labels[name]
    if name in REFERENCE_LABELS:
        return REFERENCE_LABELS[name]
    return M.get_method(name).label() if name in M.REGISTRY else name


def instance_labels(results: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Method instance -> display name, from the registry method and parameters each result
    JSON records under ``merge``; an instance whose name another instance shares gets
    ``[instance]`` appended, so rows stay distinct."""
    from . import methods as M
    labels = {}
    for inst, d in results.items():
        merge = d.get("merge") or {}
        method = merge.get("registry_method")
        labels[inst] = (M.get_method(method).label(merge.get("params")) if method in M.REGISTRY
                        else pretty(inst))
    taken = list(labels.values())
    return {inst: f"{lab} [{inst}]" if taken.count(lab) > 1 else lab for inst, lab in labels.items()}


METRIC_LABEL = {"avg": "Avg.", "normalized": "Norm.", "nai": "NAI"}


def _seed_of(d: Mapping[str, Any], path: Path) -> int:
    seed = (d.get("provenance") or {}).get("seed")
    if seed is None:
        raise ArtifactError(f"{path}: no provenance.seed (the seed the evaluation ran with)")
    return int(seed)


def _check_round_trip(d: Mapping[str, Any], preds: Mapping[str, Any], path: Path) -> None:
    """The predictions file must reproduce the metrics JSON's test accuracies exactly."""
    for task, acc in d["test"].items():
        p = preds.get("test", {}).get(task)
        if p is None:
            raise ArtifactError(f"{predictions_path(path)}: no test predictions of task '{task}'")
        if p.accuracy != acc:
            raise ArtifactError(f"{predictions_path(path)}: test accuracy of task '{task}' is "
                                f"{p.accuracy!r}, {path} says {acc!r} (stale predictions? rerun it)")


def load_results(spec: Mapping[str, Any], results: Sequence[str | Path], suite: str) -> dict[str, Any]:
    """Rows (zero-shot, individual, merged methods in the config's order), seeds and, per
    task, the correctness of every (seed, row) on the test images: bool [S, R, n]."""
    tasks = list(spec["suites"][suite])
    zs, ind, merged = {}, {}, {}  # zeroshot: task -> preds; individual: (seed, task); merged: method -> seed
    for p in map(Path, results):
        d = load_json(p)
        preds = load_predictions(predictions_path(p))
        _check_round_trip(d, preds, p)
        test = {t: (preds["test"][t], p) for t in d["test"]}
        if d.get("kind") == "zeroshot":
            zs.update(test)
        elif d.get("kind") == "individual":
            ind.update({(_seed_of(d, p), t): v for t, v in test.items()})
        else:
            merged.setdefault(d["method"], {})[_seed_of(d, p)] = (d, test)
    seeds = list(spec.get("seeds") or sorted({s for s, _ in ind}))
    missing = [t for t in tasks if t not in zs] + [f"{t} (seed {s})" for s in seeds for t in tasks
                                                   if (s, t) not in ind]
    if missing:
        raise ArtifactError(f"report suite '{suite}': no zero-shot/individual result for {missing}")
    order = list(spec.get("method_order", []))
    methods = sorted(merged, key=lambda m: (order.index(m) if m in order else len(order), m))
    for m in methods:
        lacking = [s for s in seeds if s not in merged[m]]
        if lacking:
            raise ArtifactError(f"report suite '{suite}': method '{m}' has no result for seed(s) {lacking}")
    rows = list(REFERENCE_ROWS) + methods
    correct = {}
    for t in tasks:
        ref, ref_path = zs[t]
        grid = []
        for s in seeds:
            cells = [zs[t], ind[(s, t)]] + [merged[m][s][1].get(t, (None, merged[m][s][0]))
                                           for m in methods]
            row_correct = []
            for p, path in cells:
                if p is None:
                    raise ArtifactError(f"report suite '{suite}': no test result of task '{t}' in a "
                                        "merged evaluation")
                if not (np.array_equal(p.index, ref.index) and np.array_equal(p.label, ref.label)):
                    raise ArtifactError(f"{predictions_path(path)}: task '{t}' was scored on other "
                                        f"test images than {predictions_path(ref_path)}")
                row_correct.append(p.correct)
            grid.append(row_correct)
        correct[t] = np.array(grid, dtype=bool)
    alphas = {"zeroshot": [0.0] * len(seeds), "individual": [None] * len(seeds),
              **{m: [merged[m][s][0]["alpha"] for s in seeds] for m in methods}}
    labels = instance_labels({m: merged[m][seeds[0]][0] for m in methods})
    return {"tasks": tasks, "rows": rows, "seeds": seeds, "correct": correct, "alphas": alphas,
            "labels": labels}


def build_table(spec: Mapping[str, Any], results: Sequence[str | Path], regime: str,
                suite: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One row per method: per-task test accuracy (%, mean over seeds), the averages with
    their bootstrap intervals and seed spread, paired differences, α; plus the summary
    (best row, ranks per seed, Kendall τ)."""
    loaded = load_results(spec, results, suite)
    boot = Bootstrap.from_config(spec.get("bootstrap"))
    st = table_statistics(loaded["correct"], loaded["rows"], loaded["seeds"], boot)
    summary = summarize(st, spec.get("compare_on", "normalized"), spec.get("reference", "task_arithmetic"))
    summary["labels"] = loaded["labels"]
    recs = []
    for i, rec in enumerate(summary["rows"]):
        alphas = loaded["alphas"][rec["method"]]
        known = [a for a in alphas if a is not None]
        recs.append({"method": rec["method"],
                     **{t: 100 * float(st.task_point[k, :, i].mean()) for k, t in enumerate(st.tasks)},
                     **{k: v for k, v in rec.items() if k != "method"},
                     "alpha": known[0] if known and len(set(known)) == 1 else np.nan,
                     "alpha_per_seed": alphas if known else None})
    return pd.DataFrame(recs), summary


def _num(v: float) -> str:
    return "–" if v is None or pd.isna(v) else f"{v:.1f}"


def _half_width(lo: float, hi: float) -> float:
    return (hi - lo) / 2


def _with_interval(r: Mapping[str, Any], m: str, pm: str) -> str:
    """`71.3 ± 0.8` (half-width of the bootstrap interval), `(0.5)` = s.d. across seeds."""
    if pd.isna(r[m]):
        return "–"
    text = f"{r[m]:.1f}{pm}{_half_width(r[f'{m}_lo'], r[f'{m}_hi']):.1f}"
    sd = r.get(f"{m}_seed_sd") if r["method"] != "zeroshot" else None  # zero-shot: shared by the seeds
    return text + (f" ({sd:.1f})" if sd is not None and not pd.isna(sd) else "")


def _difference(r: Mapping[str, Any], key: str, m: str, pm: str) -> str:
    d = r.get(f"d_{key}_{m}")
    if d is None or pd.isna(d) or r["method"] in REFERENCE_ROWS:
        return "–"
    if r[f"d_{key}_{m}_lo"] == r[f"d_{key}_{m}_hi"] == 0:
        return "0"  # the reference row itself
    return f"{d:+.1f}{pm}{_half_width(r[f'd_{key}_{m}_lo'], r[f'd_{key}_{m}_hi']):.1f}"


def _alpha(r: Mapping[str, Any]) -> str:
    per_seed = [a for a in (r.get("alpha_per_seed") or []) if a is not None]
    if not per_seed:
        return "–"
    lo, hi = min(per_seed), max(per_seed)
    return f"{lo:.3g}" if lo == hi else f"{lo:.3g}–{hi:.3g}"


def formatted(df: pd.DataFrame, tasks: Sequence[str], summary: Mapping[str, Any], pm: str,
              bold) -> pd.DataFrame:
    """The displayed table; ``pm`` is the ± of the target format, ``bold`` wraps a cell."""
    cmp = summary["compare_on"]
    out = pd.DataFrame()
    out["Method"] = [pretty(m, summary.get("labels")) for m in df["method"]]
    for t in tasks:
        out[t] = df[t].map(_num)
    recs = df.to_dict(orient="records")
    for m in METRICS:
        out[METRIC_LABEL[m]] = [bold(_with_interval(r, m, pm)) if m == cmp and r["tied_with_best"]
                                else _with_interval(r, m, pm) for r in recs]
    if summary.get("reference"):
        out["Δ TA"] = [_difference(r, "ta", cmp, pm) for r in recs]
    if summary.get("best"):
        out["Δ best"] = [_difference(r, "best", cmp, pm) for r in recs]
    out["α"] = [_alpha(r) for r in recs]
    return out


def table_notes(summary: Mapping[str, Any], seeds: Sequence[int], boot: Bootstrap) -> list[str]:
    """What the ±, the parentheses, the bold cells and the Δ columns mean."""
    cmp = METRIC_LABEL[summary["compare_on"]]
    notes = [f"±: half-width of the {100 * boot.confidence:.0f} % paired bootstrap interval over "
             f"test images ({boot.samples} resamples per task, the same for every row)"]
    if len(seeds) > 1:
        notes.append(f"Means over {len(seeds)} seeds ({', '.join(map(str, seeds))}); in parentheses: "
                     "standard deviation across seeds")
    if summary.get("best"):
        notes.append(f"Bold {cmp}: the best merged row ({pretty(summary['best'], summary.get('labels'))}) and those the paired "
                     "bootstrap cannot tell from it (the interval of the difference includes 0)")
        notes.append(f"Δ TA, Δ best: paired difference in {cmp} to task arithmetic and to the best row")
    tau = summary.get("kendall_tau_mean")
    if tau is not None:
        pairs = ", ".join(f"seeds {k.replace('-', '–')}: {v:.2f}" for k, v in summary["kendall_tau"].items())
        notes.append(f"Kendall τ between the seeds' rankings by {cmp}: mean {tau:.2f} ({pairs})")
    return notes


def write_tables(df: pd.DataFrame, tasks: Sequence[str], stem: Path, caption: str,
                 summary: Mapping[str, Any], notes: Sequence[str]) -> list[Path]:
    paths = []
    fmt = formatted(df, tasks, summary, " ± ", lambda s: f"**{s}**")
    md = stem.with_suffix(".md")
    with atomic_path(md) as tmp:
        lines = [f"**{caption}**", "", "| " + " | ".join(fmt.columns) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(fmt.columns) - 1)) + "|"]
        lines += ["| " + " | ".join(map(str, r)) + " |" for r in fmt.itertuples(index=False)]
        if notes:
            lines += ["", " ".join(f"{n}." for n in notes)]
        tmp.write_text("\n".join(lines) + "\n")
    paths.append(md)
    csv = stem.with_suffix(".csv")
    with atomic_path(csv) as tmp:
        out = df.copy()
        out["alpha_per_seed"] = out["alpha_per_seed"].map(
            lambda a: "" if a is None else ";".join("" if x is None else f"{x:g}" for x in a))
        out.to_csv(tmp, index=False, float_format="%.4f")
    paths.append(csv)
    tex = stem.with_suffix(".tex")
    with atomic_path(tex) as tmp:
        tfmt = formatted(df, tasks, summary, r" $\pm$ ", lambda s: rf"\textbf{{{s}}}")
        cols = "l" + "r" * (len(tfmt.columns) - 1)
        esc = lambda s: (str(s).replace("_", r"\_").replace("%", r"\%").replace("α", r"$\alpha$")  # noqa: E731
                         .replace("Δ", r"$\Delta$").replace("τ", r"$\tau$").replace("±", r"$\pm$")
                         .replace("–", "--"))
        body = [r"\begin{table}[t]", r"\centering", r"\small",
                rf"\caption{{{esc(caption)}. {esc(' '.join(n + '.' for n in notes))}}}",
                rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
                " & ".join(esc(c) for c in tfmt.columns) + r" \\", r"\midrule"]
        for i, r in enumerate(tfmt.itertuples(index=False)):
            body.append(" & ".join(esc(v) for v in r) + r" \\")
            if i == 1:
                body.append(r"\midrule")
        body += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        tmp.write_text("\n".join(body) + "\n")
    paths.append(tex)
    return paths


def accuracy_figure(df: pd.DataFrame, tasks: Sequence[str], stem: Path, title: str,
                    labels: Mapping[str, str] | None = None) -> None:
    """Left: per-method per-task test accuracy heatmap. Right: average normalized accuracy
    with its bootstrap interval; dark bars: rows that cannot be told from the best."""
    methods = [pretty(m, labels) for m in df["method"]]
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
    lo, hi = df["normalized_lo"].to_numpy(), df["normalized_hi"].to_numpy()
    tied = df["tied_with_best"].to_numpy() if "tied_with_best" in df else np.zeros(len(df), bool)
    colors = ["#bbbbbb" if m in REFERENCE_ROWS else ("#1f4e79" if t else "#8fb3d9")
              for m, t in zip(df["method"], tied)]
    y = np.arange(len(methods))
    err = np.vstack([np.clip(norm - lo, 0, None), np.clip(hi - norm, 0, None)])
    bx.barh(y, norm, color=colors, xerr=err, error_kw={"ecolor": "black", "elinewidth": 0.8, "capsize": 2})
    bx.set_yticks(y, [""] * len(methods))
    bx.invert_yaxis()
    bx.set_xlim(0, max(105, float(np.nanmax(hi)) + 8))
    bx.axvline(100, color="k", lw=0.8, ls="--")
    for yi, v, h in zip(y, norm, hi):
        bx.text(max(v, h) + 1, yi, f"{v:.1f}", va="center", fontsize=8)
    bx.set_xlabel("Avg. normalized accuracy (%)\nwhiskers: 95 % bootstrap interval")
    bx.set_title("Normalized accuracy" + ("\n(dark: not distinguishable from the best)" if tied.any() else ""),
                 fontsize=10)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    save_figure(fig, *figure_paths(stem), tight=False)


def rank_figure(table_json: str | Path, stem: str | Path) -> None:
    """Each merged method's rank (1 = best, by the table's compare_on metric) per seed."""
    t = load_json(table_json)
    ranks = {int(s): r for s, r in t["ranks"].items()}
    seeds = sorted(ranks)
    if not seeds:
        raise ArtifactError(f"{table_json}: no per-seed ranks")
    methods = list(ranks[seeds[0]])
    fig, ax = plt.subplots(figsize=(2.5 + 1.1 * len(seeds), 1.5 + 0.32 * len(methods)))
    colors = plt.get_cmap("tab20")(np.linspace(0, 1, 20))
    for k, m in enumerate(methods):
        ax.plot(range(len(seeds)), [ranks[s][m] for s in seeds], marker="o", lw=1.2,
                color=colors[k % 20])
    last: dict[float, list[str]] = {}  # methods tied at the last seed share one label
    for m in methods:
        last.setdefault(ranks[seeds[-1]][m], []).append(pretty(m, t.get("labels")))
    for y, names in last.items():
        ax.text(len(seeds) - 1 + 0.08, y, ", ".join(names), va="center", fontsize=8)
    ax.set_xticks(range(len(seeds)), [f"seed {s}" for s in seeds])
    ax.set_yticks(range(1, len(methods) + 1))
    ax.invert_yaxis()
    ax.set_xlim(-0.3, len(seeds) - 1 + 1.6)
    ax.set_ylabel(f"rank by {METRIC_LABEL[t['compare_on']]} (1 = best)")
    tau = t.get("kendall_tau_mean")
    ax.set_title(f"{t['regime']} / {t['suite']}: rank per seed"
                 + (f" (mean Kendall τ {tau:.2f})" if tau is not None else ""), fontsize=10)
    ax.grid(axis="y", lw=0.3)
    fig.tight_layout()
    save_figure(fig, *figure_paths(stem), tight=False)


def make_report(spec: Mapping[str, Any], results: Sequence[str | Path], out_dir: str | Path,
                regime: str, suite: str) -> pd.DataFrame:
    out_dir = Path(out_dir)
    tasks = list(spec["suites"][suite])
    df, summary = build_table(spec, results, regime, suite)
    seeds = list(summary["per_seed"])
    boot = Bootstrap.from_config(spec.get("bootstrap"))
    name = spec.get("name", "mergelab")
    caption = (f"{name}: {regime} fine-tuning, suite '{suite}' ({len(tasks)} tasks), "
               "test accuracy (%), α chosen on validation")
    write_tables(df, tasks, out_dir / "tables" / f"{regime}_{suite}", caption, summary,
                 table_notes(summary, seeds, boot))
    accuracy_figure(df, tasks, out_dir / "figures" / f"accuracy_{regime}_{suite}",
                    f"{name} — {regime} fine-tuning, {len(tasks)} tasks ({suite})"
                    + (f", {len(seeds)} seeds" if len(seeds) > 1 else ""), summary["labels"])
    rows = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
            for r in df.to_dict(orient="records")]
    save_json({"regime": regime, "suite": suite, "seeds": seeds,
               "seeded_paths": bool(spec.get("seeded_paths", False)),
               "bootstrap": {"samples": boot.samples, "confidence": boot.confidence, "seed": boot.seed},
               **{k: summary[k] for k in ("compare_on", "best", "reference", "ranks", "kendall_tau",
                                          "kendall_tau_mean", "per_seed", "labels")},
               "rows": rows, "sources": [str(p) for p in results], "provenance": provenance(dict(spec))},
              out_dir / "tables" / f"{regime}_{suite}.json")
    return df
