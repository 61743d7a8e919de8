"""Ablations of the MDA paper beyond the main tables (see docs/data_based.md):

* ``generalization_report`` – table (Markdown, CSV, JSON) and bar figure of the
  held-out accuracies per method next to zero-shot;
* ``task_count_figure`` – average normalized test accuracy against the number
  of merged tasks, one line per method (suites of 4, 8, 12, 16 tasks).

The held-out accuracies themselves come from ``evaluate.eval_generalization``.

Figures: PNG + PDF, matplotlib Agg, written atomically.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .io import ArtifactError, atomic_path, figure_paths, load_json, save_figure, save_json  # noqa: E402


def _labels(results: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Row name -> display name: the reference rows' and each result JSON's method instance's
    (``report.instance_labels``)."""
    from .report import REFERENCE_LABELS, instance_labels
    return {**REFERENCE_LABELS, **instance_labels({d["method"]: d for d in results})}


def _write_text(text: str, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


# ------------------------------------------------------------------ generalization

def generalization_report(results: Sequence[str | Path], out_stem: str | Path,
                          figure_stem: str | Path | None = None,
                          method_order: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Rows: zero-shot, then each method; columns: held-out tasks and their mean (test %).
    Tables at ``out_stem`` (.md, .csv, .json), the bar figure at ``figure_stem`` (.png, .pdf)."""
    out_stem = Path(out_stem)
    figure_stem = Path(figure_stem) if figure_stem is not None else out_stem
    recs = [load_json(p) for p in results]
    if not recs:
        raise ArtifactError("generalization report: no results")
    heldout = recs[0]["heldout"]
    order = list(method_order)
    recs.sort(key=lambda r: order.index(r["method"]) if r["method"] in order else len(order))
    rows = [{"method": "zeroshot", **{t: 100 * recs[0]["zeroshot"][t] for t in heldout},
             "mean": 100 * recs[0]["mean_zeroshot"]}]
    rows += [{"method": r["method"], **{t: 100 * r["test"][t] for t in heldout}, "mean": 100 * r["mean"]}
             for r in recs]
    cols = ["method", *heldout, "mean"]
    labels = _labels(recs)
    md = ["| " + " | ".join(["Method", *heldout, "Avg."]) + " |",
          "|" + "---|" * len(cols)]
    csv = [",".join(cols)]
    for row in rows:
        md.append("| " + " | ".join([labels[row["method"]]] + [f"{row[c]:.1f}" for c in cols[1:]]) + " |")
        csv.append(",".join([row["method"]] + [f"{row[c]:.4f}" for c in cols[1:]]))
    title = (f"Generalization: merged on '{recs[0]['suite']}' ({recs[0]['regime']}), "
             f"tested on unseen tasks")
    _write_text(f"{title}\n\n" + "\n".join(md) + "\n", out_stem.with_name(out_stem.name + ".md"))
    _write_text("\n".join(csv) + "\n", out_stem.with_name(out_stem.name + ".csv"))
    save_json({"title": title, "rows": rows}, out_stem.with_name(out_stem.name + ".json"))

    fig, ax = plt.subplots(figsize=(1.5 + 0.6 * len(rows), 3.2))
    names = [labels[r["method"]] for r in rows]
    ax.bar(range(len(rows)), [r["mean"] for r in rows],
           color=["0.6"] + [f"C{i % 10}" for i in range(len(rows) - 1)])
    ax.set_xticks(range(len(rows)), names, rotation=40, ha="right")
    ax.set_ylabel("avg. test accuracy on unseen tasks (%)")
    ax.set_title(title, fontsize=9)
    save_figure(fig, *figure_paths(figure_stem))
    return rows


# ------------------------------------------------------------------ number of tasks

def task_count_points(results: Sequence[str | Path]) -> dict[str, list[tuple[int, float]]]:
    """method -> sorted [(number of merged tasks, average normalized test accuracy in %)]."""
    pts: dict[str, dict[int, float]] = {}
    for p in results:
        d = load_json(p)
        norm = d["test_normalized"]
        n = len(d["tasks"])
        pts.setdefault(d["method"], {})[n] = 100 * sum(norm[t] for t in d["tasks"]) / n
    return {m: sorted(v.items()) for m, v in pts.items()}


def task_count_figure(results: Sequence[str | Path], out_stem: str | Path, title: str = "",
                      method_order: Sequence[str] = ()) -> dict[str, list[tuple[int, float]]]:
    out_stem = Path(out_stem)
    pts = task_count_points(results)
    order = list(method_order)
    methods = sorted(pts, key=lambda m: order.index(m) if m in order else len(order))
    labels = _labels([load_json(p) for p in results])
    fig, ax = plt.subplots(figsize=(5, 3.4))
    markers = "osD^v<>ph*"
    for i, m in enumerate(methods):
        xs, ys = zip(*pts[m])
        ax.plot(xs, ys, marker=markers[i % len(markers)], label=labels[m])
    counts = sorted({n for v in pts.values() for n, _ in v})
    ax.set_xticks(counts)
    ax.set_xlabel("number of merged tasks")
    ax.set_ylabel("avg. normalized accuracy (%)")
    ax.set_title(title or "Accuracy vs number of tasks", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    save_figure(fig, *figure_paths(out_stem))
    save_json({"title": title, "points": {m: [list(p) for p in pts[m]] for m in methods}},
              out_stem.with_name(out_stem.name + ".json"))
    return pts

