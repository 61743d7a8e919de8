# Ablations of the MDA paper (docs/data_based.md): generalization to tasks that were
# not merged, and accuracy vs number of merged tasks. The rank-k sweep and the
# with/without-rotation ablation are plain method instances (config `methods`).
# Helpers (GEN, TC, generalization_methods, ...) live in rules/common.smk; the config
# checks for these keys run with the other semantic checks (mergelab.config).


rule eval_generalization:
    input:
        merged=f"{RS0}/merged/{{regime}}/{GEN_SUITE}/{{method}}.safetensors",
        merged_eval=f"{RS0}/eval/{{regime}}/{GEN_SUITE}/{{method}}.json",
        pretrained=rules.pretrain.output.weights,
        data=[f"{D}/{t}" for t in GEN["heldout"]],
        heads=[f"{R}/heads/{t}.safetensors" for t in GEN["heldout"]],
        zeroshot=[f"{R}/eval/{{regime}}/zeroshot/{t}.json" for t in GEN["heldout"]],
    output:
        metrics=f"{R}/eval/{{regime}}/generalization/{{method}}.json",
        predictions=f"{R}/eval/{{regime}}/generalization/{{method}}.npz",
    params:
        spec=lambda w: jq(eval_spec(SEEDS[0])),
        tasks=" ".join(GEN["heldout"]),
        suite=GEN_SUITE,
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{LOGS}/eval/{{regime}}/generalization/{{method}}.log",
    threads: 1
    resources:
        gpu=1,
    shell:
        "python -m mergelab.cli eval-generalization --method {wildcards.method} "
        "--regime {wildcards.regime} --suite {params.suite} --spec {params.spec:q} "
        "--pretrained {input.pretrained} --merged {input.merged} --merged-eval {input.merged_eval} "
        "--tasks {params.tasks} --data {input.data} --heads {input.heads} "
        "--zeroshot {input.zeroshot} --out {output.metrics} > {log} 2>&1"


rule generalization_report:
    input:
        lambda w: [f"{R}/eval/{w.regime}/generalization/{m}.json" for m in generalization_methods(w.regime)],
    output:
        tables=multiext(f"{R}/tables/generalization_{{regime}}", ".md", ".csv", ".json"),
        figures=multiext(f"{R}/figures/generalization_{{regime}}", ".png", ".pdf"),
    params:
        spec=lambda w: jq({"method_order": list(CFG["methods"])}),
        stem=lambda w, output: output.tables[0][: -len(".md")],
        fig=lambda w, output: output.figures[0][: -len(".png")],
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
            f"{RS0}/eval/{w.regime}/{s}/{m}.json" for s in TC["suites"] for m in task_count_methods(w.regime)
        ],
    output:
        multiext(f"{R}/figures/task_count_{{regime}}", ".png", ".pdf", ".json"),
    params:
        spec=lambda w: jq({"method_order": list(CFG["methods"]),
                           "title": f"{CFG['name']} ({w.regime}): accuracy vs number of merged tasks"}),
        stem=lambda w, output: output[0][: -len(".png")],
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{LOGS}/report/task_count_{{regime}}.log",
    threads: 1
    shell:
        "python -m mergelab.cli ablation task-count --spec {params.spec:q} --results {input} "
        "--out-stem {params.stem} > {log} 2>&1"
