"""Weight disentanglement of a suite's task vectors (Ortiz-Jiménez et al., "Task Arithmetic
in the Tangent Space", 2023): does adding task t's vector change what the model predicts
on task s?

For a pair (s, t) and coefficients (αs, αt), the error on task s is the share of its images
whose prediction by θ0 + αs·τs + αt·τt differs from the prediction by θ0 + αs·τs; the pair's
error is the mean over its two tasks (the paper sums the two; the mean reads as a share of
images). 0 means the two vectors act on their own tasks independently, the property task
arithmetic rests on. It needs no merging method, so it is one of the regime statistics
(mergelab.regime).
"""
from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .engine import progress

DEFAULT_ALPHAS = (0.5, 1.0)


def combine(terms: Sequence[tuple[float, Mapping[str, torch.Tensor]]]) -> dict[str, torch.Tensor]:
    """Σ α·τ over the union of the task vectors' keys."""
    out: dict[str, torch.Tensor] = {}
    for alpha, tau in terms:
        for k, v in tau.items():
            out[k] = out[k] + alpha * v if k in out else alpha * v
    return out


def disagreement(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        raise ValueError(f"predictions of different lengths: {a.shape} vs {b.shape}")
    return float(np.mean(a != b)) if a.size else 0.0


def pair_key(s: str, t: str) -> str:
    return f"{s}|{t}"


def disentanglement_errors(predict, taus: Sequence[Mapping[str, torch.Tensor]], tasks: Sequence[str],
                           alphas: Sequence[float] = DEFAULT_ALPHAS) -> dict[str, Any]:
    """Pairwise errors for every pair of tasks and every (αs, αt) in alphas².

    predict(tau, task_indices) -> list of predicted-class arrays, one per task index, for the
    model θ0 + tau (tau None: θ0)."""
    if len(taus) != len(tasks):
        raise ValueError(f"{len(taus)} task vectors for {len(tasks)} tasks")
    if len(tasks) < 2:
        raise ValueError("weight disentanglement needs at least two tasks")
    alphas = [float(a) for a in alphas]
    alone = {(i, a): predict(combine([(a, taus[i])]), [i])[0]
             for i in range(len(tasks)) for a in alphas}
    pairs: dict[str, dict[str, float]] = {}
    grid = list(itertools.product(alphas, alphas))
    for s, t in progress(list(itertools.combinations(range(len(tasks)), 2)), desc="disentanglement"):
        errs = {}
        for a_s, a_t in grid:
            both = predict(combine([(a_s, taus[s]), (a_t, taus[t])]), [s, t])
            errs[f"{a_s:g},{a_t:g}"] = 0.5 * (disagreement(both[0], alone[(s, a_s)])
                                             + disagreement(both[1], alone[(t, a_t)]))
        pairs[pair_key(tasks[s], tasks[t])] = errs
    pair_mean = {k: float(np.mean(list(v.values()))) for k, v in pairs.items()}
    by_alpha = {f"{a:g}": float(np.mean([v[f"{a:g},{a:g}"] for v in pairs.values()])) for a in alphas}
    return {"tasks": list(tasks), "alphas": alphas, "pairs": pairs, "pair_mean": pair_mean,
            "mean_by_alpha": by_alpha, "mean": float(np.mean(list(pair_mean.values())))}


def evaluator_predict(ev, split: str = "test"):
    """The predict function of disentanglement_errors for a mergelab.evaluate.Evaluator."""
    def predict(tau, indices):
        ev.set_weights(tau, 1.0)
        try:
            return [ev.predictions(i, split).pred for i in indices]
        finally:
            ev.set_weights(None, 0.0)
    return predict


def eval_disentanglement(regime: str, tasks: Sequence[str], evaluator_args: Mapping[str, Any],
                         tv_paths: Sequence[str], out_json: str, config_subset: Mapping[str, Any],
                         seed: int, alphas: Sequence[float] = DEFAULT_ALPHAS,
                         max_images: int | None = 200) -> dict[str, Any]:
    """The suite's pairwise errors on (the first max_images of) each task's test split, as the
    regime report's eval JSON (kind "disentanglement")."""
    from .evaluate import Evaluator
    from .io import check_finite, load_tensors, provenance, save_json

    args = dict(evaluator_args)
    if max_images is not None:
        args["data_cfg"] = {**args["data_cfg"], "max_eval_per_task": max_images}
    ev = Evaluator(regime, tasks=tasks, **args)
    taus = []
    for p in tv_paths:
        tau = load_tensors(p)
        check_finite(tau, str(p))
        taus.append(tau)
    res = {"kind": "disentanglement", "regime": regime, "split": "test", "max_images": max_images,
           **disentanglement_errors(evaluator_predict(ev, "test"), taus, tasks, alphas)}
    res["provenance"] = provenance(dict(config_subset), seed=seed)
    save_json(res, out_json)
    return res
