"""Weight-disentanglement error (mergelab.disentangle) on models whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mergelab.disentangle import combine, disagreement, disentanglement_errors

X = torch.linspace(-1, 1, 50)  # every task's "images": 50 scalars


def linear_model(read):
    """Task i predicts 1 where x · w_i > 0.1 (else 0), with w_i = 1 + Σ of the keys it reads."""
    def predict(tau, indices):
        tau = tau or {}
        out = []
        for i in indices:
            w = 1.0 + sum(float(tau[k]) for k in read[i] if k in tau)
            out.append((X * w > 0.1).numpy().astype(np.int64))
        return out
    return predict


def test_combine_sums_over_the_union_of_keys():
    a = {"x": torch.tensor(1.0), "y": torch.tensor(2.0)}
    b = {"y": torch.tensor(3.0), "z": torch.tensor(-1.0)}
    c = combine([(0.5, a), (2.0, b)])
    assert {k: float(v) for k, v in c.items()} == {"x": 0.5, "y": 7.0, "z": -2.0}


def test_disagreement_is_the_share_of_changed_predictions():
    assert disagreement(np.array([0, 1, 2, 3]), np.array([0, 1, 0, 0])) == 0.5
    with pytest.raises(ValueError, match="different lengths"):
        disagreement(np.zeros(3), np.zeros(4))


def test_vectors_on_disjoint_weights_are_perfectly_disentangled():
    taus = [{"k0": torch.tensor(-3.0)}, {"k1": torch.tensor(-3.0)}, {"k2": torch.tensor(2.0)}]
    res = disentanglement_errors(linear_model({0: ["k0"], 1: ["k1"], 2: ["k2"]}), taus, ["a", "b", "c"])
    assert res["mean"] == 0.0
    assert set(res["pairs"]) == {"a|b", "a|c", "b|c"}
    assert all(v == 0.0 for errs in res["pairs"].values() for v in errs.values())


def test_a_shared_weight_gives_the_computed_error():
    # both tasks read the shared weight; τ0 = +0, τ1 flips the sign of w at α = 1 (w = 1 − 2 = −1)
    taus = [{"s": torch.tensor(0.0)}, {"s": torch.tensor(-2.0)}]
    read = {0: ["s"], 1: ["s"]}
    res = disentanglement_errors(linear_model(read), taus, ["a", "b"], alphas=[1.0])
    # task a alone: w = 1, predicts x > 0.1; with τ1: w = −1, predicts x < −0.1.
    # task b alone and together: w = −1 (τ0 adds nothing): no change on b.
    alone = (X > 0.1).numpy()
    both = (-X > 0.1).numpy()
    expected = 0.5 * (np.mean(alone != both) + 0.0)
    assert res["pairs"]["a|b"]["1,1"] == pytest.approx(expected)
    assert res["mean"] == pytest.approx(expected) and res["mean_by_alpha"]["1"] == pytest.approx(expected)


def test_errors_grow_with_the_coefficient_of_an_interfering_vector():
    taus = [{"s": torch.tensor(0.0)}, {"s": torch.tensor(-2.0)}]
    res = disentanglement_errors(linear_model({0: ["s"], 1: ["s"]}), taus, ["a", "b"], alphas=[0.25, 1.0])
    errs = res["pairs"]["a|b"]
    assert errs["1,0.25"] < errs["1,1"] and errs["0.25,0.25"] <= errs["0.25,1"]


def test_needs_two_tasks_and_one_vector_per_task():
    model = linear_model({0: []})
    with pytest.raises(ValueError, match="at least two tasks"):
        disentanglement_errors(model, [{}], ["a"])
    with pytest.raises(ValueError, match="2 task vectors for 3 tasks"):
        disentanglement_errors(model, [{}, {}], ["a", "b", "c"])
