# Helpers shared by every rule: the validated config, paths, config subsets that
# become `params` (so a changed value reruns exactly the jobs that use it).

import json
import os
import re
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from mergelab.config import (
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

R = CFG["results_dir"]
D = CFG["data"]["root"]
LOGS = f"{R}/logs"
# Seeds (config key `seeds`, docs/uncertainty.md): a list replicates fine-tuning, merging
# and evaluation once per seed under {R}/seed<N>/ (RS: the per-seed rules' root, with the
# {seed} wildcard); data, θ0, heads and zero-shot evaluations are shared. Without the key,
# the single `seed` runs at the historical paths (RS = R).
SEEDED = CFG["seeds"] is not None
SEEDS = list(CFG["seeds"]) if SEEDED else [CFG["seed"]]
RS = f"{R}/seed{{seed}}" if SEEDED else R
SLOGS = f"{RS}/logs"


def seed_root(seed):
    """The results root of one seed's fine-tuning, merges and evaluations."""
    return f"{R}/seed{seed}" if SEEDED else R


def run_seed(w):
    """The seed of a per-seed job (its {seed} wildcard), else the config's seed."""
    return int(w.seed) if SEEDED else CFG["seed"]


# Analysis figures and ablations read the first seed's task vectors, merges and evaluations.
RS0 = seed_root(SEEDS[0])
SRC = str(Path(workflow.basedir) / "src")
# What every job's shell exports (also the fork server's environment, below).
# Rules call `python -m mergelab.cli`; the package is importable from the checkout too.
# OMP_WAIT_POLICY=PASSIVE: OpenMP threads sleep instead of spinning, which keeps torch
# fast when jobs share cores (measured 7x faster pretraining on a loaded 2-core box).
# PATH starts with the bin directory of the interpreter running Snakemake, so `python` in a
# job is that environment's even when it is not activated (.venv/bin/snakemake ...).
JOB_ENV = {
    "PATH": ":".join(p for p in (str(Path(sys.executable).parent), os.environ.get("PATH")) if p),
    "PYTHONPATH": ":".join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p),
    "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY") or "PASSIVE",
}
shell.prefix(
    "export "
    + " ".join(f"{k}={shlex.quote(v)}" for k, v in JOB_ENV.items()).replace("{", "{{").replace("}", "}}")
    + "; "
)


def _gpu_slots():
    """Local runs with `--resources gpu=N`, N > 1 (profiles/multigpu): jobs take distinct
    GPUs through mergelab.gpuslots (docs/cluster.md). Off under cluster executors (SLURM
    pins GPUs itself) and when MERGELAB_GPU_SLOTS is already set (it then wins)."""
    n = workflow.global_resources.get("gpu")
    n = getattr(n, "value", n)
    if workflow.local_exec and isinstance(n, int) and n > 1:
        os.environ.setdefault("MERGELAB_GPU_SLOTS", str(n))


_gpu_slots()


# Local runs: jobs run in children of a fork server that has imported torch, open_clip,
# transformers and datasets once (src/mergelab/forkserver.py), instead of spending ~8 s
# each importing them. Its environment is what the jobs' shell sets up (JOB_ENV and the
# thread variables Snakemake sets for a 1-thread job); jobs whose environment differs
# (more threads, --use-conda) run in their own process. MERGELAB_FORKSERVER=off disables it.
_FORKSERVER = {}
_THREAD_VARS = ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def start_forkserver():
    from mergelab import forkserver
    if not workflow.local_exec or os.environ.get(forkserver.ENV):
        return
    try:
        proc, path = forkserver.start({**JOB_ENV, **{k: "1" for k in _THREAD_VARS}}, "mergelab.cli:run")
    except OSError as exc:  # e.g. no writable temporary directory: jobs import for themselves
        print(f"mergelab: fork server not started: {exc}", file=sys.stderr)
        return
    _FORKSERVER.update(proc=proc, path=path)
    os.environ[forkserver.ENV] = path


def stop_forkserver():
    import shutil
    from mergelab import forkserver
    if _FORKSERVER:
        _FORKSERVER["proc"].terminate()  # a running server removes its socket and directory;
        _FORKSERVER["proc"].wait()  # one still importing dies at once, so remove them here too
        shutil.rmtree(os.path.dirname(_FORKSERVER["path"]), ignore_errors=True)
        os.environ.pop(forkserver.ENV, None)
        _FORKSERVER.clear()


onstart:
    start_forkserver()


onsuccess:
    stop_forkserver()


onerror:
    stop_forkserver()


