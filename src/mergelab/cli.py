"""`mergelab` command line: one subcommand per pipeline step (each Snakemake rule
calls exactly one). Rules pass the config subset a step needs as ``--spec JSON``
so that Snakemake's params trigger reruns precisely. Two are also run by hand:
``paper-data`` (list / pre-download the paper datasets) and ``import-checkpoint``
with ``--kind`` and ``--source`` instead of ``--spec``."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any


def _spec(s: str) -> dict[str, Any]:
    try:
        return json.loads(s)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--spec is not valid JSON: {exc}")


def _evaluator_args(spec: dict[str, Any], a: argparse.Namespace) -> dict[str, Any]:
    return {"model_cfg": spec["model"], "pretrained": a.pretrained, "task_dirs": a.data,
            "head_paths": a.heads, "data_cfg": spec["data"],
            "batch_size": spec.get("batch_size", 256), "device": spec.get("device", "auto")}


def cmd_validate_config(a):
    from .config import load_config
    cfg = load_config(a.file)
    print(f"{a.file}: valid ({len(cfg['data']['tasks'])} tasks, {len(cfg['suites'])} suites, "
          f"{len(cfg['methods'])} methods)")


def cmd_methods(a):
    from . import methods as M
    for name in M.available():
        cls = M.get_method(name)
        print(f"{name:20s} regimes={','.join(cls.regimes):10s} grid={cls.alpha_grid:6s} "
              f"data={'yes' if cls.needs_data else 'no':3s} ({cls.label()})")
        for p in cls.parameters:
            print(f"    {p.name} = {p.default!r}: {p.accepts.allowed}")


def cmd_prepare_task(a):
    spec = _spec(a.spec)
    from .data.prepare import prepare_task
    prepare_task(a.task, spec["task"], a.out, seed=spec["seed"], mini=spec.get("mini", {}),
                 cache_dir=spec.get("cache_dir"))


def cmd_paper_data(a):
    """List the paper datasets' hub sources, or download them into a cache dir."""
    from .data import paper
    if a.action == "list":
        print("\n".join(paper.hub_table()))
        return
    tasks, cache_dir, cfgs = a.tasks, a.cache_dir, {}
    if a.config:
        from .config import load_config
        cfg = load_config(a.config)
        cfgs = cfg["data"]["tasks"]
        from .data.prepare import task_source
        tasks = tasks or [t for t, c in cfgs.items() if task_source(c) == "hub"]
        cache_dir = cache_dir or cfg["data"].get("cache_dir")
    paper.download(tasks or list(paper.HUB_TASKS), cache_dir, cfgs)


def cmd_build_corpus(a):
    spec = _spec(a.spec)
    from .data.mini import build_corpus
    build_corpus(a.out, seed=spec["seed"], n=spec["corpus_size"],
                 family_weights=spec.get("family_weights"), caption_noise=spec["caption_noise"],
                 mention_prob=spec["mention_prob"])


def cmd_pretrain(a):
    spec = _spec(a.spec)
    from .pretrain import fetch_pretrained, pretrain
    if spec["model"].get("pretrained"):
        fetch_pretrained(spec["model"], a.out_weights, a.out_metrics)
    else:
        if not a.corpus:
            raise SystemExit("pretrain: --corpus is required when model.pretrained is null")
        pretrain(a.corpus, spec["model"], spec["pretrain"], spec["image_size"], spec["seed"],
                 a.out_weights, a.out_metrics, spec.get("device", "auto"))


def cmd_ship_weights(a):
    """Copy a pipeline-pretrained θ0 into the package as shipped weights, with its card."""
    from . import shipped
    from .io import load_json
    from .models import open_clip_config
    spec = _spec(a.spec)
    corpus_spec = _spec(a.corpus_spec)
    corpus_meta = load_json(Path(a.corpus) / "mini_meta.json") if a.corpus else {}
    path = shipped.write_card(a.tag, a.weights, load_json(a.metrics), spec["model"],
                              open_clip_config(spec["model"]["name"]), {**corpus_spec, **corpus_meta},
                              spec["pretrain"], spec["seed"],
                              extra={"image_size": spec["image_size"], "device": spec.get("device")})
    print(path)


