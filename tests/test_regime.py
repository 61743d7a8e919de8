"""The regime report's statistics (src/mergelab/regime.py) on small inputs with known answers."""
import json
import math
import weakref

import pytest
import torch

from mergelab import regime
from mergelab.io import ArtifactError, save_tensors
from mergelab.taskvectors import DictSource, SafetensorsSource


def test_truncate_rank_keeps_r_over_T_triplets():
    g = torch.Generator().manual_seed(0)
    tau = {"w": torch.randn(12, 30, generator=g, dtype=torch.float64), "b": torch.randn(12, dtype=torch.float64)}
    out = regime.truncate_rank(tau, 4)
    assert torch.linalg.matrix_rank(out["w"]).item() == 3  # min(12, 30) // 4
    assert torch.equal(out["b"], tau["b"])  # vectors untouched
    # best rank-3 approximation: the error is the tail of the spectrum (Eckart-Young)
    s = torch.linalg.svdvals(tau["w"])
    assert math.isclose(float(torch.linalg.norm(tau["w"] - out["w"])), float(s[3:].norm()), rel_tol=1e-9)
    assert torch.linalg.matrix_rank(regime.truncate_rank(tau, 100)["w"]).item() == 1  # at least 1


def test_relative_norm_and_cosine():
    theta0 = {"a": torch.full((2, 2), 3.0), "b": torch.full((4,), 1.0)}
    tau = {"a": torch.full((2, 2), 0.3)}
    assert math.isclose(regime.relative_norm(tau, theta0), 0.1, rel_tol=1e-6)  # float32 0.3
    with pytest.raises(KeyError, match="'c'"):
        regime.relative_norm({"c": torch.ones(1)}, theta0)
    with pytest.raises(ValueError, match="all zeros"):  # not a bare ZeroDivisionError
        regime.relative_norm(tau, {"a": torch.zeros(2, 2)})
    x = {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([0.0])}
    y = {"a": torch.tensor([0.0, 2.0]), "b": torch.tensor([0.0])}
    assert regime.flat_cosine(x, y) == 0.0 and math.isclose(regime.flat_cosine(x, x), 1.0)


def _write(path, obj):
    path.write_text(json.dumps(obj))
    return path


def test_statistics_from_a_run(tmp_path):
    tasks = ["a", "b"]
    zs = _write(tmp_path / "zs.json", {"kind": "zeroshot", "regime": "full", "test": {"a": 0.4, "b": 0.6}})
    ind = _write(tmp_path / "ind.json", {"kind": "individual", "regime": "full", "test": {"a": 0.9, "b": 1.0}})
    low = _write(tmp_path / "low.json", {"kind": "lowrank", "regime": "full", "test": {"a": 0.81, "b": 1.0}})
    ta = _write(tmp_path / "ta.json", {"method": "task_arithmetic", "regime": "full", "tasks": tasks,
                                       "alpha": 0.3, "alpha_grid": [0.1, 0.3, 1.0],
                                       "test": {"a": 0.72, "b": 0.8}})
    theta0 = {"w": torch.ones(3, 3)}
    tv = []
    for i, t in enumerate(tasks):
        p = tmp_path / f"{t}.safetensors"
        w = torch.zeros(3, 3)
        w[i, i] = 0.12  # orthogonal task vectors, each 4 % of ‖θ0‖ = 3
        save_tensors({"w": w}, p)
        tv.append(p)
    st = regime.regime_statistics([zs, ind, low, ta], {"full": tv}, theta0, tasks)
    assert math.isclose(st["zeroshot_avg"], 50.0) and math.isclose(st["individual_full_avg"], 95.0)
    assert math.isclose(st["individual_min"], 90.0)
    assert math.isclose(st["tau_norm_max"], 4.0, rel_tol=1e-6)
    assert st["cossim_mean_full"] == 0.0
    assert math.isclose(st["lowrank_kept_min"], 90.0)
    assert math.isclose(st["ta_normalized_full"], 100 * (0.72 / 0.9 + 0.8 / 1.0) / 2)
    assert math.isclose(st["ta_nai_full"], 100 * ((0.72 - 0.4) / 0.5 + (0.8 - 0.6) / 0.4) / 2)
    assert st["ta_alpha_inside_full"] is True and st["ta_alpha_full"].startswith("0.3 (2/3, inside)")
    rows = {r[0]: r for r in regime.regime_rows(st)}
    assert rows["zero-shot average (%)"][4] == "yes"
    assert rows["max ‖τt‖ / ‖θ0‖, image encoder (%)"][4] == "yes"
    assert rows["task arithmetic, normalized accuracy (%), full"][4] == "yes"  # 80 in 65–85
    assert rows["task arithmetic, chosen α (grid position), full"][4] == "yes"
    md, js = tmp_path / "regime.md", tmp_path / "regime.json"
    regime.write_regime_report(st, md, js, "t", {"code_version": "x"})
    assert "| zero-shot average (%) | 48.2 | 35–60 | 50.0 | yes |" in md.read_text()
    assert json.loads(js.read_text())["statistics"]["zeroshot_avg"] == 50.0


