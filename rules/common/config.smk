# The validated config, the run's names (tasks, suites, regimes, methods, seeds), the config
# subsets that become rule `params` (so a changed value reruns exactly the jobs that use it)
# and the input functions. Beside it in rules/common/: paths.smk (one function per artifact
# path), hooks.smk (job environment, fork server), manifest.smk, and the helpers of the
# analysis, regime and ablation rules. Files here define no rules (`snakemake --lint`).

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from mergelab.config import (
    MINI_TASK_REVISIONS,
    ConfigError,
    all_method_instances,
    alpha_grid,
    init_source,
    method_regimes,
    validate_config,
)
from mergelab import methods as _methods
from mergelab import shipped

try:
    CFG = validate_config(config)
except ConfigError as _exc:
    raise WorkflowError(str(_exc))

RESULTS = CFG["results_dir"]
DATA_ROOT = CFG["data"]["root"]
LOGS = f"{RESULTS}/logs"
# Seeds (config key `seeds`, docs/uncertainty.md): a list replicates fine-tuning, merging
# and evaluation once per seed under RESULTS/seed<N>/ (seed_root in paths.smk, with
# the {seed} wildcard in rule outputs); data, θ0, heads and zero-shot evaluations are
# shared. Without the key, the single `seed` runs at RESULTS itself.
SEEDED = CFG["seeds"] is not None
SEEDS = list(CFG["seeds"]) if SEEDED else [CFG["seed"]]
# Analysis figures and ablations read the first seed's task vectors, merges and evaluations.
FIRST_SEED = SEEDS[0]

TASKS = sorted({t for members in CFG["suites"].values() for t in members})
SUITES = list(CFG["suites"])
REGIMES = list(CFG["regimes"])
METHODS = all_method_instances(CFG)  # config instances + generated sweep instances
MAIN_SUITE = CFG["report"]["main_suite"] or SUITES[0]


def seed_logs():
    """The log root of the per-seed rules (with the {seed} wildcard under a seed list)."""
    return f"{RESULTS}/seed{{seed}}/logs" if SEEDED else LOGS


def run_seed(w):
    """The seed of a per-seed job (its {seed} wildcard), else the config's seed."""
    return int(w.seed) if SEEDED else CFG["seed"]


def imported_pairs():
    """'<regime>/<task>' of every task vector imported from a published checkpoint
    (data.tasks.<task>.checkpoint) instead of being fine-tuned and extracted."""
    from mergelab.checkpoints import KIND_ALIASES, KIND_REGIME
    out = []
    for t in TASKS:
        ck = CFG["data"]["tasks"][t].get("checkpoint")
        if ck:
            r = KIND_REGIME[KIND_ALIASES[ck["kind"]]]
            if r in REGIMES:
                out.append(f"{r}/{t}")
    return out


IMPORTED = imported_pairs()


def pair_parts(pair):
    """'<regime>/<task>' -> (regime, task)."""
    return Path(pair).parts


wildcard_constraints:
    task="|".join(TASKS + [t for t in CFG["generalization"]["heldout"] if t not in TASKS]),
    sweep="|".join(CFG["analysis"]["sweeps"]) or "__none__",
    regime="full|lora",
    suite="|".join(SUITES),
    method="|".join(METHODS),
    imported="|".join(re.escape(p) for p in IMPORTED) or "__none__",
    seed="[0-9]+",


# ----------------------------------------------------------------- specs (rule params)