def cmd_compare_weights(a):
    """How close a reproduction of θ0 is to the shipped weights (rule pretrain_reproduction)."""
    from . import shipped
    from .io import load_json, load_tensors, save_json
    ref_path = shipped.verified_weights(a.tag)
    ref, new = load_tensors(ref_path), load_tensors(a.weights)
    if set(ref) != set(new):
        raise SystemExit(f"{a.weights}: keys differ from {ref_path}: "
                         f"{sorted(set(ref) ^ set(new))[:5]}")
    num = sum(float((new[k].double() - ref[k].double()).pow(2).sum()) for k in ref)
    den = sum(float(ref[k].double().pow(2).sum()) for k in ref)
    metrics = load_json(a.metrics)
    card = shipped.read_card(a.tag)
    save_json({"tag": a.tag, "identical": all(bool((new[k] == ref[k]).all()) for k in ref),
               "relative_frobenius_difference": (num / den) ** 0.5,
               "max_abs_difference": max(float((new[k] - ref[k]).abs().max()) for k in ref),
               "seconds": metrics.get("seconds"), "shipped_seconds": card.get("seconds"),
               "loss_last": metrics.get("loss_last"), "shipped_loss_last": card.get("loss_last")},
              a.out)


def cmd_random_init(a):
    spec = _spec(a.spec)
    from .models import save_random_init
    save_random_init(spec["model"], spec["seed"], a.out_weights, a.out_metrics)


def cmd_import_checkpoint(a):
    """From the rule (``--spec``) or by hand (``--kind``, ``--source`` and their options)."""
    by_hand = (a.kind, a.source, a.expected_rank, a.cache_dir)
    if a.spec and any(v is not None for v in by_hand):
        raise SystemExit("import-checkpoint: give --spec or --kind/--source/..., not both")
    spec = _spec(a.spec) if a.spec else {"kind": a.kind, "source": a.source,
                                          "expected_rank": a.expected_rank, "cache_dir": a.cache_dir}
    if not spec.get("kind") or not spec.get("source"):
        raise SystemExit("import-checkpoint: --kind and --source are required without --spec")
    from .checkpoints import import_checkpoint
    from .io import provenance
    try:
        summary = import_checkpoint(spec["kind"], spec["source"], a.task, a.out, a.pretrained,
                                    expected_rank=spec.get("expected_rank"),
                                    cache_dir=spec.get("cache_dir"), offline=a.offline)
    except ValueError as exc:  # an unknown kind, or no θ0 where one is needed
        raise SystemExit(f"import-checkpoint: {exc}") from None
    if a.spec:
        summary["provenance"] = provenance(spec)
    print(json.dumps({k: v for k, v in summary.items() if k != "metadata"}, indent=2,
                     sort_keys=True, default=str))


def cmd_heads(a):
    spec = _spec(a.spec)
    from .heads import build_head
    build_head(a.task, spec["task"], a.data, spec["model"], a.pretrained, a.out,
               spec.get("device", "auto"))


def cmd_finetune(a):
    spec = _spec(a.spec)
    from .finetune import finetune
    finetune(a.regime, a.task, a.data, a.head, a.pretrained, spec["model"], spec["finetune"],
             spec["data"], spec["epochs"], spec["seed"], a.out_weights, a.out_metrics,
             spec.get("device", "auto"), spec.get("batch_size", 256))


def cmd_extract(a):
    spec = _spec(a.spec)
    from .extract import extract
    extract(a.regime, a.finetuned, a.pretrained, spec["model"], a.out, spec.get("lora"))


def cmd_eval_reference(a):
    spec = _spec(a.spec)
    from .evaluate import eval_reference
    eval_reference(a.kind, a.regime, a.tasks, _evaluator_args(spec, a), a.taskvectors,
                   a.out, spec, spec["seed"], rank_divisor=a.rank_divisor)


def cmd_eval_disentanglement(a):
    spec = _spec(a.spec)
    from .disentangle import eval_disentanglement
    opts = spec["disentanglement"]
    eval_disentanglement(a.regime, a.tasks, _evaluator_args(spec, a), a.taskvectors, a.out, spec,
                         spec["seed"], alphas=opts["alphas"], max_images=opts["max_images"])


