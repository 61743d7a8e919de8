"""Declared method parameters: every registered method's parameters are checked once, by the
base class, against their declarations, with one error format (method, parameter, value,
what is allowed); display names come from the same registry."""
from __future__ import annotations

import pytest

from mergelab import methods as M
from mergelab.methods.base import (AnyOf, Choice, Flag, Interval, MergeMethod, MethodConfigError,
                                   Name, Null, Number, Numbers, Param)
from mergelab.report import instance_labels, pretty

#: a value no declaration accepts (no check takes a mapping)
UNACCEPTABLE = {"not": "a parameter value"}


def _rejected_values(check) -> list:
    """Values ``check`` must reject: out of its range or of the wrong type."""
    if isinstance(check, Number):
        out = ["1"]
        if check.low is not None:
            out.append(check.low if check.low_open else check.low - 1)
        if check.high is not None:
            out.append(check.high if check.high_open else check.high + 1)
        if check.integer:
            out.append(0.5 + (check.low or 0))
        return out + [True]
    if isinstance(check, Choice):
        return ["no_such_choice", None]
    if isinstance(check, Flag):
        return ["yes", 1, None]
    if isinstance(check, Name):
        return ["", 3]
    if isinstance(check, Numbers):
        return [[], ["x"], "0.5", [check.item.low - 1] if check.item.low is not None else ["x"]]
    if isinstance(check, Interval):
        return [[1, 0], [0], "0,1", [0, True]]
    if isinstance(check, Null):
        return [0]
    if isinstance(check, AnyOf):
        return [v for c in check.checks for v in _rejected_values(c) if not check.accepts(v)]
    raise AssertionError(f"no rejected values for {check!r}")


def _declared_cases():
    for name in sorted(M.REGISTRY):
        for p in M.get_method(name).parameters:
            for value in [UNACCEPTABLE] + _rejected_values(p.accepts):
                yield pytest.param(name, p, value, id=f"{name}.{p.name}={value!r}")


def _assert_uniform(exc: MethodConfigError, method: str, param: str, value) -> None:
    assert exc.param == param
    msg = str(exc)
    assert msg.startswith(f"method '{method}': parameter '{param}' got {value!r}; allowed: "), msg


@pytest.mark.parametrize("method, param, value", list(_declared_cases()))
def test_every_declared_parameter_rejects_bad_values(method, param, value):
    assert not param.accepts.accepts(value)
    with pytest.raises(MethodConfigError) as exc:
        M.build(method, **{param.name: value})
    _assert_uniform(exc.value, method, param.name, value)
    assert str(exc.value).endswith(param.accepts.allowed)


@pytest.mark.parametrize("method", sorted(M.REGISTRY))
def test_unknown_parameter_is_named(method):
    with pytest.raises(MethodConfigError) as exc:
        M.build(method, no_such_param=1)
    _assert_uniform(exc.value, method, "no_such_param", 1)
    for p in M.get_method(method).parameters:
        assert p.name in str(exc.value)


@pytest.mark.parametrize("method", sorted(M.REGISTRY))
def test_defaults_are_the_declarations(method):
    cls = M.get_method(method)
    assert list(cls.defaults) == [p.name for p in cls.parameters]
    assert list(M.build(method).params) == list(cls.defaults)  # order kept (merge JSON)
    assert cls.display_name and cls.label() == cls.label(cls.defaults)


