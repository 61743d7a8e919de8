"""AdaMerging (Yang et al., ICLR 2024): merging coefficients learned by entropy
minimisation on unlabeled test images.

θ = θ0 + Σt Σl λt,l τt,l. Facts taken from the authors' public code
(``main_layer_wise_adamerging.py`` / ``main_task_wise_adamerging.py``):

* a "layer" is one parameter tensor of the image encoder (one λ per task and
  per state-dict key); task-wise AdaMerging shares one λ per task;
* λ starts at 0.3 (the "prior") and is clamped to [0, 1] in every forward
  (``init``, ``clamp_range``; ``init: from_method`` starts at the validated α of the
  method instance ``init_method``, read by the pipeline from its eval JSON);
* Adam, lr 1e-3, betas (0.9, 0.999), no weight decay, 500 steps;
* each step draws, for every task, two shuffled batches of 16 unlabeled **test**
  images, sums the mean Shannon entropy of the task head's softmax over all
  tasks and batches, and takes one optimizer step. Labels are never used.

The merged vector written to disk is τm = Σt λt,l τt,l (so the pipeline
evaluates it at α = 1, grid ``fixed1``), plus one ``merge_coefficients.<key>``
tensor [T] per key holding the learned (clamped) λ of that key; the evaluator
ignores those keys (see ``mergelab.methods.base.COEFFICIENT_PREFIX``). The same
numbers go into the merge JSON (``aux``). See ``docs/data_based.md``.

The module also holds the shared machinery of entropy-based coefficient
learning (functional forward over the θ0 encoder, batch sampling, the training
loop with hooks) that ``mda_am`` (MDA Algorithm 2) extends.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

from ..lazy import torch
from .base import (COEFFICIENT_PREFIX, AnyOf, Choice, Flag, Interval, MergeContext, MergeMethod,
                   MethodConfigError, Name, Number, Param, TaskVectorSource, optional, param_error)


#: ``init`` value: start λ at another method instance's validated α (its eval JSON)
FROM_METHOD = "from_method"


def softmax_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy of softmax(logits) per row."""
    return -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)


