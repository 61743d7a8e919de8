"""Paper configs (config/paper/*.yaml): they validate, follow the protocol (task order,
suites, epochs, recipes, image size) and list every registered method; a Snakemake dry run
of each builds the expected number of jobs per rule. The dry runs run in this process
(snakemake.cli.main) so that Snakemake and torch are imported once."""
from __future__ import annotations

import contextlib
import io
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from mergelab import methods as M
from mergelab.config import load_config, method_regimes

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "config" / "paper").glob("*.yaml"))
FULL_ORDER = ["Cars", "DTD", "EuroSAT", "GTSRB", "MNIST", "RESISC45", "SVHN", "SUN397",
              "STL10", "OxfordIIITPet", "Flowers102", "CIFAR100", "PCAM", "FER2013",
              "CIFAR10", "Food101", "FashionMNIST", "RenderedSST2", "EMNIST", "KMNIST"]
LORA_ORDER = ["Cars", "DTD", "EuroSAT", "GTSRB", "MNIST", "RESISC45", "SUN397", "SVHN",
              "CIFAR100", "Flowers102", "OxfordIIITPet", "STL10",
              "RenderedSST2", "FashionMNIST", "FER2013", "CIFAR10"]
EPOCHS = {"Cars": 35, "DTD": 76, "EuroSAT": 12, "GTSRB": 11, "MNIST": 5, "RESISC45": 15,
          "SUN397": 14, "SVHN": 4, "CIFAR10": 6, "CIFAR100": 6, "STL10": 60, "Food101": 4,
          "Flowers102": 147, "FER2013": 10, "PCAM": 1, "OxfordIIITPet": 82,
          "RenderedSST2": 39, "EMNIST": 2, "FashionMNIST": 5, "KMNIST": 5}
EXPECTED_NAMES = {f"{m}_{r}" for m in ("vit-b-32", "vit-b-16", "vit-l-14") for r in ("full", "lora")}


def test_all_six_configs_exist():
    assert {c.stem for c in CONFIGS} == EXPECTED_NAMES


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_validates_and_follows_protocol(path):
    cfg = load_config(path)
    name = path.stem
    assert cfg["name"] == name and cfg["results_dir"] == f"results/paper/{name}"
    assert cfg["data"]["image_size"] == 224 and cfg["data"]["root"].startswith("data/paper")
    assert cfg["data"]["cache_dir"] and cfg["model"]["pretrained"] == "openai"
    assert cfg["seed"] == 0
    regime = "lora" if name.endswith("_lora") else "full"
    assert cfg["regimes"] == [regime]
    tasks = cfg["data"]["tasks"]
    assert all(t["source"] == "hub" and t["split_protocol"] == regime for t in tasks.values())
    if regime == "full":
        assert list(tasks) == FULL_ORDER
        assert cfg["suites"] == {"tasks8": FULL_ORDER[:8], "tasks14": FULL_ORDER[:14],
                                 "tasks20": FULL_ORDER}
        assert {t: c["epochs"] for t, c in tasks.items()} == EPOCHS
        ft = cfg["finetune"]["full"]
        assert (ft["lr"], ft["weight_decay"], ft["warmup_steps"], ft["batch_size"],
                ft["grad_clip"]) == (1e-5, 0.1, 500, 128, 1.0)
        assert cfg["model"]["name"] in ("ViT-B-32", "ViT-B-16", "ViT-L-14")
    else:
        assert list(tasks) == LORA_ORDER
        assert cfg["suites"] == {"tasks8": LORA_ORDER[:8], "tasks12": LORA_ORDER[:12],
                                 "tasks16": LORA_ORDER}
        lo = cfg["finetune"]["lora"]
        assert (lo["rank"], lo["alpha"], lo["dropout"], lo["lr"], lo["weight_decay"],
                lo["warmup_steps"], lo["max_steps"], lo["batch_size"]) == \
            (16, 16, 0.1, 3e-4, 0.1, 500, 10000, 32)
        assert set(lo["target_modules"]) == {"q_proj", "k_proj", "v_proj", "out_proj"}
        assert cfg["model"]["hf_name"].startswith("openai/clip-vit-")
        # the public KnOTS ViT configs: KnOTS-TIES topK 20; KnOTS-DARE-TIES topK 100, p 0.1
        assert cfg["methods"]["knots_ties"]["params"] == {"k": 20}
        assert cfg["methods"]["knots_dare_ties"]["params"] == {"k": 100, "dare_p": 0.1}
    # every registered method that supports the regime has an instance
    used = {spec["method"] for spec in cfg["methods"].values()}
    missing = [m for m in M.available(regime) if m not in used]
    assert not missing, f"{path}: registered method(s) {missing} have no instance; add them"
    assert cfg["methods"]["ties"]["params"]["k"] == 20
    assert cfg["methods"]["dare_ties"]["params"]["base"] == "ties"