def jq(obj):
    """Compact, key-sorted JSON: stable params for Snakemake's rerun triggers."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def model_spec():
    return CFG["model"]


def data_spec():
    d = CFG["data"]
    return {k: d[k] for k in ("image_size", "max_train_per_task", "max_eval_per_task", "num_workers")}


def prepare_spec(task):
    d = CFG["data"]
    spec = {"task": d["tasks"][task], "seed": CFG["seed"], "mini": d["mini"], "cache_dir": d["cache_dir"]}
    if d["tasks"][task].get("source") == "mini" and task in MINI_TASK_REVISIONS:
        spec["revision"] = MINI_TASK_REVISIONS[task]  # a regenerated task reruns (and only it)
    return spec


def corpus_spec():
    return {"seed": CFG["seed"], **{k: CFG["pretrain"][k] for k in
            ("corpus_size", "caption_noise", "family_weights", "mention_prob")}}


def pretrain_spec():
    return {"model": model_spec(), "pretrain": CFG["pretrain"], "image_size": CFG["data"]["image_size"],
            "seed": CFG["seed"], "device": CFG["device"]}


def heads_spec(task):
    return {"model": model_spec(), "task": CFG["data"]["tasks"][task], "device": CFG["device"]}


def eval_spec(seed=None):
    return {"model": model_spec(), "data": data_spec(), "seed": CFG["seed"] if seed is None else seed,
            "device": CFG["device"], "batch_size": CFG["evaluation"]["batch_size"]}


def task_epochs(task):
    e = CFG["data"]["tasks"][task].get("epochs")
    return e if e is not None else CFG["finetune"]["full"]["epochs"]


def finetune_spec(regime, task, seed):
    ft = CFG["finetune"][regime]
    epochs = task_epochs(task) if regime == "full" else ft["epochs"]
    return {"model": model_spec(), "data": data_spec(), "finetune": ft, "epochs": epochs,
            "seed": seed, "device": CFG["device"],
            "batch_size": CFG["evaluation"]["batch_size"]}


def extract_spec(regime):
    s = {"model": model_spec()}
    if regime == "lora":
        s["lora"] = {k: CFG["finetune"]["lora"][k] for k in ("rank", "alpha")}
    return s


def method_spec(method, regime, suite, seed):
    s = eval_spec(seed)
    s["method_spec"] = {k: v for k, v in METHODS[method].items() if k != "sweep"}
    if regime == "lora":
        s["lora_rank"] = CFG["finetune"]["lora"]["rank"]
    return s


def merged_eval_spec(method, seed):
    s = eval_spec(seed)
    s["alpha_grid"] = alpha_grid(CFG, method)
    if CFG["evaluation"]["alpha_search"] != "grid":  # absent = grid: old runs keep their params
        s["alpha_search"] = CFG["evaluation"]["alpha_search"]
        s["alpha_stride"] = CFG["evaluation"]["alpha_stride"]
    return s


def decompose_spec(regime, seed):
    s = {"seed": seed, "device": CFG["device"]}
    if regime == "lora":
        s["lora_rank"] = CFG["finetune"]["lora"]["rank"]
    return s


def report_spec():
    rep = CFG["report"]
    return {"name": CFG["name"], "suites": CFG["suites"], "method_order": list(CFG["methods"]),
            "seeds": SEEDS, "seeded_paths": SEEDED, "bootstrap": rep["bootstrap"],
            "compare_on": rep["compare_on"]}


# ----------------------------------------------------------------- methods and suites


def method_needs_data(method):
    return _methods.get_method(METHODS[method]["method"]).needs_data


def method_uses_basis(method):
    """Merges that read the suite's shared decomposition (the decompose rule): TSV-M, DC-Merge,
    MDA and MDA AM unless `exact: true`, when the config's shared_basis is on."""
    if not CFG["shared_basis"]:
        return False
    spec = METHODS[method]
    return _methods.build(spec["method"], **spec.get("params", {})).uses_shared_basis()


def basis_sources():
    """Code whose edits rerun the decompositions: mergelab/basis.py and the methods' linalg."""
    base = Path(workflow.basedir)
    files = [base / "src" / "mergelab" / "basis.py"] + _methods.module_sources("linalg", "base")
    return sorted({str(Path(p).relative_to(base)) for p in files})


def method_sources(method):
    """The method's module and the shared base: editing either reruns its merges."""
    base = Path(workflow.basedir)
    return [str(p.relative_to(base)) for p in _methods.source_files(METHODS[method]["method"])]


def suite_tasks(suite):
    return CFG["suites"][suite]


def merges():
    """(regime, suite, method) triples of the main tables."""
    return [(r, s, m) for m in CFG["methods"] for r in method_regimes(CFG, m) for s in SUITES]


def first_instance(method, **params):
    """The first configured instance of a method (with these params), or None."""
    for name, spec in CFG["methods"].items():
        p = {**_methods.get_method(spec["method"]).defaults, **(spec.get("params") or {})}
        if spec["method"] == method and all(p.get(k) == v for k, v in params.items()):
            return name
    return None


# ----------------------------------------------------------------- targets


def all_targets(manifest=True):
    out = [manifest_path()] if manifest else []
    for r in REGIMES:
        for s in SUITES:
            out += with_exts(table(f"{r}_{s}"), "md", "tex", "csv")
            out += with_exts(figure(f"accuracy_{r}_{s}"), "png", "pdf")
            if len(SEEDS) > 1:
                out += with_exts(figure(f"ranks_{r}_{s}"), "png", "pdf")
    if CFG["report"]["regime"]:
        out += with_exts(table("regime"), "md", "json")
    if CFG["pretrain"]["reference"] and pretrains_on_corpus():
        out.append(pretrained("reproduction.json"))
    if CFG["analysis"]["enabled"]:
        out += analysis_targets()  # rules/common/analysis.smk
    out += ablation_targets()  # rules/common/ablations.smk
    return out


