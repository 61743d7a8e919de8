# Paper-style tables (Markdown, LaTeX, CSV) and figures, one set per regime and suite.


def report_inputs(w):
    tasks = suite_tasks(w.suite)
    methods = [m for (r, s, m) in merges() if r == w.regime and s == w.suite]
    return (
        [f"{R}/eval/{w.regime}/zeroshot/{t}.json" for t in tasks]
        + [f"{R}/eval/{w.regime}/individual/{t}.json" for t in tasks]
        + [f"{R}/eval/{w.regime}/{w.suite}/{m}.json" for m in methods]
    )


rule report:
    input:
        report_inputs,
    output:
        tables=multiext(f"{R}/tables/{{regime}}_{{suite}}", ".md", ".tex", ".csv", ".json"),
        figures=multiext(f"{R}/figures/accuracy_{{regime}}_{{suite}}", ".png", ".pdf"),
    params:
        spec=lambda w: jq(report_spec()),
    log:
        f"{LOGS}/report/{{regime}}_{{suite}}.log",
    threads: 1
    shell:
        "{MERGELAB} report --spec {params.spec:q} --regime {wildcards.regime} "
        "--suite {wildcards.suite} --out-dir {R} --results {input} > {log} 2>&1"
