# Datasets: one HF-datasets directory per task (generated offline for the mini suite,
# downloaded from the hub or converted from a local folder at paper scale).


rule prepare_task:
    output:
        directory(dataset()),
    params:
        spec=lambda w: jq(prepare_spec(w.task)),
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
        directory(corpus()),
    params:
        spec=lambda w: jq(corpus_spec()),
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{LOGS}/build_corpus.log",
    threads: 1
    shell:
        "python -m mergelab.cli build-corpus --spec {params.spec:q} --out {output} > {log} 2>&1"
