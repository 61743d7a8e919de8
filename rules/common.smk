# Helpers shared by every rule: the validated config, paths, config subsets that
# become `params` (so a changed value reruns exactly the jobs that use it).

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from mergelab.config import ConfigError, alpha_grid, method_regimes, validate_config
from mergelab import methods as _methods

try:
    CFG = validate_config(config)
except ConfigError as _exc:
    raise WorkflowError(str(_exc))

R = CFG["results_dir"]
D = CFG["data"]["root"]
LOGS = f"{R}/logs"
SRC = str(Path(workflow.basedir) / "src")
MERGELAB = f"PYTHONPATH={SRC}${{PYTHONPATH:+:$PYTHONPATH}} python -m mergelab.cli"
TASKS = sorted({t for members in CFG["suites"].values() for t in members})
SUITES = list(CFG["suites"])
REGIMES = list(CFG["regimes"])


wildcard_constraints:
    task="|".join(TASKS),
    regime="full|lora",
    suite="|".join(SUITES),
    method="|".join(CFG["methods"]),


def jq(obj):
    """Compact, key-sorted JSON: stable params for Snakemake's rerun triggers."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def model_spec():
    return CFG["model"]


def data_spec():
    d = CFG["data"]
    return {k: d[k] for k in ("image_size", "max_train_per_task", "max_eval_per_task", "num_workers")}


def eval_spec():
    return {"model": model_spec(), "data": data_spec(), "seed": CFG["seed"],
            "device": CFG["device"], "batch_size": CFG["evaluation"]["batch_size"]}


def task_epochs(task):
    e = CFG["data"]["tasks"][task].get("epochs")
    return e if e is not None else CFG["finetune"]["full"]["epochs"]


def finetune_spec(regime, task):
    ft = CFG["finetune"][regime]
    epochs = task_epochs(task) if regime == "full" else ft["epochs"]
    return {"model": model_spec(), "data": data_spec(), "finetune": ft, "epochs": epochs,
            "seed": CFG["seed"], "device": CFG["device"],
            "batch_size": CFG["evaluation"]["batch_size"]}


def extract_spec(regime):
    s = {"model": model_spec()}
    if regime == "lora":
        s["lora"] = {k: CFG["finetune"]["lora"][k] for k in ("rank", "alpha")}
    return s


def method_spec(method, regime, suite):
    s = eval_spec()
    s["method_spec"] = CFG["methods"][method]
    if regime == "lora":
        s["lora_rank"] = CFG["finetune"]["lora"]["rank"]
    return s


def merged_eval_spec(method):
    s = eval_spec()
    s["alpha_grid"] = alpha_grid(CFG, method)
    return s


def method_needs_data(method):
    return _methods.get_method(CFG["methods"][method]["method"]).needs_data


def method_sources(method):
    """The method's module and the shared base: editing either reruns its merges."""
    base = Path(workflow.basedir)
    return [str(p.relative_to(base)) for p in _methods.source_files(CFG["methods"][method]["method"])]


def suite_tasks(suite):
    return CFG["suites"][suite]


def merges():
    """(regime, suite, method) triples the config asks for."""
    return [(r, s, m) for m in CFG["methods"] for r in method_regimes(CFG, m) for s in SUITES]


def report_spec():
    return {"name": CFG["name"], "suites": CFG["suites"], "method_order": list(CFG["methods"])}


def all_targets():
    out = []
    for r in REGIMES:
        for s in SUITES:
            out += expand(f"{R}/tables/{r}_{s}.{{ext}}", ext=["md", "tex", "csv"])
            out += expand(f"{R}/figures/accuracy_{r}_{s}.{{ext}}", ext=["png", "pdf"])
    return out