def _n_decompositions(cfg) -> int:
    """One shared basis per (regime, suite) with a merge that reads it (TSV-M, DC-Merge,
    MDA, MDA AM without exact: true), when shared_basis is on."""
    if not cfg["shared_basis"]:
        return 0
    readers = [m for m, spec in cfg["methods"].items()
               if M.build(spec["method"], **spec.get("params", {})).uses_shared_basis()]
    regimes = {r for m in readers for r in method_regimes(cfg, m)}
    return len(regimes) * len(cfg["suites"])


def _expected_jobs(cfg) -> Counter:
    tasks = sorted({t for members in cfg["suites"].values() for t in members})
    regimes, suites = cfg["regimes"], list(cfg["suites"])
    n_merges = sum(len(method_regimes(cfg, m)) * len(suites) for m in cfg["methods"])
    # tasks with data.tasks.<task>.checkpoint: imported instead of fine-tuned + extracted
    from mergelab.checkpoints import KIND_ALIASES, KIND_REGIME
    n_imported = sum(1 for t in tasks if (ck := cfg["data"]["tasks"][t].get("checkpoint"))
                     and KIND_REGIME[KIND_ALIASES[ck["kind"]]] in regimes)
    n_tuned = len(tasks) * len(regimes) - n_imported
    exp = Counter({
        "prepare_task": len(tasks), "pretrain": 1, "heads": len(tasks),
        "finetune": n_tuned, "extract_task_vector": n_tuned, "import_checkpoint": n_imported,
        "eval_zeroshot": len(tasks) * len(regimes), "eval_individual": len(tasks) * len(regimes),
        "merge": n_merges, "eval_merged": n_merges, "decompose": _n_decompositions(cfg),
        "report": len(regimes) * len(suites), "manifest": 1, "all": 1})
    if cfg["report"]["regime"]:  # rules/regime.smk: truncation evals of the main suite, one table
        main = cfg["report"]["main_suite"] or suites[0]
        exp["eval_lowrank"] = len(cfg["suites"][main]) if "full" in regimes else 0
        exp["eval_disentanglement"] = int("full" in regimes and cfg["report"]["disentanglement"]["enabled"]
                                          and len(cfg["suites"][main]) > 1)
        exp["regime_report"] = 1
    an = cfg.get("analysis")
    if an and an.get("enabled"):
        exp["analysis_spectrum"] = len(regimes)
        # the task-level ΔETF figure: regimes with a data-free similarity method or, failing
        # that, a task_arithmetic / tsv_m / mda instance (rules/common/analysis.smk etf_methods)
        def has_etf(r):
            sims = [m for m in an.get("similarity_methods", []) if r in method_regimes(cfg, m)
                    and not M.get_method(cfg["methods"][m]["method"]).needs_data]
            return bool(sims) or any(s["method"] in ("task_arithmetic", "tsv_m", "mda")
                                     and r in method_regimes(cfg, m) for m, s in cfg["methods"].items())
        exp["analysis_etf"] = sum(1 for r in regimes if has_etf(r))
        if an.get("similarity_methods"):
            exp["analysis_similarity"] = len(regimes)
        if an.get("sweeps"):
            exp["analysis_sensitivity"] = len(an["sweeps"])
    return +exp


def _snakemake(args: list[str]) -> str:
    """Run the Snakemake CLI in this process on the repository's workflow; its output."""
    from snakemake.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args + ["--directory", str(REPO), "--snakefile", str(REPO / "Snakefile")])
        except SystemExit as exc:
            code = exc.code
    text = out.getvalue() + err.getvalue()
    assert code in (0, None), f"snakemake {' '.join(args)} failed:\n{text[-3000:]}"
    return text


def _dry_run(path: Path) -> tuple[Counter, str]:
    text = _snakemake(["-n", "--configfile", str(path), "--cores", "1", "--quiet", "rules"])
    counts = Counter()
    table = text.split("Job stats:")[1] if "Job stats:" in text else ""
    for line in table.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)\s*$", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    assert counts, f"no job stats in the dry run of {path}:\n{text[-3000:]}"
    return counts, text


