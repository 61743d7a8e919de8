"""Uncertainty of the tables: paired bootstrap over test images, seeds, rank stability.

Every row of a table (zero-shot, individual, each merged method; each seed) is scored
on the same test images. For each task the bootstrap draws resamples of that task's
images (with replacement, seeded by the bootstrap seed and the task's name) and every
row is scored on the same resamples, so differences between rows are paired: two rows
with identical predictions have a difference of exactly zero in every resample.
The averages (absolute, normalized, NAI) are computed per resample by
``summary_metrics``, the same function as the point estimates (docs/uncertainty.md).
"""
from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass
from itertools import combinations
from typing import Mapping, Sequence

import numpy as np

METRICS = ("avg", "normalized", "nai")
#: rows drawn in every table that are references, not merging methods
REFERENCE_ROWS = ("zeroshot", "individual")
#: resamples generated at once (bounds memory at paper scale; the draws do not depend on it)
_CHUNK = 250


@dataclass(frozen=True)
class Bootstrap:
    samples: int = 1000
    confidence: float = 0.95
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: Mapping | None) -> "Bootstrap":
        cfg = dict(cfg or {})
        b = cls(int(cfg.get("samples", 1000)), float(cfg.get("confidence", 0.95)), int(cfg.get("seed", 0)))
        if b.samples < 1:
            raise ValueError(f"report.bootstrap.samples must be >= 1, got {b.samples}")
        if not 0 < b.confidence < 1:
            raise ValueError(f"report.bootstrap.confidence must be in (0, 1), got {b.confidence}")
        return b


def task_rng(seed: int, task: str) -> np.random.Generator:
    """The resampling stream of one task: adding or removing a task leaves the others' draws."""
    return np.random.default_rng([seed, zlib.crc32(task.encode())])


def resampled_accuracies(correct: np.ndarray, boot: Bootstrap, task: str) -> np.ndarray:
    """Accuracy of each row of ``correct`` [..., n] (bool) on ``boot.samples`` resamples of
    the n images, the same resamples for every row: [..., samples]."""
    n = correct.shape[-1]
    flat = correct.reshape(-1, n).astype(np.float64)
    rng = task_rng(boot.seed, task)
    pvals = np.full(n, 1.0 / n)
    out = []
    for start in range(0, boot.samples, _CHUNK):
        counts = rng.multinomial(n, pvals, size=min(_CHUNK, boot.samples - start))
        out.append(flat @ counts.T.astype(np.float64) / n)
    return np.concatenate(out, axis=1).reshape(*correct.shape[:-1], boot.samples)


def summary_metrics(acc: np.ndarray, zeroshot: np.ndarray, individual: np.ndarray) -> dict[str, np.ndarray]:
    """The table's averages (%) over tasks (axis 0) of accuracies ``acc`` [T, ...]:
    ``avg`` (absolute), ``normalized`` (acc / individual) and ``nai`` (normalized accuracy
    improvement, (acc − zero-shot) / (individual − zero-shot); tasks where individual and
    zero-shot coincide are left out). ``zeroshot`` and ``individual`` broadcast against acc."""
    acc, zs, ind = np.asarray(acc, float), np.asarray(zeroshot, float), np.asarray(individual, float)
    gap = np.broadcast_to(ind - zs, np.broadcast_shapes(acc.shape, (ind - zs).shape))
    ok = np.abs(gap) > 1e-9
    with np.errstate(invalid="ignore", divide="ignore"):
        nai_t = np.where(ok, (acc - zs) / np.where(ok, gap, 1.0), np.nan)
        n_ok = ok.sum(axis=0)
        nai = np.where(n_ok > 0, np.nansum(nai_t, axis=0) / np.maximum(n_ok, 1), np.nan)
    return {"avg": 100 * acc.mean(axis=0),
            "normalized": 100 * (acc / np.maximum(ind, 1e-12)).mean(axis=0),
            "nai": 100 * nai}