def test_tasks_outside_the_suite_get_their_own_row_and_table(tmp_path):
    """The ablation's target (every task of the run fine-tunes to >= 80 %) is checked on the
    tasks of all suites, not only the suite the other statistics describe."""
    zs = _write(tmp_path / "zs.json", {"kind": "zeroshot", "regime": "full",
                                       "test": {"a": 0.4, "b": 0.6, "c": 0.2}})
    ind = _write(tmp_path / "ind.json", {"kind": "individual", "regime": "full",
                                         "test": {"a": 0.9, "b": 1.0, "c": 0.7}})
    tv = []
    for i, t in enumerate(["a", "b"]):
        p = tmp_path / f"{t}.safetensors"
        save_tensors({"w": torch.eye(2)[i].reshape(1, 2)}, p)
        tv.append(p)
    st = regime.regime_statistics([zs, ind], {"full": tv}, {"w": torch.ones(1, 2)}, ["a", "b"])
    assert math.isclose(st["individual_min"], 90.0)  # the suite's statistics ignore task c
    assert math.isclose(st["individual_full_avg"], 95.0)
    assert st["other_tasks"] == ["c"] and math.isclose(st["individual_min_all"], 70.0)
    rows = {r[0]: r for r in regime.regime_rows(st)}
    assert rows["lowest individual task accuracy, every task of the run (%)"][2:] == ("≥ 80", "70.0", "**no**")
    md = tmp_path / "regime.md"
    regime.write_regime_report(st, md, tmp_path / "regime.json", "t", {})
    assert "| individual_full | 70.0 |" in md.read_text()
    # a run whose only tasks are the suite's has no such row
    st = regime.regime_statistics([zs, _write(tmp_path / "i2.json", {"kind": "individual", "regime": "full",
                                                                     "test": {"a": 0.9, "b": 1.0}})],
                                  {"full": tv}, {"w": torch.ones(1, 2)}, ["a", "b"])
    assert "individual_min_all" not in st and "other_tasks" not in st


def test_alpha_at_the_grid_edge_fails_the_target(tmp_path):
    st = {"ta_normalized_full": 70.0, "ta_alpha_full": "0.1 (1/3, first)", "ta_alpha_inside_full": False}
    rows = {r[0]: r for r in regime.regime_rows(st)}
    assert rows["task arithmetic, chosen α (grid position), full"][4] == "**no**"