TASKS = sorted({t for members in CFG["suites"].values() for t in members})
SUITES = list(CFG["suites"])
REGIMES = list(CFG["regimes"])
METHODS = all_method_instances(CFG)  # config instances + generated sweep instances
AN = CFG["analysis"]
AN_SUITE = AN["suite"] or CFG["report"]["main_suite"] or SUITES[0]


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
    sweep="|".join(AN["sweeps"]) or "__none__",
    regime="full|lora",
    suite="|".join(SUITES),
    method="|".join(METHODS),
    imported="|".join(re.escape(p) for p in IMPORTED) or "__none__",
    seed="[0-9]+",


def jq(obj):
    """Compact, key-sorted JSON: stable params for Snakemake's rerun triggers."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def model_spec():
    return CFG["model"]


def data_spec():
    d = CFG["data"]
    return {k: d[k] for k in ("image_size", "max_train_per_task", "max_eval_per_task", "num_workers")}


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


def method_needs_data(method):
    return _methods.get_method(METHODS[method]["method"]).needs_data


def method_uses_basis(method):
    """Merges that read the suite's shared decomposition (the decompose rule): TSV-M, DC-Merge,
    MDA and MDA AM unless `exact: true`, when the config's shared_basis is on."""
    if not CFG["shared_basis"]:
        return False
    spec = METHODS[method]
    return _methods.build(spec["method"], **spec.get("params", {})).uses_shared_basis()


def decompose_spec(regime, seed):
    s = {"seed": seed, "device": CFG["device"]}
    if regime == "lora":
        s["lora_rank"] = CFG["finetune"]["lora"]["rank"]
    return s


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


def sweep_members(sweep):
    return [m for m, spec in METHODS.items() if spec.get("sweep", {}).get("name") == sweep]


def sweep_regimes(sweep):
    return method_regimes(CFG, sweep_members(sweep)[0])


def report_spec():
    rep = CFG["report"]
    return {"name": CFG["name"], "suites": CFG["suites"], "method_order": list(CFG["methods"]),
            "seeds": SEEDS, "seeded_paths": SEEDED, "bootstrap": rep["bootstrap"],
            "compare_on": rep["compare_on"]}


def all_targets(manifest=True):
    out = [f"{R}/manifest.json"] if manifest else []
    for r in REGIMES:
        for s in SUITES:
            out += expand(f"{R}/tables/{r}_{s}.{{ext}}", ext=["md", "tex", "csv"])
            out += expand(f"{R}/figures/accuracy_{r}_{s}.{{ext}}", ext=["png", "pdf"])
            if len(SEEDS) > 1:
                out += expand(f"{R}/figures/ranks_{r}_{s}.{{ext}}", ext=["png", "pdf"])
    if CFG["report"]["regime"]:
        out += [f"{R}/tables/regime.md", f"{R}/tables/regime.json"]
    if CFG["pretrain"]["reference"] and pretrains_on_corpus():
        out.append(f"{R}/pretrained/reproduction.json")
    if AN["enabled"]:
        out += analysis_targets()
    out += ablation_targets()  # rules/ablations.smk
    return out


def analysis_targets():
    out = []
    for r in REGIMES:
        out += expand(f"{R}/figures/analysis/spectrum_{r}.{{ext}}", ext=["png", "pdf"])
        if [m for m in AN["similarity_methods"] if r in method_regimes(CFG, m)]:
            out += expand(f"{R}/figures/analysis/similarity_{r}.{{ext}}", ext=["png", "pdf"])
        if etf_methods(r):
            out += expand(f"{R}/figures/analysis/etf_{r}.{{ext}}", ext=["png", "pdf"])
    for sweep in AN["sweeps"]:
        out += expand(f"{R}/figures/analysis/sensitivity_{sweep}.{{ext}}", ext=["png", "pdf"])
    return out


# ----------------------------------------------------------------- input functions


def pretrains_on_corpus():
    """θ0 is pretrained by the pipeline (mini suite), not published weights nor a random init."""
    return not CFG["model"]["pretrained"] and not CFG["model"]["random_init"]


def pretrain_inputs(wildcards):
    """The corpus (pretrained here) or the shipped weights file (so a new file reruns)."""
    if pretrains_on_corpus():
        return {"corpus": f"{D}/_corpus"}
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
    return rules.pretrain.output.weights, True


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
    return [f"{seed_root(run_seed(w))}/taskvectors/{w.regime}/{t}.safetensors" for t in suite_tasks(w.suite)]