def interval(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over the last axis (NaN resamples ignored)."""
    q = 100 * (1 - confidence) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows (NAI undefined) give NaN
        return np.nanpercentile(samples, q, axis=-1), np.nanpercentile(samples, 100 - q, axis=-1)


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """Rank 1 = highest value; tied values share their average rank."""
    v = -np.asarray(values, float)
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v))
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b between two rankings (ties handled); NaN when either is constant."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    conc = disc = tie_x = tie_y = 0
    for i, j in combinations(range(len(x)), 2):
        dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        tie_x += dx == 0
        tie_y += dy == 0
        if dx and dy:
            conc += dx == dy
            disc += dx != dy
    n0 = len(x) * (len(x) - 1) / 2
    denom = np.sqrt((n0 - tie_x) * (n0 - tie_y))
    return float((conc - disc) / denom) if denom > 0 else float("nan")


@dataclass
class TableStatistics:
    """Point estimates and paired bootstrap replicates of a table's averages.

    ``point[m]``: [S, R] (seed, row); ``boot[m]``: [S, R, B]; ``task_point``: [T, S, R].
    Rows 0 and 1 are zero-shot and individual."""

    rows: list[str]
    seeds: list[int]
    tasks: list[str]
    task_point: np.ndarray
    point: dict[str, np.ndarray]
    boot: dict[str, np.ndarray]
    boot_cfg: Bootstrap


def table_statistics(correct: Mapping[str, np.ndarray], rows: Sequence[str], seeds: Sequence[int],
                     boot: Bootstrap) -> TableStatistics:
    """``correct[task]``: bool [S, R, n_task], rows ordered as ``rows`` (zero-shot first,
    individual second), the same images in the same order for every seed and row."""
    rows, tasks = list(rows), list(correct)
    if rows[:2] != list(REFERENCE_ROWS):
        raise ValueError(f"the first rows must be {REFERENCE_ROWS}, got {rows[:2]}")
    task_point = np.stack([correct[t].mean(axis=-1) for t in tasks])  # [T, S, R]
    task_boot = np.stack([resampled_accuracies(correct[t], boot, t) for t in tasks])  # [T, S, R, B]
    point = summary_metrics(task_point, task_point[:, :, :1], task_point[:, :, 1:2])
    reps = summary_metrics(task_boot, task_boot[:, :, :1], task_boot[:, :, 1:2])
    return TableStatistics(rows, list(seeds), tasks, task_point, point, reps, boot)


def summarize(st: TableStatistics, compare_on: str = "normalized",
              reference: str = "task_arithmetic") -> dict:
    """Per row: seed-mean of each average with its bootstrap interval and the spread
    across seeds; paired differences to ``reference`` and to the best merged row on
    ``compare_on``; which rows the interval cannot tell from the best; per-seed ranks and
    Kendall τ between the seeds' rankings of the merged rows."""
    if compare_on not in METRICS:
        raise ValueError(f"report.compare_on must be one of {METRICS}, got '{compare_on}'")
    conf = st.boot_cfg.confidence
    mean_point = {m: st.point[m].mean(axis=0) for m in METRICS}  # [R]
    mean_boot = {m: st.boot[m].mean(axis=0) for m in METRICS}  # [R, B]
    merged = [i for i, r in enumerate(st.rows) if r not in REFERENCE_ROWS]
    out_rows = []
    for i, r in enumerate(st.rows):
        rec = {"method": r}
        for m in METRICS:
            lo, hi = interval(mean_boot[m][i], conf)
            sd = st.point[m][:, i].std(ddof=1) if len(st.seeds) > 1 else float("nan")
            rec.update({m: float(mean_point[m][i]), f"{m}_lo": float(lo), f"{m}_hi": float(hi),
                        f"{m}_seed_sd": float(sd)})
        out_rows.append(rec)
    best = max(merged, key=lambda i: mean_point[compare_on][i]) if merged else None
    refs = {"ta": st.rows.index(reference) if reference in st.rows else None, "best": best}
    for key, j in refs.items():
        for i, rec in enumerate(out_rows):
            if j is None:
                continue
            for m in METRICS:
                d = mean_boot[m][i] - mean_boot[m][j]
                lo, hi = interval(d, conf)
                rec.update({f"d_{key}_{m}": float(mean_point[m][i] - mean_point[m][j]),
                            f"d_{key}_{m}_lo": float(lo), f"d_{key}_{m}_hi": float(hi)})
    for i, rec in enumerate(out_rows):
        rec["tied_with_best"] = bool(best is not None and i in merged
                                     and rec[f"d_best_{compare_on}_hi"] >= 0)
    ranks = {s: dict(zip([st.rows[i] for i in merged],
                         average_ranks(st.point[compare_on][k, merged]).tolist()))
             for k, s in enumerate(st.seeds)}
    taus = {f"{a}-{b}": kendall_tau(list(ranks[a].values()), list(ranks[b].values()))
            for a, b in combinations(st.seeds, 2)}
    finite = [t for t in taus.values() if np.isfinite(t)]
    return {"rows": out_rows, "best": st.rows[best] if best is not None else None,
            "reference": reference if refs["ta"] is not None else None,
            "compare_on": compare_on, "ranks": ranks, "kendall_tau": taus,
            "kendall_tau_mean": float(np.mean(finite)) if finite else None,
            "per_seed": {s: {r: {m: float(st.point[m][k, i]) for m in METRICS}
                             for i, r in enumerate(st.rows)} for k, s in enumerate(st.seeds)}}
