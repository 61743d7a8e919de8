# The pretrained CLIP θ0: contrastive pretraining on the offline corpus (mini suite),
# open_clip's published weights (paper configs, model.pretrained set), or the architecture's
# seeded random initialisation (smoke configs, model.random_init: true; CLI random-init).


rule pretrain:
    input:
        unpack(pretrain_inputs),
    output:
        weights=pretrained(),
        metrics=pretrained("metrics.json"),
    params:
        spec=lambda w: jq(pretrain_spec()),
        corpus=lambda w, input: f"--corpus {input.corpus}" if "corpus" in input.keys() else "",
        command=pretrain_command(),
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{LOGS}/pretrain.log",
    threads: workflow.cores
    resources:
        gpu=1,
    shell:
        "python -m mergelab.cli {params.command} --spec {params.spec:q} {params.corpus} "
        "--out-weights {output.weights} --out-metrics {output.metrics} > {log} 2>&1"


rule heads:
    input:
        data=dataset(),
        pretrained=pretrained(),
    output:
        head(),
    params:
        spec=lambda w: jq(heads_spec(w.task)),
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{LOGS}/heads/{{task}}.log",
    threads: 1
    resources:
        gpu=1,
    shell:
        "python -m mergelab.cli heads --task {wildcards.task} --spec {params.spec:q} --data {input.data} "
        "--pretrained {input.pretrained} --out {output} > {log} 2>&1"
