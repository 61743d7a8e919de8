"""Evaluation: zero-shot, individual fine-tuned models, and merged models with
the scaling coefficient α chosen on validation (highest mean normalized accuracy,
first best wins), then one test evaluation at the chosen α."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

import numpy as np

from .engine import Head, predict_with_margin, progress
from .io import ArtifactError, check_finite, load_json, load_tensors, provenance, save_json
from .methods.base import COEFFICIENT_PREFIX, ROTATION_PREFIX
from .models import build_encoder, pick_device
from .predictions import TaskPredictions, predictions_path, save_predictions
from .splits import load_split



def split_merged(tau: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(weight keys, {task: rotation}) of a merged file; coefficient keys are dropped.

    ``feature_rotation.<task>`` [d, d] is applied to task <task>'s image features before
    its head (MDA Algorithm 2); ``merge_coefficients.<key>`` (AdaMerging, MDA AM) is not a
    weight. Task vectors (individual / zero-shot paths) never carry either."""
    weights, rotations = {}, {}
    for k, v in tau.items():
        if k.startswith(ROTATION_PREFIX):
            rotations[k[len(ROTATION_PREFIX):]] = v
        elif not k.startswith(COEFFICIENT_PREFIX):
            weights[k] = v
    return weights, rotations


class RotatedHead(Head):
    """A head that first rotates the features: logits = head(f Rᵀ)."""

    def __init__(self, head: Head, rotation: torch.Tensor):
        super().__init__(head.weight, head.logit_scale)
        self.rotation = rotation

    def to(self, device) -> "RotatedHead":
        return RotatedHead(Head.to(self, device), self.rotation.to(device))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return super().logits(features.float() @ self.rotation.float().T)


