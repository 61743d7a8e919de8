# The regime report (tables/regime.{md,json}): the run's method-independent statistics
# next to the paper's (src/mergelab/regime.py), and the rank-r/T truncation check it reads.


rule eval_lowrank:
    input:
        data=f"{D}/{{task}}",
        head=rules.heads.output[0],
        pretrained=rules.pretrain.output.weights,
        taskvector=f"{RS}/taskvectors/full/{{task}}.safetensors",
    output:
        metrics=f"{RS}/eval/full/lowrank/{{task}}.json",
        predictions=f"{RS}/eval/full/lowrank/{{task}}.npz",
    params:
        spec=lambda w: jq(eval_spec(run_seed(w))),
        divisor=lambda w: len(suite_tasks(REGIME_SUITE)),
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{SLOGS}/eval/full/lowrank/{{task}}.log",
    threads: 1
    resources:
        gpu=1,
    shell:
        "python -m mergelab.cli eval-reference --kind lowrank --rank-divisor {params.divisor} "
        "--regime full --spec {params.spec:q} --pretrained {input.pretrained} "
        "--tasks {wildcards.task} --data {input.data} --heads {input.head} "
        "--taskvectors {input.taskvector} --out {output.metrics} > {log} 2>&1"


rule regime_report:
    input:
        unpack(regime_report_inputs),
    output:
        md=report(f"{R}/tables/regime.md", category="Regime", caption="../report/regime.rst"),
        json=f"{R}/tables/regime.json",
    params:
        spec=lambda w: jq(regime_report_spec()),
        taskvectors=lambda w, input: " ".join(
            f"{r}={p}" for r in REGIMES for p in input[f"tv_{r}"]
        ),
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{LOGS}/regime_report.log",
    threads: 1
    shell:
        "python -m mergelab.cli regime-report --spec {params.spec:q} --pretrained {input.pretrained} "
        "--results {input.evals} --taskvectors {params.taskvectors} --out-md {output.md} "
        "--out-json {output.json} > {log} 2>&1"


rule pretrain_reproduction:
    input:
        weights=rules.pretrain.output.weights,
        metrics=rules.pretrain.output.metrics,
    output:
        f"{R}/pretrained/reproduction.json",
    params:
        tag=CFG["pretrain"]["reference"],
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{LOGS}/pretrain_reproduction.log",
    threads: 1
    shell:
        "python -m mergelab.cli compare-weights --tag {params.tag} --weights {input.weights} "
        "--metrics {input.metrics} --out {output} > {log} 2>&1"
