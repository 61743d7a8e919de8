"""The regime report: is a run in the papers' regime? (tables/regime.{md,json})

Method-independent statistics of a run (zero-shot and fine-tuned accuracy, task-vector
size and similarity, how well a rank-r/T truncation keeps a task's accuracy) next to the
task-arithmetic outcomes the papers report, each with the paper's value and the target of
the mini suite (docs/mini_suite.md). Everything is read from the run's own artifacts.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from .io import atomic_path, load_json, save_json
from .taskvectors import DictSource, SafetensorsSource, TaskVectorSource

# Paper setting: CLIP ViT-B/32, 8 tasks (FusionBench and the papers' tables).
PAPER = {
    "zeroshot_avg": "48.2",
    "individual_full_avg": "90.3–90.5",
    "individual_lora_avg": "–",
    "individual_min": "all high",
    "individual_min_all": "all high",
    "tau_norm_max": "small (lr 1e-5)",
    "cossim_mean": "≈ 0",
    "ta_normalized": "≈ 75–77",
    "ta_alpha": "≈ 0.3",
    "ta_nai": "≈ 50",
    "adamerging_minus_ta": "+11 to +15",
    "lowrank_kept_min": "≈ 100 (TSV)",
    "disentanglement_mean": "small near α = 0 (Ortiz-Jiménez et al. 2023)",
}
TARGETS = {
    "zeroshot_avg": (35.0, 60.0),
    "individual_full_avg": (90.0, None),
    "individual_lora_avg": (85.0, None),
    "individual_min": (75.0, None),
    # the 16-task ablation's target: every task of the run fine-tunes well (docs/mini_suite.md)
    "individual_min_all": (80.0, None),
    "tau_norm_max": (None, 5.0),
    "cossim_mean": (None, 0.1),
    "ta_normalized": (65.0, 85.0),
    "lowrank_kept_min": (90.0, None),
}
LABELS = {
    "zeroshot_avg": "zero-shot average (%)",
    "individual_full_avg": "individual fine-tuned, full (%)",
    "individual_lora_avg": "individual fine-tuned, LoRA (%)",
    "individual_min": "lowest individual task accuracy (%)",
    "individual_min_all": "lowest individual task accuracy, every task of the run (%)",
    "tau_norm_max": "max ‖τt‖ / ‖θ0‖, image encoder (%)",
    "cossim_mean": "mean pairwise CosSim of task vectors",
    "ta_normalized": "task arithmetic, normalized accuracy (%)",
    "ta_alpha": "task arithmetic, chosen α (grid position)",
    "ta_nai": "task arithmetic, NAI (%)",
    "adamerging_minus_ta": "layer-wise AdaMerging − task arithmetic (points)",
    "lowrank_kept_min": "rank-r/T truncated τt: lowest kept share of own accuracy (%)",
    "disentanglement_mean": "weight-disentanglement error, full: mean over task pairs and α (%)",
}


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def task_vector_gram(source: TaskVectorSource, keys: Sequence[str]) -> torch.Tensor:
    """T × T Gram matrix ⟨τs, τt⟩ of the task vectors flattened over ``keys``, in float64.

    Summed key by key: only one key of every task is loaded at a time, so ViT-L's eight
    task vectors never sit in memory together."""
    if not keys:
        raise ValueError("no task-vector keys to compare")
    gram = None
    for key in keys:
        x = torch.stack([t.flatten() for t in source.get(key)]).double()
        gram = x @ x.T if gram is None else gram + x @ x.T
    return gram


def pairwise_cosines(gram: torch.Tensor) -> list[float]:
    """CosSim of every task pair (itertools.combinations order) from their Gram matrix;
    0 when either task vector is zero."""
    out = []
    for s, t in itertools.combinations(range(gram.shape[0]), 2):
        den = float(gram[s, s].sqrt() * gram[t, t].sqrt())
        out.append(float(gram[s, t]) / den if den > 0 else 0.0)
    return out


def squared_norm(weights: Mapping[str, torch.Tensor], keys: Sequence[str], where: str = "") -> float:
    """Σ ‖weights[k]‖² of θ0 over the task vectors' ``keys`` (found in file ``where``), in float64."""
    missing = [k for k in keys if k not in weights]
    if missing:
        raise KeyError(f"task vector key '{missing[0]}'{f' of {where}' if where else ''} is not in θ0")
    total = sum(float(weights[k].double().pow(2).sum()) for k in keys)
    if total == 0:  # ‖τ‖/‖θ0‖ is undefined: say so rather than divide by zero
        raise ValueError(f"θ0 is all zeros on the task vectors' keys{f' of {where}' if where else ''}: "
                         "‖τt‖/‖θ0‖ is undefined (was model.pretrained set?)")
    return total


