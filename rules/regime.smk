# The regime report (tables/regime.{md,json}): the run's method-independent statistics
# next to the paper's (src/mergelab/regime.py), and the evaluations it reads: the rank-r/T
# truncation check and the weight-disentanglement error (src/mergelab/disentangle.py).


rule eval_lowrank:
    input:
        data=dataset(),
        head=head(),
        pretrained=pretrained(),
        taskvector=taskvector(regime="full"),
    output:
        metrics=lowrank_eval(),
        predictions=lowrank_eval(ext="npz"),
    params:
        spec=lambda w: jq(eval_spec(run_seed(w))),
        divisor=lambda w: len(suite_tasks(MAIN_SUITE)),
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{seed_logs()}/eval/full/lowrank/{{task}}.log",
    threads: 1
    resources:
        gpu=1,
    shell:
        "python -m mergelab.cli eval-reference --kind lowrank --rank-divisor {params.divisor} "
        "--regime full --spec {params.spec:q} --pretrained {input.pretrained} "
        "--tasks {wildcards.task} --data {input.data} --heads {input.head} "
        "--taskvectors {input.taskvector} --out {output.metrics} > {log} 2>&1"


rule eval_disentanglement:
    input:
        unpack(disentanglement_inputs),
    output:
        disentanglement_eval(FIRST_SEED),
    params:
        spec=lambda w: jq(disentanglement_spec()),
        tasks=" ".join(suite_tasks(MAIN_SUITE)),
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{LOGS}/regime/disentanglement_full.log",
    threads: 1
    resources:
        gpu=1,
    shell:
        "python -m mergelab.cli eval-disentanglement --regime full --spec {params.spec:q} "
        "--pretrained {input.pretrained} --tasks {params.tasks} --data {input.data} "
        "--heads {input.heads} --taskvectors {input.taskvectors} --out {output} > {log} 2>&1"


rule regime_report:
    input:
        unpack(regime_report_inputs),
    output:
        md=report(table("regime") + ".md", category="Regime", caption="../report/regime.rst"),
        json=table("regime") + ".json",
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
        weights=pretrained(),
        metrics=pretrained("metrics.json"),
    output:
        pretrained("reproduction.json"),
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