def test_disentanglement_errors_reach_the_report(tmp_path):
    tasks = ["a", "b", "c"]
    zs = _write(tmp_path / "zs.json", {"kind": "zeroshot", "regime": "full", "test": {t: 0.5 for t in tasks}})
    ind = _write(tmp_path / "ind.json", {"kind": "individual", "regime": "full", "test": {t: 0.9 for t in tasks}})
    dis = _write(tmp_path / "dis.json", {
        "kind": "disentanglement", "regime": "full", "tasks": tasks, "alphas": [0.5, 1.0],
        "pair_mean": {"a|b": 0.1, "a|c": 0.2, "b|c": 0.3}, "mean": 0.2})
    st = regime.regime_statistics([zs, ind, dis], {}, {}, tasks)
    assert math.isclose(st["disentanglement_mean"], 20.0)
    assert st["disentanglement_pairs"] == pytest.approx({"a|b": 10.0, "a|c": 20.0, "b|c": 30.0})
    rows = {r[0]: r for r in regime.regime_rows(st)}
    row = rows["weight-disentanglement error, full: mean over task pairs and α (%)"]
    assert row[3] == "20.0" and row[4] == "–"  # a statistic without a target
    md, js = tmp_path / "regime.md", tmp_path / "regime.json"
    regime.write_regime_report(st, md, js, "t", {})
    text = md.read_text()
    assert "αs, αt ∈ {0.5, 1}" in text
    assert "| b | 10.0 |  | 30.0 |" in text  # the symmetric pair matrix, empty diagonal


def _accuracy_evals(tmp_path, tasks):
    return [_write(tmp_path / "zs.json", {"kind": "zeroshot", "regime": "full", "test": {t: 0.5 for t in tasks}}),
            _write(tmp_path / "ind.json", {"kind": "individual", "regime": "full", "test": {t: 0.9 for t in tasks}})]


def _save_taus(tmp_path, taus):
    paths = []
    for i, tau in enumerate(taus):
        paths.append(tmp_path / f"t{i}.safetensors")
        save_tensors(tau, paths[-1])
    return paths


def test_streamed_cosine_and_norm_sum_over_keys(tmp_path):
    # τ1 lives in key w, τ2 in key b, τ3 in both: only the sum across keys gives the flat CosSim
    # (a per-key average would give cos(τ1, τ3) = (1 + 0) / 2 instead of 1/√5).
    w1 = torch.zeros(2, 2)
    w1[0, 0] = 1.0
    b2 = torch.tensor([2.0, 0.0, 0.0])
    taus = [{"w": w1, "b": torch.zeros(3)}, {"w": torch.zeros(2, 2), "b": b2}, {"w": w1, "b": b2}]
    theta0 = {"w": torch.full((2, 2), 3.0), "b": torch.ones(3), "other": torch.full((5,), 100.0)}
    tasks = ["x", "y", "z"]
    st = regime.regime_statistics(_accuracy_evals(tmp_path, tasks), {"full": _save_taus(tmp_path, taus)},
                                  theta0, tasks)
    # cos(τ1, τ2) = 0, cos(τ1, τ3) = 1/√5, cos(τ2, τ3) = 4 / (2√5); mean = 1/√5
    assert math.isclose(st["cossim_mean_full"], 1 / math.sqrt(5), rel_tol=1e-12)
    # ‖θ0‖² over the task vectors' keys only: 4·9 + 3·1 = 39 ("other" is not a task-vector key)
    expected = {"x": 1.0, "y": 2.0, "z": math.sqrt(5)}
    for t, norm in expected.items():
        assert math.isclose(st["per_task"]["tau_norm_full"][t], 100 * norm / math.sqrt(39), rel_tol=1e-12)
    assert regime.pairwise_cosines(regime.task_vector_gram(DictSource(taus), ["w", "b"])) == pytest.approx(
        [0.0, 1 / math.sqrt(5), 2 / math.sqrt(5)], rel=1e-12)


