# Paper-style tables (Markdown, LaTeX, CSV, JSON) and figures, one set per regime and suite,
# computed from the evaluations' per-sample predictions (never from models): bootstrap
# intervals, paired differences and, with several seeds, their mean and spread
# (docs/uncertainty.md).


rule report:
    input:
        metrics=report_inputs,
        predictions=report_predictions,
    output:
        tables=report(
            multiext(table("{regime}_{suite}"), ".md", ".tex", ".csv", ".json"),
            category="Tables", subcategory="{regime} fine-tuning, suite {suite}",
            caption="../report/table.rst",
        ),
        figures=report(
            multiext(figure("accuracy_{regime}_{suite}"), ".png", ".pdf"),
            category="Accuracy figures", subcategory="{regime} fine-tuning, suite {suite}",
            caption="../report/accuracy_figure.rst",
        ),
    params:
        outdir=lambda w, output: str(Path(output.tables[0]).parent.parent),
        spec=lambda w: jq(report_spec()),
    conda:
        "../envs/mergelab.yaml"
    log:
        f"{LOGS}/report/{{regime}}_{{suite}}.log",
    threads: 1
    shell:
        "python -m mergelab.cli report --spec {params.spec:q} --regime {wildcards.regime} "
        "--suite {wildcards.suite} --out-dir {params.outdir} --results {input.metrics} > {log} 2>&1"


# Several seeds: each method's rank per seed and the Kendall τ between the seeds' rankings
# (computed by `report`, in the table JSON).
if len(SEEDS) > 1:

    rule report_ranks:
        input:
            table("{regime}_{suite}") + ".json",
        output:
            report(
                multiext(figure("ranks_{regime}_{suite}"), ".png", ".pdf"),
                category="Accuracy figures", subcategory="{regime} fine-tuning, suite {suite}",
                caption="../report/accuracy_figure.rst",
            ),
        params:
            stem=lambda w, output: output[0][: -len(".png")],
        conda:
            "../envs/mergelab.yaml"
        log:
            f"{LOGS}/report/ranks_{{regime}}_{{suite}}.log",
        threads: 1
        shell:
            "python -m mergelab.cli report-ranks --table {input} --out-stem {params.stem} > {log} 2>&1"