def cmd_regime_report(a):
    from .io import provenance
    from .models import build_encoder
    from .regime import regime_statistics, write_regime_report
    spec = _spec(a.spec)
    theta0 = build_encoder("full", spec["model"], a.pretrained).weights()
    tvs: dict[str, list[str]] = {}
    for item in a.taskvectors:
        regime, path = item.split("=", 1)
        tvs.setdefault(regime, []).append(path)
    stats = regime_statistics(a.results, tvs, theta0, spec["tasks"], spec["ta_method"],
                              spec.get("adamerging_method"))
    write_regime_report(stats, a.out_md, a.out_json, spec["title"], provenance(spec))


def cmd_decompose(a):
    spec = _spec(a.spec)
    from .basis import decompose
    decompose(a.taskvectors, a.tasks, a.regime, a.suite, a.out, a.out_json,
              lora_rank=spec.get("lora_rank"), device=spec.get("device", "auto"),
              seed=spec["seed"], config_subset=spec)


def cmd_merge(a):
    spec = _spec(a.spec)
    from .merge import run_merge
    ev_args = _evaluator_args(spec, a) if a.data else None
    run_merge(a.method, spec["method_spec"], a.regime, a.suite, a.tasks, a.taskvectors,
              a.out_tau, a.out_json, spec["seed"], spec.get("lora_rank"),
              spec.get("device", "auto"), ev_args, spec, basis_path=a.basis, init_from=a.init_from)


def cmd_eval_merged(a):
    spec = _spec(a.spec)
    from .evaluate import eval_merged
    eval_merged(a.method, a.regime, a.suite, a.tasks, _evaluator_args(spec, a), a.merged,
                a.individual, spec["alpha_grid"], a.out, spec, spec["seed"], a.merge_info,
                alpha_search_mode=spec.get("alpha_search", "grid"), alpha_stride=spec.get("alpha_stride", 3))


def cmd_eval_generalization(a):
    spec = _spec(a.spec)
    from .evaluate import eval_generalization
    eval_generalization(a.method, a.regime, a.suite, a.tasks, _evaluator_args(spec, a), a.merged,
                        a.merged_eval, a.zeroshot, a.out, spec, spec["seed"])


def cmd_ablation(a):
    spec = _spec(a.spec) if a.spec else {}
    from . import plots_ablation as P
    order = spec.get("method_order", ())
    if a.kind == "generalization":
        P.generalization_report(a.results, a.out_stem, a.figure_stem, method_order=order)
    else:
        P.task_count_figure(a.results, a.out_stem, spec.get("title", ""), method_order=order)


def cmd_report(a):
    spec = _spec(a.spec)
    from .report import make_report
    make_report(spec, a.results, a.out_dir, a.regime, a.suite)


def cmd_report_ranks(a):
    from .report import rank_figure
    rank_figure(a.table, a.out_stem)


def cmd_manifest(a):
    spec = _spec(a.spec)
    from .manifest import write_manifest
    man = write_manifest(spec, a.files, a.out)
    print(f"{a.out}: {len(man['artifacts'])} artifacts, {len(man['tables'])} tables")


def cmd_compare_runs(a):
    from .runcompare import compare_runs
    cmp = compare_runs(a.a, a.b)
    print(cmp.summary())
    return 0 if cmp.identical else 1


def cmd_verify_manifest(a):
    from .manifest import verify_manifest
    bad = verify_manifest(a.file)
    if bad:
        from .io import ArtifactError
        raise ArtifactError(f"{a.file}: {len(bad)} artifact(s) differ from the manifest:\n  "
                            + "\n  ".join(bad))
    print(f"{a.file}: every artifact matches its sha256")


def cmd_artifacts(a):
    from . import artifacts
    root = Path(a.root).resolve()
    if a.action == "push":
        artifacts.push(root, a.remote, check=not a.no_check)
    else:
        artifacts.pull(root, a.remote, force=a.force)