def test_streamed_statistics_match_the_flattened_vectors(tmp_path):
    g = torch.Generator().manual_seed(3)
    shapes = {"a": (7, 5), "b": (11,), "c": (3, 4, 2)}
    base = {k: torch.randn(*s, generator=g) for k, s in shapes.items()}
    taus = [{k: base[k] + torch.randn(*s, generator=g) for k, s in shapes.items()} for _ in range(4)]
    theta0 = {k: torch.randn(*s, generator=g) for k, s in shapes.items()}
    tasks = ["p", "q", "r", "s"]
    st = regime.regime_statistics(_accuracy_evals(tmp_path, tasks), {"full": _save_taus(tmp_path, taus)},
                                  theta0, tasks)
    flat = [torch.cat([tau[k].double().flatten() for k in sorted(shapes)]) for tau in taus]
    cos = [float(flat[i] @ flat[j] / (flat[i].norm() * flat[j].norm())) for i in range(4) for j in range(i + 1, 4)]
    assert math.isclose(st["cossim_mean_full"], sum(cos) / len(cos), rel_tol=1e-12)
    norm0 = float(torch.cat([theta0[k].double().flatten() for k in shapes]).norm())
    for t, f in zip(tasks, flat):
        assert math.isclose(st["per_task"]["tau_norm_full"][t], 100 * float(f.norm()) / norm0, rel_tol=1e-12)


def test_a_key_missing_in_one_task_vector_is_named(tmp_path):
    taus = [{"w": torch.ones(2), "b": torch.ones(1)}, {"w": torch.ones(2)}]
    paths = _save_taus(tmp_path, taus)
    with pytest.raises(ArtifactError, match=r"t1\.safetensors.*missing here: \['b'\]"):
        regime.regime_statistics(_accuracy_evals(tmp_path, ["x", "y"]), {"lora": paths}, {}, ["x", "y"])
    with pytest.raises(KeyError, match=r"'b' of .*t0\.safetensors is not in θ0"):
        regime.regime_statistics(_accuracy_evals(tmp_path, ["x"]), {"full": paths[:1]}, {"w": torch.ones(2)}, ["x"])


def test_task_vectors_are_loaded_one_key_at_a_time(tmp_path, monkeypatch):
    """Every tensor of the previous key is freed before the next key is read: peak memory is
    one key of each task, not T whole task vectors."""
    g = torch.Generator().manual_seed(0)
    taus = [{k: torch.randn(4, generator=g) for k in "abcde"} for _ in range(3)]
    alive: list[weakref.ref] = []
    requested = []
    original = SafetensorsSource.get

    def tracking_get(self, key):
        assert not [r for r in alive if r() is not None], f"tensors of an earlier key alive when reading '{key}'"
        out = original(self, key)
        alive.extend(weakref.ref(t) for t in out)
        requested.append(key)
        return out

    monkeypatch.setattr(SafetensorsSource, "get", tracking_get)
    tasks = ["x", "y", "z"]
    regime.regime_statistics(_accuracy_evals(tmp_path, tasks), {"full": _save_taus(tmp_path, taus)},
                             {k: torch.ones(4) for k in "abcde"}, tasks)
    assert sorted(requested) == list("abcde")  # each key read once, for all tasks together


def test_a_zero_task_vector_has_cosine_zero_and_norm_zero():
    """Degenerate input: a task vector that did not move (e.g. a task fine-tuned for 0 steps)
    gives CosSim 0 with every other task (not NaN) and ‖τ‖ = 0; an exactly repeated task
    vector gives CosSim 1 up to rounding."""
    g = torch.Generator().manual_seed(1)
    tau = {"w": torch.randn(6, 4, generator=g), "b": torch.randn(4, generator=g)}
    zero = {k: torch.zeros_like(v) for k, v in tau.items()}
    gram = regime.task_vector_gram(DictSource([tau, zero, tau]), ["w", "b"])
    cos = regime.pairwise_cosines(gram)
    assert cos[0] == 0.0 and cos[2] == 0.0 and math.isclose(cos[1], 1.0, rel_tol=1e-15)
    assert regime.relative_norm(zero, {"w": torch.ones(6, 4), "b": torch.ones(4)}) == 0.0