class FunctionalEncoder:
    """Calls an image encoder with some of its weights replaced by given tensors
    (``torch.func.functional_call``), so gradients flow into those tensors.

    Task-vector keys are the encoder's ``weights()`` keys: for ``OpenClipEncoder``
    (``visual.*``) they are also its module paths; for ``HFClipEncoder`` the
    module path carries the ``model.`` prefix. The mapping is found once.
    """

    def __init__(self, encoder: torch.nn.Module, keys: Iterable[str]):
        self.encoder = encoder
        own = set(dict(encoder.named_parameters()).keys()) | set(dict(encoder.named_buffers()).keys())
        self.names: dict[str, str] = {}
        for k in keys:
            if k in own:
                self.names[k] = k
            elif f"model.{k}" in own:
                self.names[k] = f"model.{k}"
            else:
                raise MethodConfigError(f"task-vector key '{k}' is not a weight of the image encoder")

    def __call__(self, weights: Mapping[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        named = {self.names[k]: v for k, v in weights.items()}
        return torch.func.functional_call(self.encoder, named, (images,))


def get_evaluator(ctx: MergeContext, name: str):
    ev = ctx.extras.get("evaluator")
    if ev is None:
        raise MethodConfigError(f"method '{name}' learns on unlabeled images and needs the "
                                "merge to be given data (pretrained weights, datasets, heads)")
    return ev


class EntropyMerging(MergeMethod):
    """Shared loop: learn coefficients λ [T, G] over stacked per-task vectors by
    minimising the entropy of every task head on unlabeled images.

    Subclasses may override :meth:`task_vectors` (what the coefficients scale),
    :meth:`setup` / :meth:`extra_parameters` / :meth:`task_loss` (extra learned
    quantities and loss terms) and :meth:`extra_outputs`.
    """

    alpha_grid = "fixed1"
    needs_data = True
    regimes = ("full", "lora")
    parameters = (
        # layer: one λ per task and key; task: one λ per task
        Param("granularity", "layer", Choice(("layer", "task"))),
        Param("steps", 500, Number(low=0, integer=True)),
        Param("batch_size", 16, Number(low=1, integer=True)),
        # the original takes two batches per task per step
        Param("batches_per_step", 2, Number(low=0, integer=True)),
        Param("lr", 1.0e-3, Number(low=0, low_open=True)),
        # a number, or "from_method": the validated α of init_method
        Param("init", 0.3, AnyOf((Number(), Choice((FROM_METHOD,))))),
        # method instance whose eval JSON gives λ's start (from_method)
        Param("init_method", None, optional(Name())),
        # clamp λ to clamp_range in every forward (as the original)
        Param("clamp", True, Flag()),
        Param("clamp_range", (0.0, 1.0), Interval(), convert=lambda r: (float(r[0]), float(r[1]))),
        # the unlabeled images (AdaMerging: test; labels never read)
        Param("split", "test", Choice(("test", "validation", "train"))),
    )

    def validate(self) -> None:
        """init: from_method needs init_method; a numeric init must lie in the clamp range."""
        p = self.params
        if p["init"] == FROM_METHOD:
            if p["init_method"] is None:
                raise param_error(self.name, "init_method", None,
                                  f"with init: {FROM_METHOD}, the method instance whose "
                                  "validated α starts λ")
            return
        self.check_init_in_range(float(p["init"]))

    def check_init_in_range(self, value: float) -> None:
        """The clamp range must contain λ's start, or the first forward would move it."""
        lo, hi = self.params["clamp_range"]
        if self.params["clamp"] and not lo <= value <= hi:
            raise param_error(self.name, "init", value,
                              f"a start inside clamp_range [{lo}, {hi}] (or widen clamp_range)")

    def initial_lambda(self, ctx: MergeContext) -> float:
        """λ's start: the number ``init``, or the validated α the pipeline passed in
        ``ctx.extras['init_alpha']`` (from ``init_method``'s eval JSON) for ``init: from_method``."""
        p = self.params
        if p["init"] != FROM_METHOD:
            return float(p["init"])
        if "init_alpha" not in ctx.extras:
            raise MethodConfigError(
                f"method '{self.name}': init: {FROM_METHOD} needs the validated α of method "
                f"instance '{p['init_method']}' (the merge rule passes its eval JSON, --init-from)")
        value = float(ctx.extras["init_alpha"])
        self.check_init_in_range(value)
        return value

    # -- hooks ---------------------------------------------------------------
    def task_vectors(self, store: TaskVectorSource, ctx: MergeContext, progress) -> dict[str, torch.Tensor]:
        """key -> stacked per-task vectors [T, *shape] (float32) that λ scales."""
        return {k: torch.stack([t.float() for t in store.get(k)]) for k in progress(store.keys())}

    def setup(self, ev, ctx: MergeContext, dev: torch.device) -> None:
        """Prepare extra state before the loop (after heads are on ``dev``)."""

    def extra_parameters(self) -> list[dict[str, Any]]:
        """Extra Adam parameter groups."""
        return []

    def task_loss(self, t: int, features: torch.Tensor, head, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        logits = head.logits(features.float())
        ent = softmax_entropy(logits).mean()
        return ent, {"entropy": float(ent.detach())}

    def extra_outputs(self, ctx: MergeContext) -> dict[str, torch.Tensor]:
        return {}

    # -- the loop --------------------------------------------------------------
    def coefficients(self, raw: torch.Tensor) -> torch.Tensor:
        lo, hi = self.params["clamp_range"]
        return raw.clamp(lo, hi) if self.params["clamp"] else raw

    def merge(self, store: TaskVectorSource, ctx: MergeContext,
              progress: Callable[[Iterable], Iterable] = lambda x: x) -> dict[str, torch.Tensor]:
        from ..models import normalize_images  # nn.Module subclasses: not at parse time
        p = self.params
        init = self.initial_lambda(ctx)
        ev = get_evaluator(ctx, self.name)
        dev = ev.dev
        n_tasks = len(ctx.tasks)
        stacked = {k: v.to(dev) for k, v in self.task_vectors(store, ctx, progress).items()}
        keys = list(stacked)
        if any(v.shape[0] != n_tasks for v in stacked.values()):
            raise MethodConfigError(f"method '{self.name}': {n_tasks} tasks but task vectors "
                                    f"of another count")
        groups = {k: (i if p["granularity"] == "layer" else 0) for i, k in enumerate(keys)}
        n_groups = len(keys) if p["granularity"] == "layer" else 1
        theta0 = {k: ev.theta0[k].to(dev).float() for k in keys}
        fenc = FunctionalEncoder(ev.encoder, keys)
        ev.encoder.eval()
        for prm in ev.encoder.parameters():
            prm.requires_grad_(False)
        self.heads = [h.to(dev) for h in ev.heads]
        # images only: the loop never asks for labels
        images = [ev.images(i, p["split"]) for i in range(n_tasks)]
        self.setup(ev, ctx, dev)

        raw = torch.nn.Parameter(torch.full((n_tasks, n_groups), init, device=dev))
        opt = torch.optim.Adam([{"params": [raw], "lr": float(p["lr"])}] + self.extra_parameters(),
                               lr=float(p["lr"]), betas=(0.9, 0.999), weight_decay=0.0)
        gen = torch.Generator().manual_seed(int(ctx.seed))
        group_idx = {k: torch.tensor(groups[k], device=dev) for k in keys}
        history: list[dict[str, float]] = []
        n_per_step = p["batch_size"] * p["batches_per_step"]
        for step in progress(range(p["steps"])):
            lam = self.coefficients(raw)
            weights = {k: theta0[k] + torch.tensordot(lam[:, group_idx[k]], stacked[k], dims=1)
                       for k in keys}
            total = torch.zeros((), device=dev)
            logs: dict[str, float] = {}
            for t in range(n_tasks):
                n = len(images[t])
                order = torch.randperm(n, generator=gen)[:min(n, n_per_step)]
                for b in range(0, len(order), p["batch_size"]):
                    x = normalize_images(images[t][order[b:b + p["batch_size"]]], dev)
                    feats = fenc(weights, x)
                    loss, parts = self.task_loss(t, feats, self.heads[t], step)
                    total = total + loss
                    for name, v in parts.items():
                        logs[name] = logs.get(name, 0.0) + v
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            logs["loss"] = float(total.detach())
            history.append(logs)
            self.after_step(step)

        with torch.no_grad():
            lam = self.coefficients(raw).detach()
            out: dict[str, torch.Tensor] = {}
            for k in keys:
                out[k] = torch.tensordot(lam[:, groups[k]], stacked[k], dims=1).cpu()
                out[COEFFICIENT_PREFIX + k] = lam[:, groups[k]].float().cpu().clone()
            out.update(self.extra_outputs(ctx))
        ctx.aux["coefficients"] = {
            "granularity": p["granularity"], "tasks": list(ctx.tasks),
            "groups": keys if p["granularity"] == "layer" else ["all"],
            "lambda": lam.cpu().tolist(),
        }
        ctx.aux["init"] = {"lambda": init, "from_method": p["init_method"]
                           if p["init"] == FROM_METHOD else None}
        ctx.aux["history"] = history
        ctx.aux["unlabeled_split"] = p["split"]
        return out

    def after_step(self, step: int) -> None:
        """Called after each optimizer step."""


class AdaMerging(EntropyMerging):
    """Layer-wise (default) or task-wise AdaMerging."""

    name = "adamerging"
    display_name = "AdaMerging"

    @classmethod
    def label(cls, params: Mapping[str, Any] | None = None) -> str:
        granularity = cls.completed(params)["granularity"]
        return f"AdaMerging ({granularity})"


def rebuild(coefficients: Mapping[str, torch.Tensor], taus: Sequence[Mapping[str, torch.Tensor]]
            ) -> dict[str, torch.Tensor]:
    """τm = Σt λt τt from saved ``merge_coefficients.<key>`` tensors and the task vectors."""
    out = {}
    for k, lam in coefficients.items():
        if k.startswith(COEFFICIENT_PREFIX):
            key = k[len(COEFFICIENT_PREFIX):]
            out[key] = sum(float(lam[t]) * taus[t][key].float() for t in range(len(taus)))
    return out