def cmd_analysis(a):
    from . import plots_analysis as P
    stem = Path(a.out_stem)
    png, pdf, js = (stem.with_name(stem.name + e) for e in (".png", ".pdf", ".json"))
    if a.kind == "spectrum":
        P.analysis_spectrum(a.taskvectors, a.tasks, png, pdf, out_json=js)
    elif a.kind == "similarity":
        P.analysis_similarity(a.taskvectors, a.tasks, a.merged or [], a.names or [], png, pdf,
                              out_json=js)
    elif a.kind == "etf":
        spec = _spec(a.spec)
        P.analysis_etf(a.taskvectors, a.tasks, spec["methods"], spec["regime"], png, pdf, js,
                       k_fraction=a.k_fraction, lora_rank=a.lora_rank, seed=spec.get("seed", 0))
    elif a.kind == "mda-signs":
        res = P.mda_sign_spread_report(a.taskvectors, js, a.conventions, a.k_fraction, a.lora_rank,
                                       a.regime)
        for etf, r in res["readings"].items():
            m = r["model"]
            print(f"mda etf={etf}: τm change over {a.conventions} sign conventions "
                  f"mean {m['mean_rel_change']:.2e} max {m['max_rel_change']:.2e}; "
                  f"‖τm − TSV-M part‖/‖τm‖ {m['rel_diff_from_tsv']:.2e}")
    elif a.kind == "sensitivity":
        P.analysis_sensitivity(a.results, _spec(a.spec), png, pdf, js)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mergelab", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    def add(name, fn, help_):
        s = sub.add_parser(name, help=help_)
        s.set_defaults(fn=fn)
        return s

    _add_setup_commands(add)
    _add_task_commands(add)
    _add_merge_commands(add)
    _add_output_commands(add)
    return p


def _add_setup_commands(add) -> None:
    """Config, data, θ0 and imported task vectors."""
    s = add("validate-config", cmd_validate_config, "validate a config file against the schema")
    s.add_argument("file")
    add("methods", cmd_methods, "list the available merge methods")

    s = add("prepare-task", cmd_prepare_task, "build/download one task's dataset")
    s.add_argument("--task", required=True); s.add_argument("--spec", required=True)
    s.add_argument("--out", required=True)

    s = add("paper-data", cmd_paper_data,
            "paper datasets: list their hub sources, or download them into a cache dir (needs internet)")
    s.add_argument("action", choices=["list", "download"])
    s.add_argument("--tasks", nargs="*", default=None, help="download: default all paper tasks")
    s.add_argument("--config", help="download: a paper config's hub tasks into its data.cache_dir")
    s.add_argument("--cache-dir")

    s = add("build-corpus", cmd_build_corpus, "generate the offline captioned pretraining corpus")
    s.add_argument("--spec", required=True); s.add_argument("--out", required=True)

    s = add("pretrain", cmd_pretrain, "pretrain the tiny CLIP (or fetch published weights)")
    s.add_argument("--spec", required=True); s.add_argument("--corpus")
    s.add_argument("--out-weights", required=True); s.add_argument("--out-metrics", required=True)

    s = add("ship-weights", cmd_ship_weights,
            "copy a pretrained θ0 into the package as shipped weights (model.pretrained: TAG) with its card")
    for k in ("--tag", "--spec", "--corpus-spec", "--weights", "--metrics"):
        s.add_argument(k, required=True)
    s.add_argument("--corpus", help="the corpus directory (its generator metadata goes into the card)")

    s = add("compare-weights", cmd_compare_weights, "compare a reproduced θ0 with shipped weights")
    for k in ("--tag", "--weights", "--metrics", "--out"):
        s.add_argument(k, required=True)

    s = add("random-init", cmd_random_init,
            "θ0 = the architecture's seeded random initialisation (model.random_init)")
    s.add_argument("--spec", required=True); s.add_argument("--corpus")
    s.add_argument("--out-weights", required=True); s.add_argument("--out-metrics", required=True)

    s = add("import-checkpoint", cmd_import_checkpoint,
            "import a published fine-tuned checkpoint as one task vector (data.tasks.<task>.checkpoint)")
    for k in ("--task", "--out"):
        s.add_argument(k, required=True)
    s.add_argument("--spec", help="the rule's JSON (kind, source, expected_rank, cache_dir)")
    s.add_argument("--kind", help="without --spec: hf (FusionBench) | lora (peft / KnOTS) | "
                   "open_clip (.pt / .safetensors)")
    s.add_argument("--source", help="without --spec: local file/dir or hub repo id")
    s.add_argument("--expected-rank", type=int, help="without --spec: LoRA rank to check")
    s.add_argument("--cache-dir", help="without --spec: Hugging Face cache dir")
    s.add_argument("--pretrained", help="θ0 the checkpoint was fine-tuned from (path or hub id)")
    s.add_argument("--offline", action="store_true", default=None,
                   help="only the Hugging Face cache (default: HF_HUB_OFFLINE)")


