# Analysis figures from the task vectors and merges of a run: singular-value spectra
# (DC-Merge Fig. 1), CosSim/DirSim heatmaps, task-level ΔETF of every data-free method of
# analysis.similarity_methods (docs/mda.md), and sensitivity sweeps (e.g. DC-Merge mask size,
# MDA rank k).


rule analysis_spectrum:
    input:
        analysis_taskvectors,
    output:
        report(
            multiext(figure("analysis/spectrum_{regime}"), ".png", ".pdf", ".json"),
            category="Analysis figures", subcategory="spectrum",
            caption="../report/analysis_figure.rst",
        ),
    params:
        stem=lambda w, output: output[0][: -len(".png")],
        tasks=lambda w: " ".join(suite_tasks(ANALYSIS_SUITE)),
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{LOGS}/analysis/spectrum_{{regime}}.log",
    threads: 1
    shell:
        "python -m mergelab.cli analysis spectrum --tasks {params.tasks} --taskvectors {input} "
        "--out-stem {params.stem} > {log} 2>&1"


rule analysis_similarity:
    input:
        taskvectors=analysis_taskvectors,
        merged=lambda w: [merged(w.regime, ANALYSIS_SUITE, m, FIRST_SEED) for m in similarity_methods(w.regime)],
    output:
        report(
            multiext(figure("analysis/similarity_{regime}"), ".png", ".pdf", ".json"),
            category="Analysis figures", subcategory="similarity",
            caption="../report/analysis_figure.rst",
        ),
    params:
        stem=lambda w, output: output[0][: -len(".png")],
        tasks=lambda w: " ".join(suite_tasks(ANALYSIS_SUITE)),
        names=lambda w: " ".join(similarity_methods(w.regime)),
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{LOGS}/analysis/similarity_{{regime}}.log",
    threads: 1
    shell:
        "python -m mergelab.cli analysis similarity --tasks {params.tasks} --taskvectors {input.taskvectors} "
        "--merged {input.merged} --names {params.names} "
        "--out-stem {params.stem} > {log} 2>&1"


rule analysis_etf:
    input:
        taskvectors=analysis_taskvectors,
        code=lambda w: sorted({p for m in etf_methods(w.regime) for p in method_sources(m)}),
    output:
        report(
            multiext(figure("analysis/etf_{regime}"), ".png", ".pdf", ".json"),
            category="Analysis figures", subcategory="etf",
            caption="../report/analysis_figure.rst",
        ),
    params:
        stem=lambda w, output: output[0][: -len(".png")],
        tasks=lambda w: " ".join(suite_tasks(ANALYSIS_SUITE)),
        spec=lambda w: jq(etf_spec(w.regime)),
        k=lambda w: "" if ANALYSIS["etf_k_fraction"] is None else f"--k-fraction {ANALYSIS['etf_k_fraction']}",
        rank=lambda w: (
            f"--lora-rank {CFG['finetune']['lora']['rank']}" if w.regime == "lora" else ""
        ),
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{LOGS}/analysis/etf_{{regime}}.log",
    threads: 1
    shell:
        "python -m mergelab.cli analysis etf --tasks {params.tasks} --taskvectors {input.taskvectors} "
        "--spec {params.spec:q} {params.k} {params.rank} --out-stem {params.stem} > {log} 2>&1"


rule analysis_sensitivity:
    input:
        lambda w: [
            merged_eval(r, ANALYSIS_SUITE, m, FIRST_SEED)
            for m in sweep_members(w.sweep)
            for r in method_regimes(CFG, m)
        ],
    output:
        report(
            multiext(figure("analysis/sensitivity_{sweep}"), ".png", ".pdf", ".json"),
            category="Analysis figures", subcategory="sensitivity",
            caption="../report/analysis_figure.rst",
        ),
    params:
        stem=lambda w, output: output[0][: -len(".png")],
        spec=lambda w: jq(sensitivity_spec(w.sweep)),
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{LOGS}/analysis/sensitivity_{{sweep}}.log",
    threads: 1
    shell:
        "python -m mergelab.cli analysis sensitivity --spec {params.spec:q} --results {input} "
        "--out-stem {params.stem} > {log} 2>&1"
