"""The protocol's split rules: ``full`` (a seeded random 10 % of train, at most 5,000, is
validation) and ``lora`` (the KnOTS rules: validation from the test split, or the source's own)."""
from __future__ import annotations

from .tasks import PaperDataError, canonical_task


# KnOTS (LoRA) protocol
LORA_VAL_FROM_TEST = frozenset({"Cars", "GTSRB", "MNIST", "SUN397", "SVHN"})
LORA_OWN_VAL = frozenset({"DTD", "EuroSAT", "RESISC45"})
LORA_VAL_FRACTION = 0.2
FULL_VAL_FRACTION = 0.1
FULL_VAL_CAP = 5000


def full_split_indices(n: int, seed: int = 0, fraction: float = FULL_VAL_FRACTION,
                       cap: int = FULL_VAL_CAP) -> tuple[list[int], list[int]]:
    """(train, validation) indices: ``torch.utils.data.random_split`` with lengths
    ``[n - n_val, n_val]``, ``n_val = min(int(n * fraction), cap)``, generator seed ``seed``."""
    import torch

    n_val = min(int(n * fraction), cap)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return perm[: n - n_val], perm[n - n_val:]


def test_split_indices(n: int, seed: int = 0,
                       fraction: float = LORA_VAL_FRACTION) -> tuple[list[int], list[int]]:
    """(validation, test) indices: the first ``int(n * fraction)`` of a seeded permutation
    are validation, the rest test (the KnOTS rule when its index file does not apply)."""
    import torch

    n_val = int(n * fraction)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return perm[:n_val], perm[n_val:]


def split_rule(task: str, protocol: str) -> str:
    name = canonical_task(task) or task
    if protocol == "lora":
        if name in LORA_VAL_FROM_TEST:
            return "lora_test20"
        if name in LORA_OWN_VAL:
            return "own_validation"
    elif protocol != "full":
        raise PaperDataError(f"task '{task}': unknown split_protocol {protocol!r} (full|lora)")
    return "full_train10"


def lora_validation(task: str, n: int, s_test: str, seed: int,
                     notes: list[str]) -> tuple[list[int], list[int], str]:
    """(validation, test, description) of the LoRA rule: the KnOTS index file when it indexes
    a test split of this size, else a seeded permutation (with a note saying why)."""
    from ..knots_index import KNOTS_TEST_SIZES, knots_split

    name = canonical_task(task) or task
    fixed = knots_split(name, n, LORA_VAL_FRACTION)
    if fixed is not None:
        val_idx, test_idx = fixed
        return val_idx, test_idx, (
            f"{LORA_VAL_FRACTION:.0%} of the test split '{s_test}' (first {len(val_idx)} of "
            f"the KnOTS index file knots_splits/{name}.npy); test = the rest")
    if name in KNOTS_TEST_SIZES:
        notes.append(f"test split '{s_test}' has {n} images but the KnOTS index file indexes "
                     f"{KNOTS_TEST_SIZES[name]}: used a permutation seeded {seed} instead")
    val_idx, test_idx = test_split_indices(n, seed)
    return val_idx, test_idx, (f"{LORA_VAL_FRACTION:.0%} of the test split '{s_test}' (first "
                               f"{len(val_idx)} of a permutation seeded {seed}); test = the rest")
