"""The merge-method interface.

A method turns the task vectors of T tasks into one merged vector τm (independent
of the scaling coefficient α; the pipeline chooses α afterwards on validation).
Most methods work one state-dict key at a time: they implement ``merge_key`` and
the runner streams keys from memory-mapped safetensors, so peak memory stays
near one task vector whatever T is. Methods that need the whole model or data
(TALL masks, AdaMerging) override ``merge``.

Adding a method = one module defining a subclass + one line in
``mergelab.methods.REGISTRY``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

import torch

from ..taskvectors import TaskVectorSource

#: α grids of the spec (methods.md), by name.
ALPHA_GRIDS: dict[str, list[float]] = {
    "fixed1": [1.0],
    # 1/30 … 1: linspace(0, 1, 31) without 0
    "ta": [round(i / 30, 10) for i in range(1, 31)],
    # 0.1 … 3.0 step 0.1
    "svd": [round(0.1 * i, 10) for i in range(1, 31)],
}


#: prefixes of the non-weight tensors a data-based merge writes beside τm: AdaMerging's
#: and MDA AM's learned coefficients, MDA AM's feature rotations (``evaluate.split_merged``)
COEFFICIENT_PREFIX = "merge_coefficients."
ROTATION_PREFIX = "feature_rotation."


class MethodConfigError(ValueError):
    """A method was given an unknown or invalid hyperparameter."""


@dataclass(frozen=True)
class KeyInfo:
    """What a per-key method knows about the tensor it merges."""

    key: str
    regime: str              # "full" or "lora"
    n_tasks: int
    seed: int                # deterministic per (run seed, key)
    is_matrix: bool          # a 2-D weight (methods.md "matrix key")
    lora_rank: int | None = None   # LoRA rank of the adapters (regime "lora" only)
    #: the suite's shared ``linalg.KeyBasis`` of this key (top-k triplets + polar factors),
    #: when the merge was given one (``mergelab.basis``) and the key has one
    basis: Any = None

    def generator(self, device: torch.device | str = "cpu") -> torch.Generator:
        g = torch.Generator(device=device)
        g.manual_seed(self.seed)
        return g


def key_seed(seed: int, key: str) -> int:
    """A stable 63-bit seed for one key (independent of key order and Python hashing)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def is_matrix_key(key: str, shape: Sequence[int]) -> bool:
    """methods.md: 2-D weights of the image encoder are matrix keys; the rest are vector keys."""
    return len(shape) == 2 and "text_projection" not in key


@dataclass
class MergeContext:
    """Everything beyond the task vectors that a whole-model method may use."""

    regime: str
    tasks: list[str]
    seed: int = 0
    lora_rank: int | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    #: callable(task_index, tau: dict[str, Tensor], alpha, split) -> accuracy in [0, 1];
    #: only present when the merge rule was given data (methods with ``needs_data``).
    evaluate: Callable[..., float] | None = None
    #: extra payload a data-based method may need (model builders, unlabeled loaders)
    extras: dict[str, Any] = field(default_factory=dict)
    #: where a method may write side outputs (chosen per-task λ, learned coefficients)
    aux: dict[str, Any] = field(default_factory=dict)
    #: the suite's shared bases (``mergelab.basis.BasisSource``), for methods with
    #: ``shared_basis``; None: every method computes its own
    basis: Any = None

    def basis_of(self, key: str):
        """The shared ``KeyBasis`` of ``key`` (on ``device``), or None."""
        return None if self.basis is None else self.basis.get(key)


