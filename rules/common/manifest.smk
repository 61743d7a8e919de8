# The manifest rule's inputs (rules/provenance.smk): every artifact of the run, and what
# the manifest cannot read from the artifacts' own provenance blocks.


def seed_files(seed):
    """The artifacts of one seed's fine-tuning, merges and evaluations."""
    out = []
    for r in REGIMES:
        for t in TASKS:
            if f"{r}/{t}" not in IMPORTED:
                out += [finetuned(r, t, seed), finetuned(r, t, seed, ext="json")]
            out += [taskvector(r, t, seed), *with_predictions(individual_eval(r, t, seed))]
    for r, s, m in merges():
        out += [merged(r, s, m, seed), merged(r, s, m, seed, ext="json"),
                *with_predictions(merged_eval(r, s, m, seed))]
        if method_uses_basis(m):
            out += [basis(r, s, seed), basis(r, s, seed, ext="json")]
    return out


def analysis_files():
    """The sweeps' merges and evaluations and the analysis figures' data (first seed)."""
    out = []
    for sweep in ANALYSIS["sweeps"]:
        for m in sweep_members(sweep):
            for r in method_regimes(CFG, m):
                out += [merged(r, ANALYSIS_SUITE, m, FIRST_SEED), merged(r, ANALYSIS_SUITE, m, FIRST_SEED, ext="json"),
                        *with_predictions(merged_eval(r, ANALYSIS_SUITE, m, FIRST_SEED))]
                if method_uses_basis(m):
                    out += [basis(r, ANALYSIS_SUITE, FIRST_SEED), basis(r, ANALYSIS_SUITE, FIRST_SEED, ext="json")]
    out += [p[: -len(".png")] + ".json" for p in analysis_targets() if p.endswith(".png")]
    return out


def manifest_files():
    """Every artifact of the run, as the rules name them (the manifest rule's inputs)."""
    out = [dataset(t) for t in TASKS]
    if pretrains_on_corpus():
        out.append(corpus())
    out += [pretrained(), pretrained("metrics.json")]
    out += [head(t) for t in TASKS]
    for r in REGIMES:
        out += [p for t in TASKS for p in with_predictions(zeroshot_eval(r, t))]
    for seed in SEEDS:
        out += seed_files(seed)
    if ANALYSIS["enabled"]:
        out += analysis_files()
    for r, s, m in merges():
        out.append(table(f"{r}_{s}") + ".json")
    if CFG["report"]["regime"] and "full" in REGIMES:
        for t in suite_tasks(MAIN_SUITE):
            out += with_predictions(lowrank_eval(t, FIRST_SEED))
        if computes_disentanglement():
            out.append(disentanglement_eval(FIRST_SEED))
    out += all_targets(manifest=False)
    return list(dict.fromkeys(out))


def manifest_spec():
    """What the manifest cannot read from the artifacts' own provenance blocks."""
    return {
        "name": CFG["name"], "results_dir": RESULTS, "data_root": DATA_ROOT, "regimes": REGIMES,
        "suites": CFG["suites"], "config": CFG,
        "data": {t: {k: v for k, v in prepare_spec(t).items() if k != "cache_dir"} for t in TASKS},
        "heads": {t: {k: v for k, v in heads_spec(t).items() if k != "device"} for t in TASKS},
        "extract": {r: extract_spec(r) for r in REGIMES},
        "imported": {r: [pair_parts(p)[1] for p in IMPORTED if pair_parts(p)[0] == r]
                     for r in REGIMES},
        "imports": {p: import_spec(p) for p in IMPORTED},
        "corpus": corpus_spec(),
    }
