# Helpers of the regime report (rules/regime.smk): its spec and inputs.

def regime_report_spec():
    return {"tasks": suite_tasks(MAIN_SUITE), "model": model_spec(),
            "ta_method": first_instance("task_arithmetic") or "task_arithmetic",
            "adamerging_method": first_instance("adamerging", granularity="layer"),
            "title": f"{CFG['name']}: regime statistics, suite '{MAIN_SUITE}'"}


def regime_report_inputs(w):
    """The first seed's evaluations of the main suite, its task vectors and θ0, and the
    zero-shot and fine-tuned accuracy of the run's other tasks."""
    spec = regime_report_spec()
    tasks = spec["tasks"]
    evals = [zeroshot_eval(REGIMES[0], t) for t in TASKS]
    for r in REGIMES:
        evals += [individual_eval(r, t, FIRST_SEED) for t in TASKS]
        evals += [merged_eval(r, MAIN_SUITE, m, FIRST_SEED)
                  for m in (spec["ta_method"], spec["adamerging_method"])
                  if m in CFG["methods"] and r in method_regimes(CFG, m)]
    if "full" in REGIMES:
        evals += [lowrank_eval(t, FIRST_SEED) for t in tasks]
        if computes_disentanglement():
            evals.append(disentanglement_eval(FIRST_SEED))
    out = {"evals": evals, "pretrained": pretrained()}
    for r in REGIMES:
        out[f"tv_{r}"] = [taskvector(r, t, FIRST_SEED) for t in tasks]
    return out


def computes_disentanglement():
    cfg = CFG["report"]["disentanglement"]
    return cfg["enabled"] and "full" in REGIMES and len(suite_tasks(MAIN_SUITE)) > 1


def disentanglement_inputs(w):
    tasks = suite_tasks(MAIN_SUITE)
    return {"pretrained": pretrained(), "data": [dataset(t) for t in tasks],
            "heads": [head(t) for t in tasks],
            "taskvectors": [taskvector("full", t, FIRST_SEED) for t in tasks]}


def disentanglement_spec():
    return {**eval_spec(FIRST_SEED), "disentanglement": CFG["report"]["disentanglement"]}