class Evaluator:
    """θ0 of one regime plus each task's head and split tensors; evaluates θ0 + α·τ."""

    def __init__(self, regime: str, model_cfg: Mapping[str, Any], pretrained: str | Path,
                 tasks: Sequence[str], task_dirs: Sequence[str | Path],
                 head_paths: Sequence[str | Path], data_cfg: Mapping[str, Any],
                 batch_size: int = 256, device: str = "auto"):
        self.dev = pick_device(device)
        self.regime = regime
        self.tasks = list(tasks)
        self.task_dirs = [str(d) for d in task_dirs]
        self.encoder = build_encoder(regime, model_cfg, pretrained).to(self.dev).eval()
        self.theta0 = {k: v.detach().clone() for k, v in self.encoder.weights().items()}
        self.heads = [Head.load(p) for p in head_paths]
        self.data_cfg = data_cfg
        self.batch_size = batch_size
        self._current: dict[str, torch.Tensor] | None = None
        self.rotations: dict[str, torch.Tensor] = {}

    def split(self, i: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, n = load_split(self.task_dirs[i], split, self.data_cfg["image_size"],
                             self.data_cfg.get("max_eval_per_task"))
        if self.heads[i].weight.shape[0] != n:
            raise ArtifactError(f"head of task '{self.tasks[i]}' has {self.heads[i].weight.shape[0]} "
                                f"classes, its dataset {self.task_dirs[i]} has {n}")
        return x, y

    def images(self, i: int, split: str):
        """Images of a split without their labels (methods learning on unlabeled test data)."""
        return self.split(i, split)[0]

    def set_weights(self, tau: Mapping[str, torch.Tensor] | None, alpha: float) -> None:
        self.rotations = {}
        if tau is None:
            sd = self.theta0
        else:
            tau, self.rotations = split_merged(tau)
            missing = [k for k in tau if k not in self.theta0]
            if missing:
                raise ArtifactError(f"task vector key '{missing[0]}' is not a weight of the "
                                    f"{self.regime} image encoder (another architecture?)")
            sd = {k: (self.theta0[k].float() + alpha * tau[k].to(self.dev).float()).to(self.theta0[k].dtype)
                  for k in tau}
        self.encoder.load_weights(sd)

    def accuracy(self, i: int, split: str) -> float:
        return self.predictions(i, split).accuracy

    def predictions(self, i: int, split: str) -> TaskPredictions:
        """Task i's per-sample predictions on a split with the current weights."""
        x, y = self.split(i, split)
        head = self.heads[i]
        if self.tasks[i] in self.rotations:
            rot = self.rotations[self.tasks[i]]
            if tuple(rot.shape) != (head.weight.shape[1],) * 2:
                raise ArtifactError(f"feature rotation of task '{self.tasks[i]}' has shape "
                                    f"{tuple(rot.shape)}, features have {head.weight.shape[1]} dims")
            head = RotatedHead(head, rot)
        if len(y) == 0:
            raise ArtifactError(f"task '{self.tasks[i]}': cannot evaluate on an empty '{split}' split")
        pred, margin = predict_with_margin(self.encoder, head, x, y, self.batch_size, self.dev,
                                           self.data_cfg.get("num_workers", 0))
        return TaskPredictions(index=np.arange(len(y)), label=y.numpy(), pred=pred.numpy(),
                               margin=margin.numpy())

    def evaluate(self, i: int, tau: Mapping[str, torch.Tensor] | None, alpha: float,
                 split: str = "validation") -> float:
        """Accuracy of task i's head on θ0 + α·τ (the MergeContext.evaluate signature)."""
        self.set_weights(tau, alpha)
        try:
            return self.accuracy(i, _split_name(split))
        finally:
            self.set_weights(None, 0.0)

    def all_tasks(self, tau, alpha: float, split: str) -> list[float]:
        return [p.accuracy for p in self.all_predictions(tau, alpha, split)]

    def all_predictions(self, tau, alpha: float, split: str) -> list[TaskPredictions]:
        self.set_weights(tau, alpha)
        try:
            return [self.predictions(i, split) for i in range(len(self.tasks))]
        finally:
            self.set_weights(None, 0.0)

    def task_predictions(self, i: int, tau, alpha: float, split: str) -> TaskPredictions:
        self.set_weights(tau, alpha)
        try:
            return self.predictions(i, _split_name(split))
        finally:
            self.set_weights(None, 0.0)


def _split_name(split: str) -> str:
    return "validation" if split in ("val", "validation") else split


def _tau(path: str | Path) -> dict[str, torch.Tensor]:
    tau = load_tensors(path)
    check_finite(tau, str(path))
    return tau


def eval_reference(kind: str, regime: str, tasks: Sequence[str], evaluator_args: Mapping[str, Any],
                   tv_paths: Sequence[str | Path] | None, out_json: str | Path,
                   config_subset: Mapping[str, Any], seed: int,
                   rank_divisor: int | None = None) -> dict[str, Any]:
    """Zero-shot (α = 0), individual (each task with θ0 + τt) or lowrank (θ0 + τt with every
    matrix key truncated to rank r // rank_divisor, the regime report's check) accuracies;
    the per-sample predictions go to the .npz beside ``out_json``."""
    if kind == "lowrank" and not rank_divisor:
        raise ValueError("eval-reference --kind lowrank needs --rank-divisor (the suite's T)")
    ev = Evaluator(regime, tasks=tasks, **evaluator_args)
    res: dict[str, Any] = {"kind": kind, "regime": regime, "tasks": list(tasks),
                           "validation": {}, "test": {}}
    if kind == "lowrank":
        res["rank_divisor"] = rank_divisor
    preds: dict[str, dict[str, TaskPredictions]] = {"validation": {}, "test": {}}
    for i, task in enumerate(progress(tasks, desc=f"{kind} {regime}")):
        tau = _tau(tv_paths[i]) if kind in ("individual", "lowrank") else None
        if kind == "lowrank":
            from .regime import truncate_rank
            tau = truncate_rank(tau, rank_divisor)
        for split in ("validation", "test"):
            preds[split][task] = ev.task_predictions(i, tau, 1.0, split)
            res[split][task] = preds[split][task].accuracy
    res["provenance"] = provenance(dict(config_subset), seed=seed)
    save_predictions(preds, predictions_path(out_json))
    save_json(res, out_json)
    return res


def choose_alpha(grid: Sequence[float], val_norm: Sequence[float]) -> int:
    """Index of the highest mean normalized validation accuracy; first best wins."""
    best, best_i = -float("inf"), 0
    for i, v in enumerate(val_norm):
        if v > best + 1e-12:
            best, best_i = v, i
    return best_i


def alpha_search(n: int, score: Callable[[int], float], search: str = "grid", stride: int = 3,
                 progress: Callable[[Iterable], Iterable] = lambda it: it) -> dict[int, float]:
    """Scores (mean normalized validation accuracy) of the grid indices the search visits.

    * ``grid``: every point, in order (the protocol).
    * ``coarse_to_fine``: every ``stride``-th point (and the last), then every
      not yet evaluated point within ``stride - 1`` of the best coarse point.
      When the validation curve is unimodal over the grid this selects the same α
      as ``grid`` with about n/stride + 2·(stride−1) evaluations instead of n.
    """
    if search not in ("grid", "coarse_to_fine"):
        raise ValueError(f"unknown alpha search '{search}' (grid, coarse_to_fine)")
    scores: dict[int, float] = {}

    def visit(indices) -> None:
        for i in progress([i for i in indices if i not in scores]):
            scores[i] = score(i)

    if search == "grid" or n <= 2 * stride:
        visit(range(n))
        return scores
    visit(sorted(set(range(0, n, stride)) | {n - 1}))
    best = choose_alpha_index(scores)
    visit(range(max(0, best - stride + 1), min(n, best + stride)))
    return scores


def choose_alpha_index(scores: Mapping[int, float]) -> int:
    """Grid index with the highest score; the smallest index wins ties."""
    idx = sorted(scores)
    return idx[choose_alpha([0.0] * len(idx), [scores[i] for i in idx])]


def eval_merged(inst: str, regime: str, suite: str, tasks: Sequence[str],
                evaluator_args: Mapping[str, Any], merged_path: str | Path,
                individual_paths: Sequence[str | Path], grid: Sequence[float],
                out_json: str | Path, config_subset: Mapping[str, Any], seed: int,
                merge_info_path: str | Path | None = None, alpha_search_mode: str = "grid",
                alpha_stride: int = 3) -> dict[str, Any]:
    if not grid:
        raise ArtifactError(f"method '{inst}': empty α grid")
    t0 = time.time()
    ev = Evaluator(regime, tasks=tasks, **evaluator_args)
    tau = _tau(merged_path)
    indiv_val, indiv_test = {}, {}
    for p in individual_paths:
        d = load_json(p)
        indiv_val.update(d["validation"])
        indiv_test.update(d["test"])
    for t in tasks:
        if t not in indiv_val:
            raise ArtifactError(f"no individual accuracy for task '{t}' in {list(individual_paths)}")
    rows: dict[int, dict[str, Any]] = {}
    val_preds: dict[int, list[TaskPredictions]] = {}

    def score(i: int) -> float:
        val_preds[i] = ev.all_predictions(tau, grid[i], "validation")
        accs = [p.accuracy for p in val_preds[i]]
        norm = [acc / max(indiv_val[t], 1e-12) for acc, t in zip(accs, tasks)]
        rows[i] = {"alpha": grid[i], "accuracy": dict(zip(tasks, accs)),
                   "mean_accuracy": sum(accs) / len(accs),
                   "mean_normalized": sum(norm) / len(norm)}
        return rows[i]["mean_normalized"]

    scores = alpha_search(len(grid), score, alpha_search_mode, alpha_stride,
                          lambda it: progress(it, desc=f"α {alpha_search_mode} {inst}/{regime}/{suite}"))
    best = choose_alpha_index(scores)
    val_rows = [rows[i] for i in sorted(rows)]
    alpha = float(grid[best])
    test_preds = ev.all_predictions(tau, alpha, "test")
    test_acc = {t: p.accuracy for t, p in zip(tasks, test_preds)}
    res = {
        "method": inst, "regime": regime, "suite": suite, "tasks": list(tasks),
        "alpha": alpha, "alpha_grid": list(grid), "alpha_search": alpha_search_mode,
        "validation_curve": val_rows,
        "validation": rows[best]["accuracy"],
        "test": test_acc,
        "test_normalized": {t: test_acc[t] / max(indiv_test[t], 1e-12) for t in tasks},
        "seconds": time.time() - t0,
    }
    if merge_info_path:
        res["merge"] = {k: v for k, v in load_json(merge_info_path).items() if k != "provenance"}
    res["provenance"] = provenance(dict(config_subset), seed=seed)
    save_predictions({"validation": dict(zip(tasks, val_preds[best])),
                      "test": dict(zip(tasks, test_preds))}, predictions_path(out_json))
    save_json(res, out_json)
    return res


def eval_generalization(inst: str, regime: str, suite: str, heldout: Sequence[str],
                        evaluator_args: Mapping[str, Any], merged_path: str | Path,
                        merged_eval_path: str | Path, zeroshot_paths: Sequence[str | Path],
                        out_json: str | Path, config_subset: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """Test accuracy of θ0 + α·τm on tasks that were *not* merged (held-out tasks, their
    zero-shot heads, no feature rotation), α from the suite's own validation (the MDA
    paper's generalization ablation)."""
    merged_eval = load_json(merged_eval_path)
    alpha = float(merged_eval["alpha"])
    merged_tasks = list(merged_eval["tasks"])
    overlap = sorted(set(merged_tasks) & set(heldout))
    if overlap:
        raise ArtifactError(f"generalization: held-out task(s) {overlap} were merged in suite '{suite}'")
    tau = _tau(merged_path)
    ev = Evaluator(regime, tasks=heldout, **evaluator_args)
    preds = {t: ev.task_predictions(i, tau, alpha, "test") for i, t in enumerate(heldout)}
    test = {t: p.accuracy for t, p in preds.items()}
    zs: dict[str, float] = {}
    for p in zeroshot_paths:
        zs.update(load_json(p)["test"])
    missing = [t for t in heldout if t not in zs]
    if missing:
        raise ArtifactError(f"generalization: no zero-shot accuracy for {missing} in {list(zeroshot_paths)}")
    res = {
        "method": inst, "regime": regime, "suite": suite, "merged_tasks": merged_tasks,
        "heldout": list(heldout), "alpha": alpha, "test": test,
        "zeroshot": {t: zs[t] for t in heldout},
        "mean": sum(test.values()) / len(test),
        "mean_zeroshot": sum(zs[t] for t in heldout) / len(heldout),
        "merge": {k: (merged_eval.get("merge") or {}).get(k) for k in ("registry_method", "params")},
        "provenance": provenance(dict(config_subset), seed=seed),
    }
    save_predictions({"test": preds}, predictions_path(out_json))
    save_json(res, out_json)
    return res
