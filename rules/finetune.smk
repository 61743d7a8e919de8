# Per-task fine-tuning (full and LoRA) and task-vector extraction, or, for the tasks with a
# data.tasks.<task>.checkpoint, the task vector imported from a published checkpoint.


rule finetune:
    input:
        data=dataset(),
        head=head(),
        pretrained=pretrained(),
    output:
        weights=finetuned(),
        metrics=finetuned(ext="json"),
    params:
        spec=lambda w: jq(finetune_spec(w.regime, w.task, run_seed(w))),
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{seed_logs()}/finetune/{{regime}}/{{task}}.log",
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
        finetuned=finetuned(),
        pretrained=pretrained(),
    output:
        taskvector(),
    params:
        spec=lambda w: jq(extract_spec(w.regime)),
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{seed_logs()}/taskvectors/{{regime}}/{{task}}.log",
    threads: 1
    shell:
        "python -m mergelab.cli extract --regime {wildcards.regime} --spec {params.spec:q} "
        "--finetuned {input.finetuned} --pretrained {input.pretrained} --out {output} > {log} 2>&1"


# A task vector imported from a published fine-tuned checkpoint (FusionBench HF CLIP, KnOTS
# LoRA adapter, open_clip state dict; docs/checkpoints.md) instead of finetune + extract.
# `imported` is '<regime>/<task>' and only matches the configured pairs, so for those the
# ruleorder below picks this rule over extract_task_vector (and nothing asks for finetune).
rule import_checkpoint:
    input:
        unpack(import_inputs),
    output:
        imported_taskvector(),
    params:
        spec=lambda w: jq(import_spec(w.imported)),
        task=lambda w: pair_parts(w.imported)[1],
        pretrained=lambda w: import_pretrained(w.imported)[0],
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{seed_logs()}/import_checkpoint/{{imported}}.log",
    threads: 1
    shell:
        "python -m mergelab.cli import-checkpoint --task {params.task} --spec {params.spec:q} "
        "--pretrained {params.pretrained:q} --out {output} > {log} 2>&1"


ruleorder: import_checkpoint > extract_task_vector
