# The run manifest: sha256 of every artifact, the config subset that produced it, code
# and package versions, and each table row traced to its artifacts (src/mergelab/manifest.py).


rule manifest:
    input:
        manifest_files(),
    output:
        report(manifest_path(), category="Provenance", caption="../report/manifest.rst"),
    params:
        spec=lambda w: jq(manifest_spec()),
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{LOGS}/manifest.log",
    threads: 1
    shell:
        "python -m mergelab.cli manifest --spec {params.spec:q} --out {output} "
        "--files {input} > {log} 2>&1"
