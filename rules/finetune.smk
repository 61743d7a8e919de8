# Per-task fine-tuning (full and LoRA) and task-vector extraction.


rule finetune:
    input:
        data=f"{D}/{{task}}",
        head=rules.heads.output[0],
        pretrained=rules.pretrain.output.weights,
    output:
        weights=f"{R}/finetune/{{regime}}/{{task}}.safetensors",
        metrics=f"{R}/finetune/{{regime}}/{{task}}.json",
    params:
        spec=lambda w: jq(finetune_spec(w.regime, w.task)),
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{LOGS}/finetune/{{regime}}/{{task}}.log",
    threads: 1
    resources:
        gpu=1,
    shell:
        "python -m mergelab.cli finetune --regime {wildcards.regime} --task {wildcards.task} "
        "--spec {params.spec:q} --data {input.data} --head {input.head} "
        "--pretrained {input.pretrained} --out-weights {output.weights} "
        "--out-metrics {output.metrics} > {log} 2>&1"


rule extract_task_vector:
    input:
        finetuned=rules.finetune.output.weights,
        pretrained=rules.pretrain.output.weights,
    output:
        f"{R}/taskvectors/{{regime}}/{{task}}.safetensors",
    params:
        spec=lambda w: jq(extract_spec(w.regime)),
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{LOGS}/taskvectors/{{regime}}/{{task}}.log",
    threads: 1
    shell:
        "python -m mergelab.cli extract --regime {wildcards.regime} --spec {params.spec:q} "
        "--finetuned {input.finetuned} --pretrained {input.pretrained} --out {output} > {log} 2>&1"
