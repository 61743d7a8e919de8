# Ablations of the MDA paper (docs/data_based.md): generalization to tasks that were
# not merged, and accuracy vs number of merged tasks. The rank-k sweep and the
# with/without-rotation ablation are plain method instances (config `methods`).
# The config checks for these keys run with the other semantic checks (mergelab.config).


rule eval_generalization:
    input:
        merged=merged(suite=GENERALIZATION_SUITE, seed=FIRST_SEED),
        merged_eval=merged_eval(suite=GENERALIZATION_SUITE, seed=FIRST_SEED),
        pretrained=pretrained(),
        data=[dataset(t) for t in HELDOUT],
        heads=[head(t) for t in HELDOUT],
        zeroshot=[zeroshot_eval(task=t) for t in HELDOUT],
    output:
        metrics=generalization_eval(),
        predictions=generalization_eval(ext="npz"),
    params:
        spec=lambda w: jq(eval_spec(FIRST_SEED)),
        tasks=" ".join(HELDOUT),
        suite=GENERALIZATION_SUITE,
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
        lambda w: [generalization_eval(w.regime, m) for m in generalization_methods(w.regime)],
    output:
        tables=multiext(table("generalization_{regime}"), ".md", ".csv", ".json"),
        figures=multiext(figure("generalization_{regime}"), ".png", ".pdf"),
    params:
        spec=lambda w: jq(generalization_report_spec()),
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
            merged_eval(w.regime, s, m, FIRST_SEED) for s in TASK_COUNT["suites"] for m in task_count_methods(w.regime)
        ],
    output:
        multiext(figure("task_count_{regime}"), ".png", ".pdf", ".json"),
    params:
        spec=lambda w: jq(task_count_spec(w.regime)),
        stem=lambda w, output: output[0][: -len(".png")],
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{LOGS}/report/task_count_{{regime}}.log",
    threads: 1
    shell:
        "python -m mergelab.cli ablation task-count --spec {params.spec:q} --results {input} "
        "--out-stem {params.stem} > {log} 2>&1"
