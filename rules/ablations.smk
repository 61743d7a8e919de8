# Ablations of the MDA paper (docs/data_based.md): generalization to tasks that were
# not merged, and accuracy vs number of merged tasks. The rank-k sweep and the
# with/without-rotation ablation are plain method instances (config `methods`).

GEN = CFG["generalization"]
GEN_SUITE = GEN["suite"] or CFG["report"]["main_suite"] or SUITES[0]
TC = CFG["task_count"]


def _ablation_checks():
    if GEN["heldout"]:
        if GEN_SUITE not in CFG["suites"]:
            raise WorkflowError(f"config key 'generalization.suite': unknown suite '{GEN_SUITE}'")
        for t in GEN["heldout"]:
            if t not in CFG["data"]["tasks"]:
                raise WorkflowError(f"config key 'generalization.heldout': unknown task '{t}' (not under data.tasks)")
            if t in CFG["suites"][GEN_SUITE]:
                raise WorkflowError(f"config key 'generalization.heldout': task '{t}' is merged in suite '{GEN_SUITE}'")
    for m in (GEN["methods"] or []) + (TC["methods"] or []):
        if m not in CFG["methods"]:
            raise WorkflowError(f"config keys 'generalization/task_count.methods': unknown method instance '{m}'")
    for s in TC["suites"]:
        if s not in CFG["suites"]:
            raise WorkflowError(f"config key 'task_count.suites': unknown suite '{s}'")


_ablation_checks()


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


rule eval_generalization:
    input:
        merged=f"{R}/merged/{{regime}}/{GEN_SUITE}/{{method}}.safetensors",
        merged_eval=f"{R}/eval/{{regime}}/{GEN_SUITE}/{{method}}.json",
        pretrained=rules.pretrain.output.weights,
        data=[f"{D}/{t}" for t in GEN["heldout"]],
        heads=[f"{R}/heads/{t}.safetensors" for t in GEN["heldout"]],
        zeroshot=[f"{R}/eval/{{regime}}/zeroshot/{t}.json" for t in GEN["heldout"]],
    output:
        f"{R}/eval/{{regime}}/generalization/{{method}}.json",
    params:
        spec=lambda w: jq(eval_spec()),
        tasks=" ".join(GEN["heldout"]),
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{LOGS}/eval/{{regime}}/generalization/{{method}}.log",
    threads: 1
    resources:
        gpu=1,
    shell:
        "python -m mergelab.cli eval-generalization --method {wildcards.method} "
        "--regime {wildcards.regime} --suite " + GEN_SUITE + " --spec {params.spec:q} "
        "--pretrained {input.pretrained} --merged {input.merged} --merged-eval {input.merged_eval} "
        "--tasks {params.tasks} --data {input.data} --heads {input.heads} "
        "--zeroshot {input.zeroshot} --out {output} > {log} 2>&1"


rule generalization_report:
    input:
        lambda w: [f"{R}/eval/{w.regime}/generalization/{m}.json" for m in generalization_methods(w.regime)],
    output:
        tables=multiext(f"{R}/tables/generalization_{{regime}}", ".md", ".csv", ".json"),
        figures=multiext(f"{R}/figures/generalization_{{regime}}", ".png", ".pdf"),
    params:
        spec=lambda w: jq({"method_order": list(CFG["methods"])}),
        stem=f"{R}/tables/generalization_{{regime}}",
        fig=f"{R}/figures/generalization_{{regime}}",
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{LOGS}/report/generalization_{{regime}}.log",
    threads: 1
    shell:
        "python -m mergelab.cli ablation generalization --spec {params.spec:q} --results {input} "
        "--out-stem {params.stem} --figure-stem {params.fig} > {log} 2>&1"


rule task_count_figure:
    input:
        lambda w: [
            f"{R}/eval/{w.regime}/{s}/{m}.json" for s in TC["suites"] for m in task_count_methods(w.regime)
        ],
    output:
        multiext(f"{R}/figures/task_count_{{regime}}", ".png", ".pdf", ".json"),
    params:
        spec=lambda w: jq({"method_order": list(CFG["methods"]),
                           "title": f"{CFG['name']} ({w.regime}): accuracy vs number of merged tasks"}),
        stem=f"{R}/figures/task_count_{{regime}}",
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{LOGS}/report/task_count_{{regime}}.log",
    threads: 1
    shell:
        "python -m mergelab.cli ablation task-count --spec {params.spec:q} --results {input} "
        "--out-stem {params.stem} > {log} 2>&1"