#: bad values the methods' former hand-written checks rejected: still rejected, uniformly
FORMERLY_REJECTED = [
    ("ties", "k", 0), ("ties", "k", 101), ("ties", "k", True), ("ties", "trim_scope", "global"),
    ("dare", "p", 1.0), ("dare", "p", -0.1), ("dare", "base", "mean"), ("dare", "k", 0),
    ("consensus", "k", -1), ("consensus", "k", 1.5), ("consensus", "k", True),
    ("consensus", "lambdas", []), ("consensus", "lambdas", [-0.1, 0.2]),
    ("consensus", "lambdas", [0.1] * 256), ("consensus", "lambdas", "abc"),
    ("dc_merge", "sparsity", 0), ("dc_merge", "sparsity", 1.5), ("dc_merge", "smoothing", "cubic"),
    ("dc_merge", "rho", 0.5), ("dc_merge", "mask_scale", 0), ("dc_merge", "mask_scale", "2"),
    ("iso_cts", "common_fraction", 1.5), ("iso_cts", "common_fraction", -0.1),
    ("knots", "k", 0), ("knots", "dare_p", 1), ("knots", "trim_scope", "layer"),
    ("mda", "k_fraction", 0), ("mda", "k_fraction", 1.5), ("mda", "k_fraction", True),
    ("mda", "exact", 1), ("mda", "etf", "rows"), ("mda", "sign_seed", 1.5), ("mda", "sign_seed", True),
    ("tsv_m", "exact", "no"),
    ("wudi", "lr", 0), ("wudi", "lr", True), ("wudi", "steps", -1), ("wudi", "steps", 1.5),
    ("wudi", "other_keys", "keep"),
    ("adamerging", "granularity", "block"), ("adamerging", "steps", -1),
    ("adamerging", "batches_per_step", True), ("adamerging", "batch_size", 0),
    ("adamerging", "lr", 0), ("adamerging", "clamp_range", [1, 0]), ("adamerging", "clamp_range", [0]),
    ("adamerging", "clamp_range", [0, True]), ("adamerging", "init", "start"),
    ("adamerging", "init", True), ("adamerging", "init", 1.5), ("adamerging", "split", "val"),
    ("mda_am", "rotation", "yes"), ("mda_am", "exact", "no"), ("mda_am", "k_fraction", 2.0),
    ("mda_am", "etf_weight", -1), ("mda_am", "procrustes_weight", -1),
    ("mda_am", "procrustes_eps", -1), ("mda_am", "mean_momentum", 1), ("mda_am", "rotation_lr", 0),
    ("mda_am", "clamp_range", [1.0, 0.0]),
]


@pytest.mark.parametrize("method, param, value", FORMERLY_REJECTED,
                         ids=[f"{m}.{p}={v!r}" for m, p, v in FORMERLY_REJECTED])
def test_formerly_rejected_values_still_rejected(method, param, value):
    with pytest.raises(MethodConfigError) as exc:
        M.build(method, **{param: value})
    _assert_uniform(exc.value, method, param, value)


def test_relations_between_parameters_use_the_same_format():
    with pytest.raises(MethodConfigError) as exc:
        M.build("adamerging", init="from_method")  # no init_method
    _assert_uniform(exc.value, "adamerging", "init_method", None)
    with pytest.raises(MethodConfigError) as exc:
        M.build("mda_am", init=3.5)  # outside the default clamp range [0, 3]
    _assert_uniform(exc.value, "mda_am", "init", 3.5)
    assert "clamp_range [0.0, 3.0]" in str(exc.value)
    assert M.build("adamerging", init=1.5, clamp=False).params["init"] == 1.5


def test_accepted_values_are_normalised_as_before():
    assert M.build("dare", p=0).params["p"] == 0.0 and type(M.build("dare", p=0).params["p"]) is float
    assert M.build("consensus", lambdas=[0.6, 0, 0.4]).params["lambdas"] == (0.0, 0.4, 0.6)
    assert M.build("consensus").params["lambdas"] == (0.2, 0.3, 0.4, 0.5, 0.6)
    rng = M.build("adamerging", clamp_range=[0, 2], init=1).params["clamp_range"]
    assert rng == (0.0, 2.0) and all(type(x) is float for x in rng)
    assert M.build("ties", k=30).params == {"k": 30, "trim_scope": "model"}
    am = M.get_method("mda_am").defaults
    assert (am["init"], am["init_method"], am["clamp_range"]) == ("from_method", "mda", (0.0, 3.0))
    assert list(am)[:10] == list(M.get_method("adamerging").defaults)  # inherited, same order