@pytest.mark.slow  # runs Snakemake (a dry run or --dag)
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_dry_run_job_counts(path, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = load_config(path)
    got, text = _dry_run(path)
    exp = _expected_jobs(cfg)
    known = {r: got.get(r, 0) for r in exp}
    assert known == dict(exp), f"{path.name}: jobs per rule {dict(got)} != expected {dict(exp)}"
    unknown = {r: n for r, n in got.items() if r not in exp and not r.startswith("analysis_")}
    assert not unknown, (f"{path.name}: rules {unknown} not accounted for in "
                         "tests/test_paper_configs.py::_expected_jobs (and docs/paper_scale.md)")
    assert "build_corpus" not in got  # published weights, no pretraining corpus


def _basis_readers(extra: list[str]) -> tuple[set[str], int]:
    """From the DAG of the smoke config (one suite): the methods whose merge depends on a
    decompose job, and the number of decompose jobs."""
    dot = _snakemake(["--dag", "--configfile", str(REPO / "config/smoke/vit-b-32_full.yaml"),
                      "--cores", "1", "--quiet"] + extra)
    nodes = dict(re.findall(r'^\s*(\d+)\[label = "([^"]+)"', dot, flags=re.M))
    edges = re.findall(r"^\s*(\d+) -> (\d+)", dot, flags=re.M)
    decompose = {n for n, label in nodes.items() if label.startswith("decompose")}
    readers = set()
    for a, b in edges:
        if a in decompose and nodes[b].startswith("merge"):
            readers.add(re.search(r"method: (\w+)", nodes[b]).group(1))
    return readers, len(decompose)


@pytest.mark.slow  # runs Snakemake (a dry run or --dag)
def test_only_the_basis_methods_depend_on_decompose(monkeypatch):
    """A change to the shared basis (its code, or a task vector) reruns the merges of TSV-M,
    DC-Merge, MDA and MDA AM and no other; shared_basis: false removes the rule."""
    monkeypatch.chdir(REPO)
    readers, n = _basis_readers([])
    assert n == 1 and readers == {"tsv_m", "dc_merge", "mda", "mda_am"}
    readers, n = _basis_readers(["--config", "shared_basis=False"])
    assert n == 0 and readers == set()


def _init_edges(configfile: Path) -> set[tuple[str, str]]:
    """(method of an eval_merged job, method of a merge job that needs it) edges of the DAG
    of ``configfile``; an eval_merged node is named after the merge that feeds it."""
    dot = _snakemake(["--dag", "--configfile", str(configfile), "--cores", "1", "--quiet"])
    nodes = dict(re.findall(r'^\s*(\d+)\[label = "([^"]+)"', dot, flags=re.M))
    edges = re.findall(r"^\s*(\d+) -> (\d+)", dot, flags=re.M)
    rule = {n: re.split(r"\\n|\n", label)[0] for n, label in nodes.items()}
    merged = {n: re.search(r"method: (\w+)", label).group(1)
              for n, label in nodes.items() if rule[n] == "merge"}
    evaluated = {b: merged[a] for a, b in edges if a in merged and rule[b] == "eval_merged"}
    return {(evaluated[a], merged[b]) for a, b in edges if a in evaluated and b in merged}


@pytest.mark.slow  # runs Snakemake (a dry run or --dag)
def test_mda_am_merge_depends_on_the_mda_eval(monkeypatch, tmp_path):
    """MDA AM starts λ at MDA's validated α (init: from_method, its default): its merge needs
    the mda eval JSON of the same suite; with a numeric init the edge is gone."""
    monkeypatch.chdir(REPO)
    smoke = REPO / "config/smoke/vit-b-32_full.yaml"
    assert _init_edges(smoke) == {("mda", "mda_am")}
    cfg = yaml.safe_load(smoke.read_text())
    cfg["methods"]["mda_am"].setdefault("params", {})["init"] = 0.4
    numeric = tmp_path / "numeric_init.yaml"
    numeric.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert _init_edges(numeric) == set()


def test_init_method_must_be_another_instance(tmp_path):
    from mergelab.config import ConfigError, validate_config
    cfg = yaml.safe_load((REPO / "config/smoke/vit-b-32_full.yaml").read_text())
    cfg["methods"]["mda_am"]["params"]["init_method"] = "nope"
    with pytest.raises(ConfigError, match="methods.mda_am.params.init_method"):
        validate_config(cfg)
    cfg["methods"]["mda_am"]["params"]["init_method"] = "weight_averaging"
    with pytest.raises(ConfigError, match="fixed α grid"):
        validate_config(cfg)


GPU_RULES = {"pretrain", "heads", "finetune", "eval_zeroshot", "eval_individual", "decompose",
             "merge", "eval_merged", "eval_lowrank", "eval_disentanglement"}


def test_readme_job_table_matches_the_configs():
    """README's per-config table gives the job counts that the dry runs above check."""
    text = (REPO / "README.md").read_text()
    rows = {m.group(1): (int(m.group(2)), int(m.group(3))) for m in
            re.finditer(r"^\| (vit-[\w-]+_(?:full|lora)) \| (\d+) \| (\d+) \|", text, flags=re.M)}
    assert set(rows) == {p.stem for p in CONFIGS}
    for path in CONFIGS:
        exp = _expected_jobs(load_config(path))
        assert rows[path.stem] == (sum(exp.values()), sum(n for r, n in exp.items() if r in GPU_RULES)), \
            path.stem
    # the rules listed as GPU rules are exactly those declaring resources gpu=1
    declared = set()
    for smk in (REPO / "rules").glob("*.smk"):
        for m in re.finditer(r"^rule (\w+):(.*?)(?=^rule |\Z)", smk.read_text(), flags=re.M | re.S):
            if re.search(r"^\s+gpu=1,", m.group(2), flags=re.M):
                declared.add(m.group(1))
    assert GPU_RULES <= declared, GPU_RULES - declared
