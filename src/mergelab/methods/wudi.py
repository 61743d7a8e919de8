"""WUDI merging (Cheng et al., ICML 2025): "Whoever started the interference should end it".

Per linear weight of the attention and MLP blocks, start from X = Στ and run
Adam on ``L(X) = Σt ‖(X − τt) τtᵀ‖²_F / ‖τt‖²_F`` (lr 1e-5, 300 iterations).
Read from the public code (``nathanielyvo/WUDI-Merging`` ``wudi_main.py``, the DC-Merge
code ``Tobeginwith/DC-Merge`` ``vision_fft_merge/src/utils/DC_utils.py::wudi_merge`` and
FusionBench ``method/wudi/wudi.py``): Adam(lr=1e-5, weight_decay=0), 300 iterations, the
loss is the *sum* over tasks and entries of the squared products, each task divided by its
squared Frobenius norm, initialised with the sum. Optimised keys: ``attn.in_proj_weight``,
``attn.out_proj.weight``, ``mlp.c_fc.weight``, ``mlp.c_proj.weight`` (open_clip names, the
four linear key types of both codes), plus the Hugging Face CLIP names of the same
projections for LoRA task vectors (the DC-Merge LoRA code optimises every adapted module).

Every other key (embeddings, norms, biases, the patch convolution), ``other_keys``:

* ``mean`` (default) — **the DC-Merge code's variant**, the one the DC-Merge paper's WUDI
  rows come from: the mean of the task vectors (FusionBench averages them too);
* ``zero`` — **the official WUDI code's variant**: ``wudi_main.py`` builds its merged task
  vector from the four linear key types only and ``TaskVector.apply_to`` skips the keys it
  lacks, so those weights stay at θ0 (τm = 0 there).

The gradient is computed in closed form, ∇L = 2 (X G − C) with
G = Σt τtᵀτt/‖τt‖² and C = Σt τt τtᵀ τt/‖τt‖², precomputed once: the same
Adam trajectory as autograd on the loss, at one (d_out × d_in × d_in) matmul
per step instead of T products of size d_out × d_out × d_in.
"""
from __future__ import annotations

from typing import Sequence

from ..lazy import torch
from .base import Choice, KeyInfo, MergeMethod, Number, Param, vector_mean

#: suffixes of the keys WUDI optimises (open_clip and Hugging Face CLIP names)
WUDI_SUFFIXES = (
    "attn.in_proj_weight", "attn.out_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight",
    "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
    "self_attn.out_proj.weight", "mlp.fc1.weight", "mlp.fc2.weight",
)

#: what the keys WUDI does not optimise become: DC-Merge code (mean) or official WUDI (zero)
OTHER_KEYS = ("mean", "zero")


def is_wudi_key(key: str, shape: Sequence[int]) -> bool:
    return len(shape) == 2 and key.endswith(WUDI_SUFFIXES)


def wudi_objective(x: torch.Tensor, taus: Sequence[torch.Tensor]) -> torch.Tensor:
    """Σt ‖(x − τt) τtᵀ‖²_F / ‖τt‖²_F (tasks with a zero vector contribute 0)."""
    total = x.new_zeros((), dtype=torch.float64)
    for t in taus:
        t = t.to(x.dtype)
        n = t.pow(2).sum()
        if n == 0:
            continue
        total = total + (((x - t) @ t.T).pow(2).sum() / n).double()
    return total


def wudi_optimize(taus: Sequence[torch.Tensor], lr: float = 1e-5, steps: int = 300) -> torch.Tensor:
    """Adam on the WUDI objective from Στ; returns the optimised merged matrix."""
    stack = [t.float() for t in taus]
    x0 = torch.stack(stack).sum(dim=0)
    if steps == 0:
        return x0
    d_in = x0.shape[1]
    gram = torch.zeros(d_in, d_in, dtype=x0.dtype, device=x0.device)
    cross = torch.zeros_like(x0)
    for t in stack:
        n = t.pow(2).sum()
        if n == 0:
            continue
        tt = t.T @ t
        gram += tt / n
        cross += (t @ tt) / n
    x = torch.nn.Parameter(x0.clone())
    opt = torch.optim.Adam([x], lr=lr, weight_decay=0)
    for _ in range(steps):
        with torch.no_grad():
            x.grad = 2.0 * (x @ gram - cross)
        opt.step()
    return x.detach()


class Wudi(MergeMethod):
    name = "wudi"
    display_name = "WUDI"
    alpha_grid = "svd"
    parameters = (
        Param("lr", 1e-5, Number(low=0, low_open=True)),
        Param("steps", 300, Number(low=0, integer=True)),
        Param("other_keys", "mean", Choice(OTHER_KEYS)),
    )

    def merge_key(self, taus: Sequence[torch.Tensor], info: KeyInfo) -> torch.Tensor:
        if not is_wudi_key(info.key, taus[0].shape):
            if self.params["other_keys"] == "zero":
                return torch.zeros_like(taus[0], dtype=torch.float32)
            return vector_mean(taus)
        return wudi_optimize(taus, lr=float(self.params["lr"]), steps=self.params["steps"])
