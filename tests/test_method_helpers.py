"""The helpers the merge methods share (methods/base.py, methods/linalg.py) against
independent numpy implementations written here, compared bit for bit: on integer-valued
inputs every sum is exact, so any change of formula (not of summation order) shows."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mergelab.methods.base import KeyInfo, disjoint_mean, top_count_mask, topk_mask, vector_mean
from mergelab.methods.linalg import FAST_MIN_R, per_task_rank, task_triplets, top_svd, use_fast


def _stack(seed: int, shape=(5, 7, 9)) -> torch.Tensor:
    """Integer-valued entries in [-3, 3]: many zeros, ties and zero sums."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-3, 4, shape, generator=g).float()


def np_disjoint_mean(stack: np.ndarray, zero_sum: str) -> np.ndarray:
    total = stack.sum(axis=0)
    elected = np.sign(total)
    if zero_sum == "majority":
        majority = np.sign(elected.sum()) or 1.0
        elected = np.where(elected == 0, majority, elected)
    out = np.zeros(total.shape, dtype=stack.dtype)
    for idx in np.ndindex(total.shape):
        col = stack[(slice(None),) + idx]
        chosen = col[(np.sign(col) == elected[idx]) & (col != 0)]
        if chosen.size and not (zero_sum == "zero" and total[idx] == 0):
            out[idx] = chosen.sum() / chosen.size
    return out


@pytest.mark.parametrize("zero_sum", ["majority", "zero"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_disjoint_mean_matches_numpy(seed, zero_sum):
    st = _stack(seed)
    assert (st.sum(0) == 0).any()  # the case where the two conventions differ
    got = disjoint_mean(st, zero_sum=zero_sum).numpy()
    assert np.array_equal(got, np_disjoint_mean(st.numpy(), zero_sum))


def test_disjoint_mean_conventions_differ_only_where_the_sum_is_zero():
    st = _stack(3)
    a, b = disjoint_mean(st), disjoint_mean(st, zero_sum="zero")
    zero = st.sum(0) == 0
    assert torch.equal(a[~zero], b[~zero]) and (b[zero] == 0).all() and (a[zero] != 0).any()
    with pytest.raises(ValueError, match="zero_sum"):
        disjoint_mean(st, zero_sum="none")


def np_top_count_mask(t: np.ndarray, count: int) -> np.ndarray:
    mags = np.abs(t).ravel()
    if count >= mags.size:
        return np.ones(t.shape, dtype=bool)
    return np.abs(t) >= np.sort(mags)[::-1][count - 1]


@pytest.mark.parametrize("count", [1, 5, 17, 62, 63, 100])
def test_top_count_mask_matches_numpy(count):
    t = _stack(4, (1, 7, 9))[0]
    got = top_count_mask(t, count)
    assert got.dtype == torch.bool
    assert np.array_equal(got.numpy(), np_top_count_mask(t.numpy(), count))
    assert int(got.sum()) >= min(count, t.numel())  # ties at the threshold are kept


@pytest.mark.parametrize("fraction", [0.001, 0.1, 0.25, 0.5, 1.0])
def test_topk_mask_is_the_count_mask_of_the_rounded_fraction(fraction):
    t = _stack(5, (1, 11, 13))[0]
    count = max(1, int(round(t.numel() * fraction)))
    assert np.array_equal(topk_mask(t, fraction).numpy(), np_top_count_mask(t.numpy(), count))


def test_vector_mean_is_the_float32_mean():
    # quarters, four tasks: the sum and the division by 4 are exact in float32
    taus = [(_stack(s, (1, 6, 4))[0] / 4).to(torch.float64) for s in range(4)]
    got = vector_mean(taus)
    assert got.dtype == torch.float32
    want = np.stack([t.numpy().astype(np.float32) for t in taus]).sum(0) / np.float32(4)
    assert np.array_equal(got.numpy(), want.astype(np.float32))


def _info(regime: str, lora_rank=None) -> KeyInfo:
    return KeyInfo(key="w", regime=regime, n_tasks=3, seed=0, is_matrix=True, lora_rank=lora_rank)


def test_per_task_rank_and_route():
    assert per_task_rank(_info("full"), 100, 8) == 12
    assert per_task_rank(_info("lora", 4), 100, 8) == 4
    assert per_task_rank(_info("lora", 16), 100, 8) == 12
    assert per_task_rank(_info("lora", None), 100, 8) == 12
    assert use_fast((FAST_MIN_R, FAST_MIN_R + 1), exact=False)
    assert not use_fast((FAST_MIN_R, FAST_MIN_R + 1), exact=True)
    assert not use_fast((FAST_MIN_R - 1, 4 * FAST_MIN_R), exact=False)


def test_task_triplets_are_each_tasks_top_svd():
    g = torch.Generator().manual_seed(6)
    taus = [torch.randn(30, 20, generator=g) for _ in range(3)]
    Us, Ss, Vs = task_triplets(taus, 4)
    for t, U, S, V in zip(taus, Us, Ss, Vs):
        u, s, v = top_svd(t, 4)
        assert torch.equal(U, u) and torch.equal(S, s) and torch.equal(V, v)
        assert torch.allclose(S, torch.linalg.svdvals(t.double())[:4], rtol=1e-12)