def merge_inputs(w):
    tasks = suite_tasks(w.suite)
    inp = {
        "taskvectors": suite_taskvectors(w),
        "code": method_sources(w.method),
    }
    if method_uses_basis(w.method):
        inp["basis"] = f"{seed_root(run_seed(w))}/basis/{w.regime}/{w.suite}.safetensors"
    init = init_source(CFG, w.method)
    if init is not None:  # init: from_method (MDA AM): λ starts at that instance's validated α
        inp["init_eval"] = f"{seed_root(run_seed(w))}/eval/{w.regime}/{w.suite}/{init}.json"
    if method_needs_data(w.method):
        inp["pretrained"] = rules.pretrain.output.weights
        inp["data"] = [f"{D}/{t}" for t in tasks]
        inp["heads"] = [f"{R}/heads/{t}.safetensors" for t in tasks]
    return inp


def eval_merged_inputs(w):
    tasks = suite_tasks(w.suite)
    return {
        "merged": rules.merge.output.tau,
        "info": rules.merge.output.info,
        "pretrained": rules.pretrain.output.weights,
        "data": [f"{D}/{t}" for t in tasks],
        "heads": [f"{R}/heads/{t}.safetensors" for t in tasks],
        "individual": [f"{seed_root(run_seed(w))}/eval/{w.regime}/individual/{t}.json" for t in tasks],
    }


def report_inputs(w):
    """Metrics JSONs of every row and seed; the report reads the predictions beside them."""
    tasks = suite_tasks(w.suite)
    methods = [m for (r, s, m) in merges() if r == w.regime and s == w.suite]
    out = [f"{R}/eval/{w.regime}/zeroshot/{t}.json" for t in tasks]
    for seed in SEEDS:
        S = seed_root(seed)
        out += [f"{S}/eval/{w.regime}/individual/{t}.json" for t in tasks]
        out += [f"{S}/eval/{w.regime}/{w.suite}/{m}.json" for m in methods]
    return out


def report_predictions(w):
    return [str(Path(p).with_suffix(".npz")) for p in report_inputs(w)]


REGIME_SUITE = CFG["report"]["main_suite"] or SUITES[0]


def first_instance(method, **params):
    """The first configured instance of a method (with these params), or None."""
    for name, spec in CFG["methods"].items():
        p = {**_methods.get_method(spec["method"]).defaults, **(spec.get("params") or {})}
        if spec["method"] == method and all(p.get(k) == v for k, v in params.items()):
            return name
    return None


def regime_report_spec():
    return {"tasks": suite_tasks(REGIME_SUITE), "model": model_spec(),
            "ta_method": first_instance("task_arithmetic") or "task_arithmetic",
            "adamerging_method": first_instance("adamerging", granularity="layer"),
            "title": f"{CFG['name']}: regime statistics, suite '{REGIME_SUITE}'"}


def regime_report_inputs(w):
    spec = regime_report_spec()
    tasks = spec["tasks"]
    evals = [f"{R}/eval/{REGIMES[0]}/zeroshot/{t}.json" for t in tasks]
    for r in REGIMES:  # the first seed's run (RS0)
        evals += [f"{RS0}/eval/{r}/individual/{t}.json" for t in tasks]
        evals += [f"{RS0}/eval/{r}/{REGIME_SUITE}/{m}.json"
                  for m in (spec["ta_method"], spec["adamerging_method"])
                  if m in CFG["methods"] and r in method_regimes(CFG, m)]
    if "full" in REGIMES:
        evals += [f"{RS0}/eval/full/lowrank/{t}.json" for t in tasks]
    out = {"evals": evals, "pretrained": rules.pretrain.output.weights}
    for r in REGIMES:
        out[f"tv_{r}"] = [f"{RS0}/taskvectors/{r}/{t}.safetensors" for t in tasks]
    return out


def similarity_methods(regime):
    return [m for m in AN["similarity_methods"] if regime in method_regimes(CFG, m)]


ETF_FALLBACK = ("task_arithmetic", "tsv_m", "mda")  # raw, orthogonalised, ETF-aligned


def etf_methods(regime):
    """Methods of the task-level ΔETF figure (analysis_etf re-runs their merges): the data-free
    ones of analysis.similarity_methods; when it names none, the config's instances of
    task_arithmetic, tsv_m and mda."""
    picked = [m for m in similarity_methods(regime) if not method_needs_data(m)]
    return picked or [m for m, s in CFG["methods"].items()
                      if s["method"] in ETF_FALLBACK and regime in method_regimes(CFG, m)]


# ----------------------------------------------------------------- run manifest


