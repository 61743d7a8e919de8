# Datasets: one HF-datasets directory per task (generated offline for the mini suite,
# downloaded from the hub or converted from a local folder at paper scale).


rule prepare_task:
    output:
        directory(f"{D}/{{task}}"),
    params:
        spec=lambda w: jq({"task": CFG["data"]["tasks"][w.task], "seed": CFG["seed"],
                           "mini": CFG["data"]["mini"], "cache_dir": CFG["data"]["cache_dir"]}),
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{LOGS}/prepare_task/{{task}}.log",
    threads: 1
    shell:
        "python -m mergelab.cli prepare-task --task {wildcards.task} --spec {params.spec:q} "
        "--out {output} > {log} 2>&1"


rule build_corpus:
    output:
        directory(f"{D}/_corpus"),
    params:
        spec=lambda w: jq({"seed": CFG["seed"], **{k: CFG["pretrain"][k] for k in
                           ("corpus_size", "caption_noise", "family_weights")}}),
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{LOGS}/build_corpus.log",
    threads: 1
    shell:
        "python -m mergelab.cli build-corpus --spec {params.spec:q} --out {output} > {log} 2>&1"
