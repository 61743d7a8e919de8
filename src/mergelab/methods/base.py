"""The merge-method interface.

A method turns the task vectors of T tasks into one merged vector τm (independent
of the scaling coefficient α; the pipeline chooses α afterwards on validation).
Most methods work one state-dict key at a time: they implement ``merge_key`` and
the runner streams keys from memory-mapped safetensors, so peak memory stays
near one task vector whatever T is. Methods that need the whole model or data
(TALL masks, AdaMerging) override ``merge``.

Adding a method = one module defining a subclass (its ``parameters``: one ``Param`` per
hyperparameter, with the values it accepts and its default; its ``display_name``) + one
line in ``mergelab.methods.REGISTRY``. The base class checks every parameter against its
declaration, with one error format (``MethodConfigError``).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

from ..lazy import torch
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
    """A method was given an unknown or invalid hyperparameter; ``param`` names it (the
    config check reports ``methods.<instance>.params.<param>``)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def param_error(method: str, param: str, value: Any, allowed: str) -> MethodConfigError:
    """The one error format of a bad hyperparameter: method, parameter, value, what is allowed."""
    return MethodConfigError(f"method '{method}': parameter '{param}' got {value!r}; "
                             f"allowed: {allowed}", param=param)


# -- declared hyperparameters -------------------------------------------------
# A check is ``accepts(value) -> bool`` plus ``allowed`` (what an error says is allowed);
# ``convert`` normalises an accepted value (e.g. a YAML list to a sorted tuple).

def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '≥'} {low:g}"
    return "" if high is None else f"{'<' if high_open else '≤'} {high:g}"


@dataclass(frozen=True)
class Number:
    """A number (an integer with ``integer=True``; never a bool) in an optional interval."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def accepts(self, value: Any) -> bool:
        if not _is_number(value) or (self.integer and not isinstance(value, int)):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    @property
    def allowed(self) -> str:
        what = "an integer" if self.integer else "a number"
        bounds = _interval(self.low, self.high, self.low_open, self.high_open)
        if self.low is not None and self.high is not None:
            return f"{what} in {bounds}"
        return f"{what} {bounds}".rstrip()


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of values."""

    values: tuple[Any, ...]

    def accepts(self, value: Any) -> bool:
        return any(value == v and type(value) is type(v) for v in self.values)

    @property
    def allowed(self) -> str:
        return "one of " + ", ".join(map(repr, self.values))


@dataclass(frozen=True)
class Flag:
    """true or false."""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)

    allowed = "true or false"


@dataclass(frozen=True)
class Name:
    """A non-empty string (e.g. a method instance)."""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and bool(value)

    allowed = "a non-empty name"


@dataclass(frozen=True)
class Numbers:
    """A list of ``min_length``..``max_length`` numbers, each accepted by ``item``."""

    item: Number
    min_length: int = 1
    max_length: int | None = None

    def accepts(self, value: Any) -> bool:
        if not isinstance(value, (list, tuple)) or len(value) < self.min_length:
            return False
        if self.max_length is not None and len(value) > self.max_length:
            return False
        return all(self.item.accepts(x) for x in value)

    @property
    def allowed(self) -> str:
        n = (f"{self.min_length}" if self.max_length == self.min_length
             else f"{self.min_length}..{self.max_length if self.max_length is not None else ''}")
        return f"a list of {n} numbers, each {self.item.allowed.removeprefix('a number ')}"


@dataclass(frozen=True)
class Interval:
    """[low, high]: two numbers with low < high."""

    def accepts(self, value: Any) -> bool:
        return (isinstance(value, (list, tuple)) and len(value) == 2
                and all(_is_number(x) for x in value) and value[0] < value[1])

    allowed = "[low, high]: two numbers with low < high"


@dataclass(frozen=True)
class AnyOf:
    """A value accepted by any of ``checks``."""

    checks: tuple[Any, ...]

    def accepts(self, value: Any) -> bool:
        return any(c.accepts(value) for c in self.checks)

    @property
    def allowed(self) -> str:
        return " or ".join(c.allowed for c in self.checks)


@dataclass(frozen=True)
class Null:
    """None (YAML null)."""

    def accepts(self, value: Any) -> bool:
        return value is None

    allowed = "null"


def optional(check: Any) -> AnyOf:
    """None or a value ``check`` accepts."""
    return AnyOf((Null(), check))


@dataclass(frozen=True)
class Param:
    """One declared hyperparameter: name, default, the values it accepts, and an optional
    conversion of an accepted value (applied to the default too)."""

    name: str
    default: Any
    accepts: Any
    convert: Callable[[Any], Any] | None = None

    def checked(self, method: str, value: Any) -> Any:
        """``value`` converted, or the one error naming method, parameter, value, allowed."""
        if not self.accepts.accepts(value):
            raise param_error(method, self.name, value, self.accepts.allowed)
        return value if self.convert is None else self.convert(value)


def overriding(params: Sequence[Param], **defaults: Any) -> tuple[Param, ...]:
    """``params`` with some defaults replaced, in the same order (a subclass's declaration)."""
    unknown = set(defaults) - {p.name for p in params}
    if unknown:
        raise TypeError(f"overriding: no declared parameter(s) {sorted(unknown)}")
    return tuple(replace(p, default=defaults[p.name]) if p.name in defaults else p for p in params)


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
    #: the method's name in tables and figures (``label`` may qualify it by parameters)
    display_name: ClassVar[str] = ""
    #: which fine-tuning regimes the method supports
    regimes: ClassVar[tuple[str, ...]] = ("full", "lora")
    #: name of the α grid in ALPHA_GRIDS
    alpha_grid: ClassVar[str] = "ta"
    #: the hyperparameters (``Param``: default, accepted values); ``__init__`` rejects anything
    #: else. Their order is the order of ``params`` (and of the merge JSON's params).
    parameters: ClassVar[tuple[Param, ...]] = ()
    #: name -> default, derived from ``parameters``
    defaults: ClassVar[Mapping[str, Any]] = {}
    #: True when ``merge`` needs ``ctx.evaluate`` / data (validation or unlabeled test images)
    needs_data: ClassVar[bool] = False
    #: True when the method's large keys start from the suite's shared top-k triplets and
    #: polar factors (``mergelab.basis``; TSV-M, DC-Merge, MDA, MDA AM)
    shared_basis: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names = [p.name for p in cls.parameters]
        if len(set(names)) != len(names):
            raise TypeError(f"{cls.__name__}: a parameter is declared twice: {names}")
        cls.defaults = {p.name: p.default for p in cls.parameters}
        for p in cls.parameters:  # a declaration must accept its own default
            p.checked(cls.name or cls.__name__, p.default)

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise param_error(self.name, unknown[0], params[unknown[0]],
                              f"the declared parameters {', '.join(self.defaults) or '(none)'}")
        self.params = {p.name: p.checked(self.name, params.get(p.name, p.default))
                       for p in self.parameters}
        self.validate()

    def validate(self) -> None:
        """Relations between parameters that the declarations cannot say (rare); raise
        ``param_error`` naming the parameter."""

    @classmethod
    def label(cls, params: Mapping[str, Any] | None = None) -> str:
        """The display name of an instance with ``params`` (default: ``display_name``)."""
        return cls.display_name or cls.name

    @classmethod
    def completed(cls, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """``params`` with the defaults of the parameters it leaves out (for ``label``)."""
        return {**cls.defaults, **(params or {})}

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
