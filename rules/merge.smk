# One merge per (regime, suite, method). Inputs include the method's source files so
# that editing a method reruns its merges (Snakemake does not track imported modules).
#
# decompose: once per (regime, suite), the top-k triplets and polar factors of every large
# key that TSV-M, DC-Merge, MDA and MDA AM would otherwise each compute (src/mergelab/basis.py;
# config key shared_basis). Only merges of those methods depend on it.
#
# A method with `init: from_method` (MDA AM by default) also depends on the eval JSON of its
# init_method instance (MDA) on the same regime and suite: λ starts at that validated α.


rule decompose:
    input:
        taskvectors=suite_taskvectors,
        code=basis_sources(),
    output:
        basis=basis(),
        info=basis(ext="json"),
    params:
        spec=lambda w: jq(decompose_spec(w.regime, run_seed(w))),
        tasks=lambda w: " ".join(suite_tasks(w.suite)),
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{seed_logs()}/decompose/{{regime}}/{{suite}}.log",
    threads: 1
    resources:
        gpu=1,
    shell:
        "python -m mergelab.cli decompose --regime {wildcards.regime} --suite {wildcards.suite} "
        "--spec {params.spec:q} --tasks {params.tasks} --taskvectors {input.taskvectors} "
        "--out {output.basis} --out-json {output.info} > {log} 2>&1"


rule merge:
    input:
        unpack(merge_inputs),
    output:
        tau=merged(),
        info=merged(ext="json"),
    params:
        spec=lambda w: jq(method_spec(w.method, w.regime, w.suite, run_seed(w))),
        tasks=lambda w: " ".join(suite_tasks(w.suite)),
        data=lambda w, input: (
            f"--pretrained {input.pretrained} --data {' '.join(input.data)} "
            f"--heads {' '.join(input.heads)}" if "data" in input.keys() else ""
        ),
        basis=lambda w, input: f"--basis {input.basis}" if "basis" in input.keys() else "",
        init=lambda w, input: f"--init-from {input.init_eval}" if "init_eval" in input.keys() else "",
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{seed_logs()}/merge/{{regime}}/{{suite}}/{{method}}.log",
    threads: 1
    resources:
        gpu=1,
    shell:
        "python -m mergelab.cli merge --method {wildcards.method} --regime {wildcards.regime} "
        "--suite {wildcards.suite} --spec {params.spec:q} --tasks {params.tasks} "
        "--taskvectors {input.taskvectors} {params.data} {params.basis} {params.init} "
        "--out-tau {output.tau} --out-json {output.info} > {log} 2>&1"
