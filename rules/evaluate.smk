# Zero-shot and individual reference rows, and merged models with α chosen on validation.
# Each evaluation writes its metrics JSON and, beside it, the per-sample predictions (.npz)
# from which the tables and their intervals are computed (mergelab.predictions). Zero-shot
# does not depend on the seed: one per task, shared by every seed (rules/common/paths.smk).


rule eval_zeroshot:
    input:
        data=dataset(),
        head=head(),
        pretrained=pretrained(),
    output:
        metrics=zeroshot_eval(),
        predictions=zeroshot_eval(ext="npz"),
    params:
        spec=lambda w: jq(eval_spec()),
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{LOGS}/eval/{{regime}}/zeroshot/{{task}}.log",
    threads: 1
    resources:
        gpu=1,
    shell:
        "python -m mergelab.cli eval-reference --kind zeroshot --regime {wildcards.regime} "
        "--spec {params.spec:q} --pretrained {input.pretrained} --tasks {wildcards.task} "
        "--data {input.data} --heads {input.head} --out {output.metrics} > {log} 2>&1"


rule eval_individual:
    input:
        data=dataset(),
        head=head(),
        pretrained=pretrained(),
        taskvector=taskvector(),
    output:
        metrics=individual_eval(),
        predictions=individual_eval(ext="npz"),
    params:
        spec=lambda w: jq(eval_spec(run_seed(w))),
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{seed_logs()}/eval/{{regime}}/individual/{{task}}.log",
    threads: 1
    resources:
        gpu=1,
    shell:
        "python -m mergelab.cli eval-reference --kind individual --regime {wildcards.regime} "
        "--spec {params.spec:q} --pretrained {input.pretrained} --tasks {wildcards.task} "
        "--data {input.data} --heads {input.head} --taskvectors {input.taskvector} "
        "--out {output.metrics} > {log} 2>&1"


rule eval_merged:
    input:
        unpack(eval_merged_inputs),
    output:
        metrics=merged_eval(),
        predictions=merged_eval(ext="npz"),
    params:
        spec=lambda w: jq(merged_eval_spec(w.method, run_seed(w))),
        tasks=lambda w: " ".join(suite_tasks(w.suite)),
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{seed_logs()}/eval/{{regime}}/{{suite}}/{{method}}.log",
    threads: 1
    resources:
        gpu=1,
    shell:
        "python -m mergelab.cli eval-merged --method {wildcards.method} --regime {wildcards.regime} "
        "--suite {wildcards.suite} --spec {params.spec:q} --pretrained {input.pretrained} "
        "--merged {input.merged} --merge-info {input.info} --tasks {params.tasks} "
        "--data {input.data} --heads {input.heads} --individual {input.individual} "
        "--out {output.metrics} > {log} 2>&1"
