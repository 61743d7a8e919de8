"""The config schema and semantic checks reject bad configs with a message naming the key."""
import copy
from pathlib import Path

import pytest
import yaml

from mergelab.config import ConfigError, alpha_grid, load_config, method_regimes, validate_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base():
    with open(ROOT / "config" / "config.yaml") as fh:
        return yaml.safe_load(fh)


def test_default_config_valid_and_defaults_filled(base):
    cfg = validate_config(base)
    assert cfg["seed"] == base.get("seed", 0)
    assert cfg["finetune"]["lora"]["target_modules"] == ["q_proj", "k_proj", "v_proj", "out_proj"]
    assert cfg["evaluation"]["batch_size"] >= 1
    for inst in cfg["methods"]:
        assert alpha_grid(cfg, inst)
        assert method_regimes(cfg, inst)


def test_micro_config_valid():
    load_config(ROOT / "tests" / "micro" / "config.yaml")


@pytest.mark.parametrize("names", [["ablations_mini"], ["seeds_mini"], ["pretrain_mini"],
                                   ["pretrain_mini", "pretrain_pilot"], ["pretrain_mini", "pretrain_v3"],
                                   ["probe_added_tasks"]])
def test_mini_configs_valid(names):
    """The documented mini configs (the pilot as the overlay Snakemake merges onto
    pretrain_mini) stay valid, and the pretraining ones give every family of their corpus a
    caption rate in [0, 1] (validated when the corpus is built)."""
    from snakemake.utils import update_config

    from mergelab.data.mini.corpus import _mention_by_family
    raw: dict = {}
    for name in names:
        update_config(raw, yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text()))
    cfg = validate_config(raw)
    if cfg["model"].get("pretrained") is None:
        pre = cfg["pretrain"]
        fams = [f for f, w in pre["family_weights"].items() if w > 0]
        assert set(_mention_by_family(pre["mention_prob"], fams)) == set(fams)


@pytest.mark.parametrize("mutate, key", [
    (lambda c: c.update(bogus=1), "bogus"),
    (lambda c: c.update(seed="zero"), "seed"),
    (lambda c: c["finetune"].setdefault("full", {}).update(lr=-1), "finetune.full.lr"),
    (lambda c: c["finetune"].setdefault("full", {}).update(lrr=1e-3), "finetune.full"),
    (lambda c: c["methods"].update(x={"method": "no_such_method"}), "methods.x.method"),
    (lambda c: c["methods"].update(t2={"method": "ties", "params": {"kk": 3}}), "methods.t2.params.kk'"),
    (lambda c: c["methods"].update(t2={"method": "dare", "params": {"p": 1.5}}), "methods.t2.params.p'"),
    (lambda c: c["methods"].update(t3={"method": "ties", "alpha_grid": []}), "methods.t3.alpha_grid"),
    (lambda c: c["suites"].update(bad=["no_such_task"]), "suites.bad"),
    (lambda c: c["data"]["tasks"].update(nope={"source": "mini"}), "data.tasks.nope"),
    (lambda c: c.setdefault("evaluation", {}).update(alpha_grid=[]), "evaluation.alpha_grid"),
    (lambda c: c.update(regimes=["half"]), "regimes.0"),
    (lambda c: c.update(device="tpu"), "device"),
    (lambda c: c["data"]["tasks"].update(EuroSAT={"source": "hub", "n_train": 100}), "data.tasks.EuroSAT.n_train"),
    (lambda c: c["data"]["tasks"].update(signs={"source": "mini", "n_train": 5}), "data.tasks.signs.n_train"),
])
def test_bad_configs_name_the_key(base, mutate, key):
    cfg = copy.deepcopy(base)
    mutate(cfg)
    with pytest.raises(ConfigError) as exc:
        validate_config(cfg)
    assert f"'{key}" in str(exc.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
