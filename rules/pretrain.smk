# The pretrained CLIP θ0: contrastive pretraining on the offline corpus (mini suite),
# open_clip's published weights (paper configs, model.pretrained set), or the architecture's
# seeded random initialisation (smoke configs, model.random_init: true; CLI random-init).


rule pretrain:
    input:
        unpack(pretrain_inputs),
    output:
        weights=f"{R}/pretrained/clip.safetensors",
        metrics=f"{R}/pretrained/metrics.json",
    params:
        spec=lambda w: jq({"model": model_spec(), "pretrain": CFG["pretrain"],
                           "image_size": CFG["data"]["image_size"], "seed": CFG["seed"],
                           "device": CFG["device"]}),
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
        data=f"{D}/{{task}}",
        pretrained=rules.pretrain.output.weights,
    output:
        f"{R}/heads/{{task}}.safetensors",
    params:
        spec=lambda w: jq({"model": model_spec(), "task": CFG["data"]["tasks"][w.task],
                           "device": CFG["device"]}),
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
