# Helpers of the analysis rules (rules/analysis.smk): which methods and sweeps they read,
# their specs and targets.

ANALYSIS = CFG["analysis"]
ANALYSIS_SUITE = ANALYSIS["suite"] or MAIN_SUITE
ETF_FALLBACK = ("task_arithmetic", "tsv_m", "mda")  # raw, orthogonalised, ETF-aligned


def similarity_methods(regime):
    return [m for m in ANALYSIS["similarity_methods"] if regime in method_regimes(CFG, m)]


def etf_methods(regime):
    """Methods of the task-level ΔETF figure (analysis_etf re-runs their merges): the data-free
    ones of analysis.similarity_methods; when it names none, the config's instances of
    task_arithmetic, tsv_m and mda."""
    picked = [m for m in similarity_methods(regime) if not method_needs_data(m)]
    return picked or [m for m, s in CFG["methods"].items()
                      if s["method"] in ETF_FALLBACK and regime in method_regimes(CFG, m)]


def sweep_members(sweep):
    return [m for m, spec in METHODS.items() if spec.get("sweep", {}).get("name") == sweep]


def analysis_taskvectors(w):
    return [taskvector(w.regime, t, FIRST_SEED) for t in suite_tasks(ANALYSIS_SUITE)]


def etf_spec(regime):
    return {"regime": regime, "seed": CFG["seed"],
            "methods": [{"name": m, "method": METHODS[m]["method"], "params": METHODS[m].get("params", {})}
                        for m in etf_methods(regime)]}


def sensitivity_spec(sweep):
    return {"sweep": sweep, "xlabel": ANALYSIS["sweeps"][sweep]["xlabel"],
            "members": {m: METHODS[m]["sweep"] for m in sweep_members(sweep)}}


def analysis_targets():
    out = []
    for r in REGIMES:
        out += with_exts(figure(f"analysis/spectrum_{r}"), "png", "pdf")
        if similarity_methods(r):
            out += with_exts(figure(f"analysis/similarity_{r}"), "png", "pdf")
        if etf_methods(r):
            out += with_exts(figure(f"analysis/etf_{r}"), "png", "pdf")
    for sweep in ANALYSIS["sweeps"]:
        out += with_exts(figure(f"analysis/sensitivity_{sweep}"), "png", "pdf")
    return out