def _add_task_commands(add) -> None:
    """Per task: heads, fine-tuning, task vectors, reference accuracies."""
    s = add("heads", cmd_heads, "build one task's zero-shot head")
    for k in ("--task", "--spec", "--data", "--pretrained", "--out"):
        s.add_argument(k, required=True)

    s = add("finetune", cmd_finetune, "fine-tune one task (full or LoRA)")
    for k in ("--regime", "--task", "--spec", "--data", "--head", "--pretrained",
              "--out-weights", "--out-metrics"):
        s.add_argument(k, required=True)

    s = add("extract", cmd_extract, "extract one task vector")
    for k in ("--regime", "--spec", "--finetuned", "--pretrained", "--out"):
        s.add_argument(k, required=True)

    s = add("eval-reference", cmd_eval_reference, "zero-shot or individual accuracies")
    s.add_argument("--kind", choices=["zeroshot", "individual", "lowrank"], required=True)
    for k in ("--regime", "--spec", "--pretrained", "--out"):
        s.add_argument(k, required=True)
    s.add_argument("--tasks", nargs="+", required=True)
    s.add_argument("--data", nargs="+", required=True)
    s.add_argument("--heads", nargs="+", required=True)
    s.add_argument("--taskvectors", nargs="+")

    s.add_argument("--rank-divisor", type=int, help="lowrank: keep r // N triplets per matrix key")

    s = add("eval-disentanglement", cmd_eval_disentanglement,
            "pairwise weight-disentanglement errors of a suite's task vectors (regime report)")
    for k in ("--regime", "--spec", "--pretrained", "--out"):
        s.add_argument(k, required=True)
    for k in ("--tasks", "--data", "--heads", "--taskvectors"):
        s.add_argument(k, nargs="+", required=True)

    s = add("regime-report", cmd_regime_report, "tables/regime.{md,json}: is the run in the papers' regime?")
    for k in ("--spec", "--pretrained", "--out-md", "--out-json"):
        s.add_argument(k, required=True)
    s.add_argument("--results", nargs="+", required=True, help="eval JSONs")
    s.add_argument("--taskvectors", nargs="+", required=True, help="REGIME=PATH, in spec['tasks'] order")


def _add_merge_commands(add) -> None:
    """Per suite: the shared basis, merging, α selection, held-out tasks."""
    s = add("decompose", cmd_decompose, "the suite's shared top-k triplets and polar factors "
            "(read by TSV-M, DC-Merge, MDA and MDA AM)")
    for k in ("--regime", "--suite", "--spec", "--out", "--out-json"):
        s.add_argument(k, required=True)
    s.add_argument("--tasks", nargs="+", required=True)
    s.add_argument("--taskvectors", nargs="+", required=True)

    s = add("merge", cmd_merge, "merge the task vectors of one suite with one method")
    for k in ("--method", "--regime", "--suite", "--spec", "--out-tau", "--out-json"):
        s.add_argument(k, required=True)
    s.add_argument("--tasks", nargs="+", required=True)
    s.add_argument("--taskvectors", nargs="+", required=True)
    s.add_argument("--pretrained"); s.add_argument("--data", nargs="+")
    s.add_argument("--heads", nargs="+")
    s.add_argument("--basis", help="the suite's shared decomposition (rule decompose)")
    s.add_argument("--init-from", help="eval JSON whose α starts the coefficients (init: from_method)")

    s = add("eval-merged", cmd_eval_merged, "choose α on validation, evaluate on test")
    for k in ("--method", "--regime", "--suite", "--spec", "--pretrained", "--merged", "--out"):
        s.add_argument(k, required=True)
    s.add_argument("--merge-info")
    for k in ("--tasks", "--data", "--heads", "--individual"):
        s.add_argument(k, nargs="+", required=True)

    s = add("eval-generalization", cmd_eval_generalization,
            "evaluate a suite's merged model on held-out (unmerged) tasks")
    for k in ("--method", "--regime", "--suite", "--spec", "--pretrained", "--merged",
              "--merged-eval", "--out"):
        s.add_argument(k, required=True)
    for k in ("--tasks", "--data", "--heads", "--zeroshot"):
        s.add_argument(k, nargs="+", required=True)


