# mergelab: from datasets to the tables and figures of a model-merging paper.
# `snakemake --cores all` runs the embedded offline mini suite (config/config.yaml).
# Paper scale: `snakemake --cores all --configfile config/paper/<name>.yaml`.

from snakemake.utils import min_version

min_version("8.0")


# The embedded default, unless a config is given with --configfile (which then
# replaces it instead of being deep-merged into it).
if "data" not in config:

    configfile: "config/config.yaml"



report: "report/workflow.rst"


include: "rules/common/config.smk"
include: "rules/common/paths.smk"
include: "rules/common/hooks.smk"
include: "rules/common/analysis.smk"
include: "rules/common/regime.smk"
include: "rules/common/ablations.smk"
include: "rules/common/manifest.smk"
include: "rules/data.smk"
include: "rules/pretrain.smk"
include: "rules/finetune.smk"
include: "rules/merge.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"
include: "rules/regime.smk"
include: "rules/analysis.smk"
include: "rules/ablations.smk"
include: "rules/provenance.smk"


# Light rules: under a cluster executor (profiles/slurm, docs/cluster.md) they run on the
# submitting host instead of being submitted. The GPU rules are those with
# `resources: gpu=1`; extract_task_vector is submitted as a CPU-only job.
localrules:
    all,
    prepare_task,
    build_corpus,
    report,
    regime_report,
    pretrain_reproduction,
    analysis_spectrum,
    analysis_similarity,
    analysis_etf,
    analysis_sensitivity,
    generalization_report,
    task_count_figure,
    manifest,


rule all:
    input:
        all_targets(),
    default_target: True