# ----------------------------------------------------------------- input functions


def pretrains_on_corpus():
    """θ0 is pretrained by the pipeline (mini suite), not published weights nor a random init."""
    return not CFG["model"]["pretrained"] and not CFG["model"]["random_init"]


def pretrain_inputs(wildcards):
    """The corpus (pretrained here) or the shipped weights file (so a new file reruns)."""
    if pretrains_on_corpus():
        return {"corpus": corpus()}
    if shipped.is_shipped(CFG["model"]["name"], CFG["model"]["pretrained"]):
        return {"shipped": str(shipped.weights_path(CFG["model"]["pretrained"]))}
    return {}


def pretrain_command():
    if CFG["model"]["random_init"] and not CFG["model"]["pretrained"]:
        return "random-init"
    return "pretrain"


def import_pretrained(pair):
    """θ0 of an imported checkpoint: the config's checkpoint.pretrained, else (lora)
    model.hf_name, else the pipeline's θ0 file. Returns (path or hub id, is the pipeline file)."""
    regime, task = pair_parts(pair)
    ck = CFG["data"]["tasks"][task]["checkpoint"]
    if ck.get("pretrained"):
        return ck["pretrained"], False
    if regime == "lora" and CFG["model"].get("hf_name"):
        return CFG["model"]["hf_name"], False
    return pretrained(), True


def import_spec(pair):
    regime, task = pair_parts(pair)
    ck = CFG["data"]["tasks"][task]["checkpoint"]
    s = {"kind": ck["kind"], "source": ck["source"], "regime": regime, "task": task,
         "pretrained": import_pretrained(pair)[0], "cache_dir": CFG["model"].get("cache_dir")}
    if regime == "lora":
        s["expected_rank"] = CFG["finetune"]["lora"]["rank"]
    return s


def import_inputs(w):
    """The pipeline's θ0 when it is the checkpoint's θ0; the checkpoint itself when local."""
    inp = {}
    pre, own = import_pretrained(w.imported)
    if own:
        inp["pretrained"] = pre
    src = CFG["data"]["tasks"][pair_parts(w.imported)[1]]["checkpoint"]["source"]
    if Path(src).exists():
        inp["checkpoint"] = src
    return inp


def suite_taskvectors(w):
    return [taskvector(w.regime, t, run_seed(w)) for t in suite_tasks(w.suite)]


def suite_data(w):
    """What a job that runs the model on a suite's tasks reads: θ0, datasets and heads."""
    tasks = suite_tasks(w.suite)
    return {"pretrained": pretrained(), "data": [dataset(t) for t in tasks],
            "heads": [head(t) for t in tasks]}


def merge_inputs(w):
    seed = run_seed(w)
    inp = {"taskvectors": suite_taskvectors(w), "code": method_sources(w.method)}
    if method_uses_basis(w.method):
        inp["basis"] = basis(w.regime, w.suite, seed)
    init = init_source(CFG, w.method)
    if init is not None:  # init: from_method (MDA AM): λ starts at that instance's validated α
        inp["init_eval"] = merged_eval(w.regime, w.suite, init, seed)
    if method_needs_data(w.method):
        inp.update(suite_data(w))
    return inp


def eval_merged_inputs(w):
    seed = run_seed(w)
    return {
        "merged": merged(w.regime, w.suite, w.method, seed),
        "info": merged(w.regime, w.suite, w.method, seed, ext="json"),
        **suite_data(w),
        "individual": [individual_eval(w.regime, t, seed) for t in suite_tasks(w.suite)],
    }


def report_inputs(w):
    """Metrics JSONs of every row and seed; the report reads the predictions beside them."""
    tasks = suite_tasks(w.suite)
    methods = [m for (r, s, m) in merges() if r == w.regime and s == w.suite]
    out = [zeroshot_eval(w.regime, t) for t in tasks]
    for seed in SEEDS:
        out += [individual_eval(w.regime, t, seed) for t in tasks]
        out += [merged_eval(w.regime, w.suite, m, seed) for m in methods]
    return out


def report_predictions(w):
    return [str(Path(p).with_suffix(".npz")) for p in report_inputs(w)]