def manifest_files():
    """Every artifact of the run, as the rules name them (the manifest rule's inputs)."""
    out = [f"{D}/{t}" for t in TASKS]
    if pretrains_on_corpus():
        out.append(f"{D}/_corpus")
    out += [rules.pretrain.output.weights, rules.pretrain.output.metrics]
    out += [f"{R}/heads/{t}.safetensors" for t in TASKS]
    for r in REGIMES:
        out += [p for t in TASKS for p in with_predictions(f"{R}/eval/{r}/zeroshot/{t}.json")]
    for seed in SEEDS:
        out += seed_files(seed_root(seed))
    if AN["enabled"]:
        S = RS0
        for sweep in AN["sweeps"]:
            for m in sweep_members(sweep):
                for r in method_regimes(CFG, m):
                    out += [f"{S}/merged/{r}/{AN_SUITE}/{m}.safetensors", f"{S}/merged/{r}/{AN_SUITE}/{m}.json",
                            *with_predictions(f"{S}/eval/{r}/{AN_SUITE}/{m}.json")]
                    if method_uses_basis(m):
                        out += [f"{S}/basis/{r}/{AN_SUITE}.safetensors", f"{S}/basis/{r}/{AN_SUITE}.json"]
        out += [p[: -len(".png")] + ".json" for p in analysis_targets() if p.endswith(".png")]
    for r, s, m in merges():
        out.append(f"{R}/tables/{r}_{s}.json")
    if CFG["report"]["regime"] and "full" in REGIMES:
        for t in suite_tasks(REGIME_SUITE):
            out += with_predictions(f"{RS0}/eval/full/lowrank/{t}.json")
    out += all_targets(manifest=False)
    return list(dict.fromkeys(out))


def with_predictions(metrics_json):
    """An evaluation's outputs: its metrics JSON and the per-sample predictions beside it."""
    return [metrics_json, metrics_json[: -len(".json")] + ".npz"]


def seed_files(S):
    """The artifacts of one seed under its results root S."""
    out = []
    for r in REGIMES:
        for t in TASKS:
            if f"{r}/{t}" not in IMPORTED:
                out += [f"{S}/finetune/{r}/{t}.safetensors", f"{S}/finetune/{r}/{t}.json"]
            out += [f"{S}/taskvectors/{r}/{t}.safetensors",
                    *with_predictions(f"{S}/eval/{r}/individual/{t}.json")]
    for r, s, m in merges():
        out += [f"{S}/merged/{r}/{s}/{m}.safetensors", f"{S}/merged/{r}/{s}/{m}.json",
                *with_predictions(f"{S}/eval/{r}/{s}/{m}.json")]
        if method_uses_basis(m):
            out += [f"{S}/basis/{r}/{s}.safetensors", f"{S}/basis/{r}/{s}.json"]
    return out


def manifest_spec():
    """What the manifest cannot read from the artifacts' own provenance blocks."""
    return {
        "name": CFG["name"], "results_dir": R, "data_root": D, "regimes": REGIMES,
        "suites": CFG["suites"], "config": CFG,
        "data": {t: {"task": CFG["data"]["tasks"][t], "seed": CFG["seed"], "mini": CFG["data"]["mini"]}
                 for t in TASKS},
        "heads": {t: {"model": model_spec(), "task": CFG["data"]["tasks"][t]} for t in TASKS},
        "extract": {r: extract_spec(r) for r in REGIMES},
        "imported": {r: [pair_parts(p)[1] for p in IMPORTED if pair_parts(p)[0] == r]
                     for r in REGIMES},
        "imports": {p: import_spec(p) for p in IMPORTED},
        "corpus": {"seed": CFG["seed"], **{k: CFG["pretrain"][k] for k in
                   ("corpus_size", "caption_noise", "family_weights")}},
    }


# ----------------------------------------------------------------- ablations (rules/ablations.smk)

GEN = CFG["generalization"]
GEN_SUITE = GEN["suite"] or CFG["report"]["main_suite"] or SUITES[0]
TC = CFG["task_count"]


def generalization_methods(regime):
    return [m for m in (GEN["methods"] or list(CFG["methods"])) if regime in method_regimes(CFG, m)]


def task_count_methods(regime):
    return [m for m in (TC["methods"] or list(CFG["methods"])) if regime in method_regimes(CFG, m)]


def ablation_targets():
    out = []
    for r in REGIMES:
        if GEN["heldout"] and generalization_methods(r):
            out += expand(f"{R}/tables/generalization_{r}.{{ext}}", ext=["md", "csv", "json"])
            out += expand(f"{R}/figures/generalization_{r}.{{ext}}", ext=["png", "pdf"])
        if len(TC["suites"]) > 1 and task_count_methods(r):
            out += expand(f"{R}/figures/task_count_{r}.{{ext}}", ext=["png", "pdf", "json"])
    return out
