# Paper-style tables (Markdown, LaTeX, CSV) and figures, one set per regime and suite.


rule report:
    input:
        report_inputs,
    output:
        tables=report(
            multiext(f"{R}/tables/{{regime}}_{{suite}}", ".md", ".tex", ".csv", ".json"),
            category="Tables", subcategory="{regime} fine-tuning, suite {suite}",
            caption="../report/table.rst",
        ),
        figures=report(
            multiext(f"{R}/figures/accuracy_{{regime}}_{{suite}}", ".png", ".pdf"),
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
        "--suite {wildcards.suite} --out-dir {params.outdir} --results {input} > {log} 2>&1"
