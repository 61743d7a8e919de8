# One merge per (regime, suite, method). Inputs include the method's source files so
# that editing a method reruns its merges (Snakemake does not track imported modules).


def merge_inputs(w):
    tasks = suite_tasks(w.suite)
    inp = {
        "taskvectors": [f"{R}/taskvectors/{w.regime}/{t}.safetensors" for t in tasks],
        "code": method_sources(w.method),
    }
    if method_needs_data(w.method):
        inp["pretrained"] = rules.pretrain.output.weights
        inp["data"] = [f"{D}/{t}" for t in tasks]
        inp["heads"] = [f"{R}/heads/{t}.safetensors" for t in tasks]
    return inp


rule merge:
    input:
        unpack(merge_inputs),
    output:
        tau=f"{R}/merged/{{regime}}/{{suite}}/{{method}}.safetensors",
        info=f"{R}/merged/{{regime}}/{{suite}}/{{method}}.json",
    params:
        spec=lambda w: jq(method_spec(w.method, w.regime, w.suite)),
        tasks=lambda w: " ".join(suite_tasks(w.suite)),
        data=lambda w, input: (
            f"--pretrained {input.pretrained} --data {' '.join(input.data)} "
            f"--heads {' '.join(input.heads)}" if "data" in input.keys() else ""
        ),
    log:
        f"{LOGS}/merge/{{regime}}/{{suite}}/{{method}}.log",
    threads: 1
    resources:
        gpu=1,
    shell:
        "{MERGELAB} merge --method {wildcards.method} --regime {wildcards.regime} "
        "--suite {wildcards.suite} --spec {params.spec:q} --tasks {params.tasks} "
        "--taskvectors {input.taskvectors} {params.data} "
        "--out-tau {output.tau} --out-json {output.info} > {log} 2>&1"
