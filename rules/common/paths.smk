# One function per artifact path. Rule outputs call them with their wildcard defaults
# ("{task}", "{regime}", ...); input functions, the manifest and the targets call them with
# values. A new artifact is one function here.


def seed_root(seed="{seed}"):
    """The results root of one seed's fine-tuning, merges and evaluations: RESULTS/seed<N>
    with a seed list (config `seeds`), RESULTS itself with the single `seed`."""
    return f"{RESULTS}/seed{seed}" if SEEDED else RESULTS


def dataset(task="{task}"):
    return f"{DATA_ROOT}/{task}"


def corpus():
    return f"{DATA_ROOT}/_corpus"


def pretrained(name="clip.safetensors"):
    """θ0 (clip.safetensors), its metrics.json, or the reproduction.json of shipped weights."""
    return f"{RESULTS}/pretrained/{name}"


def head(task="{task}"):
    return f"{RESULTS}/heads/{task}.safetensors"


def finetuned(regime="{regime}", task="{task}", seed="{seed}", ext="safetensors"):
    return f"{seed_root(seed)}/finetune/{regime}/{task}.{ext}"


def taskvector(regime="{regime}", task="{task}", seed="{seed}"):
    return imported_taskvector(f"{regime}/{task}", seed)


def imported_taskvector(pair="{imported}", seed="{seed}"):
    """The task vector of '<regime>/<task>' (the import_checkpoint rule's wildcard)."""
    return f"{seed_root(seed)}/taskvectors/{pair}.safetensors"


def basis(regime="{regime}", suite="{suite}", seed="{seed}", ext="safetensors"):
    return f"{seed_root(seed)}/basis/{regime}/{suite}.{ext}"


def merged(regime="{regime}", suite="{suite}", method="{method}", seed="{seed}", ext="safetensors"):
    return f"{seed_root(seed)}/merged/{regime}/{suite}/{method}.{ext}"


def zeroshot_eval(regime="{regime}", task="{task}", ext="json"):
    """Zero-shot does not depend on the seed: one per task, shared by every seed."""
    return f"{RESULTS}/eval/{regime}/zeroshot/{task}.{ext}"


def individual_eval(regime="{regime}", task="{task}", seed="{seed}", ext="json"):
    return f"{seed_root(seed)}/eval/{regime}/individual/{task}.{ext}"


def lowrank_eval(task="{task}", seed="{seed}", ext="json"):
    """The full task vector truncated to rank r/T (the regime report's check)."""
    return f"{seed_root(seed)}/eval/full/lowrank/{task}.{ext}"


def disentanglement_eval(seed="{seed}"):
    """The weight-disentanglement errors of the main suite's full task vectors (regime report)."""
    return f"{seed_root(seed)}/regime/disentanglement_full.json"


def merged_eval(regime="{regime}", suite="{suite}", method="{method}", seed="{seed}", ext="json"):
    return f"{seed_root(seed)}/eval/{regime}/{suite}/{method}.{ext}"


def generalization_eval(regime="{regime}", method="{method}", ext="json"):
    return f"{RESULTS}/eval/{regime}/generalization/{method}.{ext}"


def with_predictions(metrics_json):
    """An evaluation's outputs: its metrics JSON and the per-sample predictions beside it."""
    return [metrics_json, metrics_json[: -len(".json")] + ".npz"]


def table(name):
    """A table's stem (no extension) under RESULTS/tables, e.g. table('full_main')."""
    return f"{RESULTS}/tables/{name}"


def figure(name):
    """A figure's stem (no extension) under RESULTS/figures, e.g. figure('analysis/etf_full')."""
    return f"{RESULTS}/figures/{name}"


def manifest_path():
    return f"{RESULTS}/manifest.json"


def with_exts(stem, *exts):
    return [f"{stem}.{e}" for e in exts]
