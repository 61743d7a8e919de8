# Helpers of the ablation rules (rules/ablations.smk): held-out tasks, task-count suites,
# their methods, specs and targets.

GENERALIZATION = CFG["generalization"]
GENERALIZATION_SUITE = GENERALIZATION["suite"] or MAIN_SUITE
HELDOUT = GENERALIZATION["heldout"]
TASK_COUNT = CFG["task_count"]


def generalization_methods(regime):
    return [m for m in (GENERALIZATION["methods"] or list(CFG["methods"]))
            if regime in method_regimes(CFG, m)]


def task_count_methods(regime):
    return [m for m in (TASK_COUNT["methods"] or list(CFG["methods"])) if regime in method_regimes(CFG, m)]


def generalization_report_spec():
    return {"method_order": list(CFG["methods"])}


def task_count_spec(regime):
    return {"method_order": list(CFG["methods"]),
            "title": f"{CFG['name']} ({regime}): accuracy vs number of merged tasks"}


def ablation_targets():
    out = []
    for r in REGIMES:
        if HELDOUT and generalization_methods(r):
            out += with_exts(table(f"generalization_{r}"), "md", "csv", "json")
            out += with_exts(figure(f"generalization_{r}"), "png", "pdf")
        if len(TASK_COUNT["suites"]) > 1 and task_count_methods(r):
            out += with_exts(figure(f"task_count_{r}"), "png", "pdf", "json")
    return out