class MergeMethod:
    """Base class. Subclasses set the class attributes and implement ``merge_key``."""

    #: registry name (set by the subclass)
    name: ClassVar[str] = ""
    #: which fine-tuning regimes the method supports
    regimes: ClassVar[tuple[str, ...]] = ("full", "lora")
    #: name of the α grid in ALPHA_GRIDS
    alpha_grid: ClassVar[str] = "ta"
    #: hyperparameters and their defaults; ``__init__`` rejects anything else
    defaults: ClassVar[Mapping[str, Any]] = {}
    #: True when ``merge`` needs ``ctx.evaluate`` / data (validation or unlabeled test images)
    needs_data: ClassVar[bool] = False
    #: True when the method's large keys start from the suite's shared top-k triplets and
    #: polar factors (``mergelab.basis``; TSV-M, DC-Merge, MDA, MDA AM)
    shared_basis: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise MethodConfigError(
                f"method '{self.name}': unknown hyperparameter(s) {unknown}; "
                f"allowed: {sorted(self.defaults)}")
        self.params = {**self.defaults, **params}
        self.validate()

    def validate(self) -> None:
        """Check ``self.params``; raise MethodConfigError naming the bad one."""

    def uses_shared_basis(self) -> bool:
        """Whether this instance reads the shared basis (``exact: true`` computes its own)."""
        return self.shared_basis and not self.params.get("exact", False)

    # -- per-key path -------------------------------------------------------
    def merge_key(self, taus: Sequence[torch.Tensor], info: KeyInfo) -> torch.Tensor:
        raise NotImplementedError

    # -- whole-model path ---------------------------------------------------
    def merge(self, store: TaskVectorSource, ctx: MergeContext,
              progress: Callable[[Iterable], Iterable] = lambda x: x) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for key in progress(store.keys()):
            taus = [t.to(ctx.device) for t in store.get(key)]
            info = KeyInfo(key=key, regime=ctx.regime, n_tasks=len(taus),
                           seed=key_seed(ctx.seed, key), is_matrix=is_matrix_key(key, taus[0].shape),
                           lora_rank=ctx.lora_rank, basis=ctx.basis_of(key))
            merged = self.merge_key(taus, info)
            if merged.shape != taus[0].shape:
                raise RuntimeError(f"method '{self.name}' returned shape {tuple(merged.shape)} "
                                   f"for key '{key}' of shape {tuple(taus[0].shape)}")
            out[key] = merged.to(dtype=taus[0].dtype, device="cpu")
            del taus
        return out

    @classmethod
    def grid(cls) -> list[float]:
        return list(ALPHA_GRIDS[cls.alpha_grid])


# -- helpers shared by several methods ---------------------------------------

def vector_mean(taus: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean of the task vectors in float32: weight averaging, and how the SVD-family
    methods merge vector keys."""
    return torch.stack([t.float() for t in taus]).mean(dim=0)


def disjoint_mean(stack: torch.Tensor, *, zero_sum: str = "majority") -> torch.Tensor:
    """TIES sign election + disjoint mean over dim 0: the mean of the nonzero entries whose
    sign is the elected one (the sign of the sum), 0 where none is.

    Where the sum is 0 the two codes differ: ``zero_sum="majority"`` (TIES) elects the
    majority sign of the whole tensor there; ``"zero"`` (DC-Merge) returns 0 there.
    """
    if zero_sum not in ("majority", "zero"):
        raise ValueError(f"disjoint_mean: zero_sum must be 'majority' or 'zero', got {zero_sum!r}")
    total = stack.sum(dim=0)
    elected = torch.sign(total)
    if zero_sum == "majority":
        majority = torch.sign(elected.sum())
        if majority == 0:
            majority = torch.ones((), dtype=stack.dtype, device=stack.device)
        elected = torch.where(elected == 0, majority, elected)
    agree = (torch.sign(stack) == elected) & (stack != 0)
    count = agree.sum(dim=0).clamp(min=1)
    mean = (stack * agree).sum(dim=0) / count
    if zero_sum == "zero":
        mean = torch.where(total == 0, torch.zeros_like(mean), mean)
    return mean


def top_count_mask(t: torch.Tensor, count: int) -> torch.Tensor:
    """Boolean mask of the ``count`` largest |entries| of t (ties at the threshold kept;
    all of t when count >= t.numel())."""
    n = t.numel()
    if count >= n:
        return torch.ones_like(t, dtype=torch.bool)
    thresh = torch.kthvalue(t.abs().flatten(), n - count + 1).values
    return t.abs() >= thresh


def topk_mask(t: torch.Tensor, fraction: float) -> torch.Tensor:
    """Boolean mask of the top ``fraction`` entries of |t| (at least one)."""
    return top_count_mask(t, max(1, int(round(t.numel() * fraction))))