def flat_cosine(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """Cosine similarity of two task vectors flattened over their shared keys (the papers'
    CosSim; analysis.cos_sim is the per-key one of the heatmaps)."""
    keys = sorted(set(a) & set(b))
    return pairwise_cosines(task_vector_gram(DictSource([a, b]), keys))[0]


def relative_norm(tau: Mapping[str, torch.Tensor], theta0: Mapping[str, torch.Tensor]) -> float:
    """‖τ‖ / ‖θ0‖ over the task vector's keys (θ0 keys as the image encoder names them)."""
    keys = list(tau)
    den = squared_norm(theta0, keys)
    return (float(task_vector_gram(DictSource([tau]), keys)[0, 0]) / den) ** 0.5


def truncate_rank(tau: Mapping[str, torch.Tensor], divisor: int) -> dict[str, torch.Tensor]:
    """Every matrix key truncated to its top r // divisor singular triplets (at least 1),
    r = min(d_out, d_in): the per-task rank TSV-M and DC-Merge keep for T = divisor tasks."""
    out = {}
    for k, v in tau.items():
        if v.ndim != 2:
            out[k] = v.clone()
            continue
        keep = max(1, min(v.shape) // divisor)
        u, s, vh = torch.linalg.svd(v.double(), full_matrices=False)
        out[k] = ((u[:, :keep] * s[:keep]) @ vh[:keep]).to(v.dtype)
    return out


def _grid_position(alpha: float, grid: Sequence[float]) -> str:
    i = min(range(len(grid)), key=lambda j: abs(grid[j] - alpha))
    where = "first" if i == 0 else "last" if i == len(grid) - 1 else "inside"
    return f"{alpha:g} ({i + 1}/{len(grid)}, {where})"


def _met(key: str, value: float | None) -> str:
    if key not in TARGETS or value is None:
        return "–"
    lo, hi = TARGETS[key]
    ok = (lo is None or value >= lo) and (hi is None or value <= hi)
    return "yes" if ok else "**no**"


def _target_text(key: str) -> str:
    if key == "ta_alpha":
        return "inside the grid, not first"
    if key not in TARGETS:
        return "–"
    lo, hi = TARGETS[key]
    if lo is not None and hi is not None:
        return f"{lo:g}–{hi:g}"
    return f"≥ {lo:g}" if lo is not None else f"≤ {hi:g}"


def _eval_files(paths: Sequence[str | Path]) -> dict[str, list[dict[str, Any]]]:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for p in paths:
        d = load_json(p)
        by_kind.setdefault(d.get("kind", "merged"), []).append(d)
    return by_kind


def regime_statistics(evals: Sequence[str | Path], taskvectors: Mapping[str, Sequence[str | Path]],
                      pretrained_encoder: Mapping[str, torch.Tensor], tasks: Sequence[str],
                      ta_method: str = "task_arithmetic",
                      adamerging_method: str | None = "adamerging") -> dict[str, Any]:
    """The statistics of the regime table, per regime where they differ.

    evals: eval JSONs (zero-shot, individual, lowrank, merged); taskvectors: regime -> task
    vector files in `tasks` order; pretrained_encoder: θ0's image-encoder weights."""
    by_kind = _eval_files(evals)
    zs = {t: v for d in by_kind.get("zeroshot", []) for t, v in d["test"].items()}
    ind: dict[str, dict[str, float]] = {}
    for d in by_kind.get("individual", []):
        ind.setdefault(d["regime"], {}).update(d["test"])
    low = {t: v for d in by_kind.get("lowrank", []) for t, v in d["test"].items()}
    dis = by_kind.get("disentanglement", [])
    merged = {(d["regime"], d["method"]): d for d in by_kind.get("merged", [])
              if list(d["tasks"]) == list(tasks)}
    stats: dict[str, Any] = {"tasks": list(tasks), "per_task": {}}
    stats["zeroshot_avg"] = 100 * _mean([zs[t] for t in tasks])
    for regime, accs in ind.items():
        stats[f"individual_{regime}_avg"] = 100 * _mean([accs[t] for t in tasks])
    stats["individual_min"] = 100 * min(accs[t] for accs in ind.values() for t in tasks)
    stats["per_task"]["zeroshot"] = {t: 100 * zs[t] for t in tasks}
    # tasks of the run outside the suite (the ablation's other suites): fine-tuned accuracy only
    others = sorted({t for accs in ind.values() for t in accs} - set(tasks))
    if others:
        stats["other_tasks"] = others
        stats["individual_min_all"] = 100 * min(v for accs in ind.values() for v in accs.values())
        stats["per_task_other"] = {"zeroshot": {t: 100 * zs[t] for t in others if t in zs},
                                   **{f"individual_{r}": {t: 100 * accs[t] for t in others if t in accs}
                                      for r, accs in ind.items()}}
    for regime, accs in ind.items():
        stats["per_task"][f"individual_{regime}"] = {t: 100 * accs[t] for t in tasks}
    for regime, paths in taskvectors.items():
        source = SafetensorsSource(paths)
        keys = source.keys()
        theta0_sq = squared_norm(pretrained_encoder, keys, str(paths[0])) if regime == "full" else None
        gram = task_vector_gram(source, keys)
        if theta0_sq is not None:
            norms = {t: 100 * (float(gram[i, i]) / theta0_sq) ** 0.5 for i, t in enumerate(tasks)}
            stats["per_task"]["tau_norm_full"] = norms
            stats["tau_norm_max"] = max(norms.values())
        cos = pairwise_cosines(gram)
        stats[f"cossim_mean_{regime}"] = _mean(cos) if cos else None
    cos_all = [v for k, v in stats.items() if k.startswith("cossim_mean_") and v is not None]
    stats["cossim_mean"] = max(cos_all) if cos_all else None
    if low and "full" in ind:
        kept = {t: 100 * low[t] / max(ind["full"][t], 1e-12) for t in tasks if t in low}
        stats["per_task"]["lowrank_kept_full"] = kept
        stats["lowrank_kept_min"] = min(kept.values())
    if dis:
        stats["disentanglement_mean"] = 100 * dis[0]["mean"]
        stats["disentanglement_alphas"] = dis[0]["alphas"]
        stats["disentanglement_pairs"] = {k: 100 * v for k, v in dis[0]["pair_mean"].items()}
    for regime in ind:
        ta = merged.get((regime, ta_method))
        if ta is None:
            continue
        acc = [ta["test"][t] for t in tasks]
        f = [ind[regime][t] for t in tasks]
        z = [zs[t] for t in tasks]
        stats[f"ta_normalized_{regime}"] = 100 * _mean([a / max(fi, 1e-12) for a, fi in zip(acc, f)])
        nai = _mean([(a - zi) / (fi - zi) for a, fi, zi in zip(acc, f, z) if abs(fi - zi) > 1e-9])
        stats[f"ta_nai_{regime}"] = None if nai is None else 100 * nai
        stats[f"ta_alpha_{regime}"] = _grid_position(ta["alpha"], ta["alpha_grid"])
        stats[f"ta_alpha_inside_{regime}"] = 0 < ta["alpha_grid"].index(ta["alpha"]) < len(ta["alpha_grid"]) - 1 \
            if ta["alpha"] in ta["alpha_grid"] else None
        ada = merged.get((regime, adamerging_method)) if adamerging_method else None
        if ada is not None:
            stats[f"adamerging_minus_ta_{regime}"] = 100 * (_mean([ada["test"][t] for t in tasks]) - _mean(acc))
    return stats


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1 else f"{v:.1f}"
    return str(v)


def regime_rows(stats: Mapping[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(statistic, paper, target, this run, met) rows, one per statistic and regime."""
    rows = []
    regimes = sorted({k.rsplit("_", 1)[1] for k in stats if k.startswith("ta_normalized_")})
    for key in LABELS:
        if key in ("ta_normalized", "ta_alpha", "ta_nai", "adamerging_minus_ta"):
            for r in regimes:
                v = stats.get(f"{key}_{r}")
                met = _met(key, v) if key != "ta_alpha" else (
                    "yes" if stats.get(f"ta_alpha_inside_{r}") else "**no**")
                rows.append((f"{LABELS[key]}, {r}", PAPER[key], _target_text(key), _fmt(v),
                             met if v is not None else "–"))
        elif key == "cossim_mean":
            for r in ("full", "lora"):
                v = stats.get(f"cossim_mean_{r}")
                if v is not None:
                    rows.append((f"{LABELS[key]}, {r}", PAPER[key], _target_text(key), _fmt(v), _met(key, v)))
        elif key in stats:
            rows.append((LABELS[key], PAPER[key], _target_text(key), _fmt(stats[key]), _met(key, stats[key])))
    return rows


def disentanglement_table(stats: Mapping[str, Any]) -> str:
    """The pairwise weight-disentanglement errors (%) as a task × task Markdown table."""
    tasks, pairs = stats["tasks"], stats["disentanglement_pairs"]
    alphas = ", ".join(f"{a:g}" for a in stats["disentanglement_alphas"])
    lines = [f"Weight-disentanglement error (%), full fine-tuning: share of a task's test predictions "
             f"that adding the other task's vector changes, mean over αs, αt ∈ {{{alphas}}} and the "
             "pair's two tasks (0: task arithmetic's premise holds):", "",
             "| | " + " | ".join(tasks) + " |", "|---|" + "---:|" * len(tasks)]
    for s in tasks:
        cells = []
        for t in tasks:
            v = pairs.get(f"{s}|{t}", pairs.get(f"{t}|{s}"))
            cells.append("" if s == t or v is None else f"{v:.1f}")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _task_table(tasks: Sequence[str], rows: Mapping[str, Mapping[str, float]]) -> list[str]:
    """A statistic × task Markdown table."""
    lines = ["| | " + " | ".join(tasks) + " |", "|---|" + "---:|" * len(tasks)]
    return lines + [f"| {name} | " + " | ".join(_fmt(vals.get(t)) for t in tasks) + " |"
                    for name, vals in rows.items()]


def write_regime_report(stats: Mapping[str, Any], out_md: str | Path, out_json: str | Path,
                        title: str, provenance_block: Mapping[str, Any]) -> None:
    rows = regime_rows(stats)
    lines = [f"**{title}**", "",
             "| statistic | paper (ViT-B/32, 8 tasks) | target | this run | met |",
             "|---|---|---|---:|---|"]
    lines += [f"| {' | '.join(r)} |" for r in rows]
    if stats.get("per_task"):
        lines += ["", "Per task:", "", *_task_table(stats["tasks"], stats["per_task"])]
    if stats.get("per_task_other"):
        lines += ["", "The run's other tasks (fine-tuned, not in the suite):", "",
                  *_task_table(stats["other_tasks"], stats["per_task_other"])]
    if stats.get("disentanglement_pairs"):
        lines += ["", disentanglement_table(stats)]
    with atomic_path(out_md) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    save_json({"statistics": dict(stats), "rows": [dict(zip(("statistic", "paper", "target", "run", "met"), r))
                                                  for r in rows],
               "provenance": dict(provenance_block)}, out_json)