def _add_output_commands(add) -> None:
    """Tables, figures, analyses, the manifest and artifact transfer."""
    s = add("ablation", cmd_ablation, "ablation tables/figures: generalization, accuracy vs number of tasks")
    s.add_argument("kind", choices=["generalization", "task-count"])
    s.add_argument("--spec"); s.add_argument("--results", nargs="+", required=True)
    s.add_argument("--out-stem", required=True); s.add_argument("--figure-stem")

    s = add("report", cmd_report, "tables (Markdown, LaTeX, CSV) and figures of one regime and suite")
    s.add_argument("--spec", required=True); s.add_argument("--regime", required=True)
    s.add_argument("--suite", required=True); s.add_argument("--out-dir", required=True)
    s.add_argument("--results", nargs="+", required=True)
    s = add("report-ranks", cmd_report_ranks, "figure of each method's rank per seed (several seeds)")
    s.add_argument("--table", required=True, help="the table JSON written by `report`")
    s.add_argument("--out-stem", required=True)
    s = add("analysis", cmd_analysis, "analysis figures (spectrum, similarity, etf, sensitivity)")
    s.add_argument("kind", choices=["spectrum", "similarity", "etf", "sensitivity", "mda-signs"])
    s.add_argument("--tasks", nargs="+"); s.add_argument("--taskvectors", nargs="+")
    s.add_argument("--merged", nargs="*"); s.add_argument("--names", nargs="*")
    s.add_argument("--k-fraction", type=float); s.add_argument("--lora-rank", type=int)
    s.add_argument("--spec"); s.add_argument("--results", nargs="+")
    s.add_argument("--regime", default="full", choices=["full", "lora"], help="mda-signs: regime")
    s.add_argument("--conventions", type=int, default=8,
                   help="mda-signs: number of random SVD sign conventions")
    s.add_argument("--out-stem", required=True)

    s = add("manifest", cmd_manifest, "run manifest: sha256, config subset and versions of every artifact")
    s.add_argument("--spec", required=True); s.add_argument("--out", required=True)
    s.add_argument("--files", nargs="+", required=True)
    s = add("compare-runs", cmd_compare_runs, "are two results directories' numbers bit for bit the "
            "same? (tensors, predictions, metrics, tables; exit 1 if not)")
    s.add_argument("a"); s.add_argument("b")
    s = add("verify-manifest", cmd_verify_manifest, "check artifacts against a run manifest")
    s.add_argument("file")
    s = add("artifacts", cmd_artifacts, "DVC: push the run's artifacts / pull them into a fresh clone")
    s.add_argument("action", choices=["push", "pull"])
    s.add_argument("--remote", help="DVC remote name (default: core.remote of .dvc/config)")
    s.add_argument("--root", default=".", help="repository root (default: .)")
    s.add_argument("--force", action="store_true",
                   help="pull: accept the artifacts although config/code differ from dvc.lock")
    s.add_argument("--no-check", action="store_true",
                   help="push: skip the check that Snakemake has nothing left to do")


def main(argv: list[str] | None = None) -> int:
    """The ``python -m mergelab.cli`` entry point: in a local Snakemake run the command runs
    in a child of the pre-imported fork server (mergelab.forkserver), otherwise here."""
    argv = sys.argv[1:] if argv is None else list(argv)
    from . import forkserver
    rc = forkserver.delegate(argv)
    return run(argv) if rc is None else rc


def run(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    args = build_parser().parse_args(argv)
    t0 = time.time()
    from .config import ConfigError
    from .io import ArtifactError
    try:
        rc = args.fn(args)  # a command may return its exit status (compare-runs: 1 = differ)
    except (ConfigError, ArtifactError) as exc:
        print(f"mergelab {args.cmd}: error: {exc}", file=sys.stderr)
        return 2
    logging.info("mergelab %s finished in %.1f s", args.cmd, time.time() - t0)
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