def test_a_declaration_must_accept_its_default():
    with pytest.raises(MethodConfigError, match="parameter 'k' got 0"):
        type("BadDefault", (MergeMethod,), {"name": "bad", "parameters": (
            Param("k", 0, Number(low=0, low_open=True)),)})
    with pytest.raises(TypeError, match="declared twice"):
        type("Twice", (MergeMethod,), {"name": "twice", "parameters": (
            Param("k", 1, Number()), Param("k", 2, Number()))})


def test_display_names_come_from_the_registry():
    assert M.get_method("dare").label({"base": "ties"}) == "DARE (TIES)"
    assert M.get_method("dare").label({}) == "DARE (TA)"
    assert M.get_method("adamerging").label({"granularity": "task"}) == "AdaMerging (task)"
    assert M.get_method("mda_am").label({"rotation": False}) == "MDA (AM, no rotation)"
    assert M.get_method("knots").label({"k": 100, "dare_p": 0.1}) == "KnOTS (DARE-TIES)"
    # report rows: instance -> its method's label (from the result JSON's merge block)
    results = {
        "dare_ta": {"merge": {"registry_method": "dare", "params": {"base": "task_arithmetic"}}},
        "dare_ties": {"merge": {"registry_method": "dare", "params": {"base": "ties"}}},
        "ties": {"merge": {"registry_method": "ties", "params": {"k": 20}}},
        "ties_per_key": {"merge": {"registry_method": "ties", "params": {"trim_scope": "per_key"}}},
        "mda": {},            # an old result without a merge block: named like its method
        "custom": {},
    }
    labels = instance_labels(results)
    assert labels == {"dare_ta": "DARE (TA)", "dare_ties": "DARE (TIES)",
                      "ties": "TIES [ties]", "ties_per_key": "TIES [ties_per_key]",
                      "mda": "MDA (TA)", "custom": "custom"}
    assert pretty("zeroshot") == "Zero-shot" and pretty("task_arithmetic") == "Task arithmetic"
    assert pretty("dare_ta", labels) == "DARE (TA)"


def test_ablation_tables_name_rows_by_their_method(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from mergelab.io import save_json
    from mergelab.plots_ablation import generalization_report, task_count_figure
    merge = {"mda_am_norot": {"registry_method": "mda_am", "params": {"rotation": False}},
             "ties": {"registry_method": "ties", "params": {"k": 20}}}
    gen = []
    for i, (inst, m) in enumerate(merge.items()):
        gen.append(tmp_path / f"gen_{inst}.json")
        save_json({"method": inst, "suite": "s", "regime": "full", "heldout": ["a"],
                   "test": {"a": 0.5 + 0.1 * i}, "zeroshot": {"a": 0.4}, "mean": 0.5 + 0.1 * i,
                   "mean_zeroshot": 0.4, "merge": m}, gen[-1])
    generalization_report(gen, tmp_path / "gen")
    md = (tmp_path / "gen.md").read_text()
    assert "| Zero-shot | 40.0 |" in md and "| MDA (AM, no rotation) | 50.0 |" in md
    assert "| TIES | 60.0 |" in md
    counts = []
    for inst, m in merge.items():
        for n in (2, 3):
            counts.append(tmp_path / f"tc_{inst}_{n}.json")
            tasks = [f"t{j}" for j in range(n)]
            save_json({"method": inst, "tasks": tasks, "test_normalized": {t: 0.9 for t in tasks},
                       "merge": m}, counts[-1])
    legend = []
    plot = plt.Axes.plot
    monkeypatch.setattr(plt.Axes, "plot", lambda ax, *a, **kw: legend.append(kw.get("label"))
                        or plot(ax, *a, **kw))
    task_count_figure(counts, tmp_path / "tc")
    assert legend == ["MDA (AM, no rotation)", "TIES"]
