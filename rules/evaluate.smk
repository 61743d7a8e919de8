# Zero-shot and individual reference rows, and merged models with α chosen on validation.


rule eval_zeroshot:
    input:
        data=f"{D}/{{task}}",
        head=rules.heads.output[0],
        pretrained=rules.pretrain.output.weights,
    output:
        f"{R}/eval/{{regime}}/zeroshot/{{task}}.json",
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
        "--data {input.data} --heads {input.head} --out {output} > {log} 2>&1"


rule eval_individual:
    input:
        data=f"{D}/{{task}}",
        head=rules.heads.output[0],
        pretrained=rules.pretrain.output.weights,
        taskvector=rules.extract_task_vector.output[0],
    output:
        f"{R}/eval/{{regime}}/individual/{{task}}.json",
    params:
        spec=lambda w: jq(eval_spec()),
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{LOGS}/eval/{{regime}}/individual/{{task}}.log",
    threads: 1
    resources:
        gpu=1,
    shell:
        "python -m mergelab.cli eval-reference --kind individual --regime {wildcards.regime} "
        "--spec {params.spec:q} --pretrained {input.pretrained} --tasks {wildcards.task} "
        "--data {input.data} --heads {input.head} --taskvectors {input.taskvector} "
        "--out {output} > {log} 2>&1"


rule eval_merged:
    input:
        unpack(eval_merged_inputs),
    output:
        f"{R}/eval/{{regime}}/{{suite}}/{{method}}.json",
    params:
        spec=lambda w: jq(merged_eval_spec(w.method)),
        tasks=lambda w: " ".join(suite_tasks(w.suite)),
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{LOGS}/eval/{{regime}}/{{suite}}/{{method}}.log",
    threads: 1
    resources:
        gpu=1,
    shell:
        "python -m mergelab.cli eval-merged --method {wildcards.method} --regime {wildcards.regime} "
        "--suite {wildcards.suite} --spec {params.spec:q} --pretrained {input.pretrained} "
        "--merged {input.merged} --merge-info {input.info} --tasks {params.tasks} "
        "--data {input.data} --heads {input.heads} --individual {input.individual} "
        "--out {output} > {log} 2>&1"
