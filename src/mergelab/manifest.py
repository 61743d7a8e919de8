"""Run manifest: every artifact of a run with its sha256 and the config subset that
produced it, and every table row traced to the artifacts behind it.

``results/<name>/manifest.json`` (rule ``manifest``)::

    {
      "name", "results_dir", "code_version", "packages",   # of the manifest job
      "config": {...},                                       # the validated run config
      "artifacts": {
        "<path>": {"kind", "sha256", "bytes",                # directories: "files" and a
                   "config", "seed", "code_version"}         # tree sha256 (see tree_sha256)
      },
      "tables": {
        "<regime>_<suite>": {
          "files": [tables/*.md|.tex|.csv|.json, figures/accuracy_*, figures/ranks_*],
          "rows": {"<row>": ["<artifact path>", ...]}        # eval JSON, merged τ, task
        }                                                    # vectors, checkpoints, θ0, heads, data
      }
    }

``config`` of an artifact is the config subset its rule ran with: the
``provenance.config`` of the metrics JSON the rule wrote beside it (fine-tuning,
merging, evaluation, pretraining, tables) or, for steps that write no JSON (datasets,
heads, task-vector extraction), the subset the rule passed (the manifest rule's
``--spec``). ``code_version`` per artifact is the one recorded when it was made (a
partial rerun can mix versions; the top-level one is the manifest job's).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .io import ArtifactError, load_json, provenance, save_json, sha256_file


def tree_sha256(root: str | os.PathLike) -> tuple[str, int, int]:
    """(sha256, files, bytes) of a directory: the sha256 of its sorted
    ``<relative path>\\t<file sha256>\\n`` lines (hidden temp entries excluded)."""
    root = Path(root)
    lines, n, size = [], 0, 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") or not d.endswith(".tmp"))
        for f in sorted(filenames):
            if f.startswith(".") and f.endswith(".tmp"):
                continue
            p = Path(dirpath) / f
            lines.append(f"{p.relative_to(root).as_posix()}\t{sha256_file(p)}\n")
            n += 1
            size += p.stat().st_size
    lines.sort()
    return hashlib.sha256("".join(lines).encode()).hexdigest(), n, size


def _kind(rel: str) -> str:
    parts = rel.split("/")
    for key, kind in (("pretrained", "pretrained"), ("heads", "head"), ("finetune", "finetuned"),
                      ("taskvectors", "task_vector"), ("basis", "shared_basis"),
                      ("merged", "merged"), ("eval", "metrics"),
                      ("tables", "table"), ("figures", "figure")):
        if key in parts:
            if kind == "finetuned" and rel.endswith(".json"):
                return "finetune_metrics"
            if kind == "metrics" and rel.endswith(".npz"):
                return "predictions"
            if kind == "merged" and rel.endswith(".json"):
                return "merge_info"
            if kind == "shared_basis" and rel.endswith(".json"):
                return "shared_basis_info"
            if kind == "pretrained" and rel.endswith(".json"):
                return "pretrain_metrics"
            return kind
    return "dataset"


def _producer_json(path: Path) -> Path | None:
    """The JSON with ``provenance`` written by the same job as ``path``."""
    if path.suffix == ".json":
        return path
    if path.parent.name == "pretrained":
        return path.parent / "metrics.json"
    if path.parent.parent.name == "figures" or path.parent.name == "figures":
        stem = path.name[: -len(path.suffix)]
        for prefix in ("accuracy_", "ranks_"):  # report jobs: tables/<regime>_<suite>.json
            if stem.startswith(prefix):
                return path.parent.parent / "tables" / f"{stem[len(prefix):]}.json"
        return path.with_suffix(".json")
    if path.parent.name != "heads" and "taskvectors" not in path.parts:
        return path.with_suffix(".json")
    return None


def describe(path: str | os.PathLike, spec: Mapping[str, Any]) -> dict[str, Any]:
    """One artifact entry: kind, sha256, size and the config it was produced with."""
    p = Path(path)
    rel = p.as_posix()
    if not p.exists():
        raise ArtifactError(f"{p}: listed artifact does not exist")
    entry: dict[str, Any] = {"kind": _kind(rel)}
    if p.is_dir():
        entry["sha256"], entry["files"], entry["bytes"] = tree_sha256(p)
        entry["sha256_of"] = "sorted '<relpath>\\t<sha256>' lines of the directory's files"
    else:
        entry["sha256"], entry["bytes"] = sha256_file(p), p.stat().st_size
    cfg, seed, code = None, None, None
    prod = _producer_json(p)
    if prod is not None and prod.exists():
        try:
            prov = load_json(prod).get("provenance") or {}
        except (ArtifactError, AttributeError):
            prov = {}
        cfg, seed, code = prov.get("config"), prov.get("seed"), prov.get("code_version")
    if cfg is None:
        name = p.name[: -len(p.suffix)] if p.suffix else p.name
        if entry["kind"] == "task_vector":
            cfg = spec.get("imports", {}).get(f"{p.parent.name}/{name}") or \
                spec.get("extract", {}).get(p.parent.name)
        elif entry["kind"] == "head":
            cfg = spec.get("heads", {}).get(name)
        elif entry["kind"] == "dataset":
            cfg = spec.get("corpus") if p.name == "_corpus" else spec.get("data", {}).get(p.name)
    entry["config"] = cfg
    if seed is not None:
        entry["seed"] = seed
    if code is not None:
        entry["code_version"] = code
    return entry


def trace_rows(table_json: str | os.PathLike, results_dir: str, data_root: str,
               tasks: Sequence[str], imported: Sequence[str] = ()) -> dict[str, list[str]]:
    """Row name -> the artifacts behind that row of one table (paths as the rules name them).
    ``imported``: tasks whose task vector of this regime was imported from a published
    checkpoint (no fine-tuning outputs)."""
    t = load_json(table_json)
    R, regime, suite = results_dir, t["regime"], t["suite"]
    # per-seed roots: <R>/seed<N> when the run has a `seeds` list, else R (older tables: R)
    roots = [f"{R}/seed{s}" for s in t["seeds"]] if t.get("seeded_paths") else [R]
    common = [f"{R}/pretrained/clip.safetensors"] + [f"{R}/heads/{x}.safetensors" for x in tasks] \
        + [f"{data_root}/{x}" for x in tasks]
    ckpts = [f"{S}/finetune/{regime}/{x}.{e}" for S in roots for x in tasks if x not in set(imported)
             for e in ("safetensors", "json")]
    tvs = [f"{S}/taskvectors/{regime}/{x}.safetensors" for S in roots for x in tasks]
    individual = [f"{S}/eval/{regime}/individual/{x}.{e}" for S in roots for x in tasks
                  for e in ("json", "npz")]
    out = {}
    for row in t["rows"]:
        m = row["method"]
        if m == "zeroshot":
            paths = [f"{R}/eval/{regime}/zeroshot/{x}.{e}" for x in tasks for e in ("json", "npz")] + common
        elif m == "individual":
            paths = individual + tvs + ckpts + common
        else:
            paths = []
            for S in roots:
                info = Path(f"{S}/merged/{regime}/{suite}/{m}.json")
                basis = load_json(info).get("shared_basis") if info.exists() else None
                paths += ([f"{S}/eval/{regime}/{suite}/{m}.json", f"{S}/eval/{regime}/{suite}/{m}.npz",
                           f"{S}/merged/{regime}/{suite}/{m}.safetensors", info.as_posix()]
                          + ([basis, str(Path(basis).with_suffix(".json"))] if basis else []))
            paths += individual + tvs + ckpts + common
        out[m] = paths
    return out


def build_manifest(spec: Mapping[str, Any], files: Iterable[str | os.PathLike]) -> dict[str, Any]:
    """The manifest of a run from its artifact paths and the manifest rule's spec."""
    R, D = spec["results_dir"], spec["data_root"]
    artifacts = {}
    for f in sorted({Path(f).as_posix() for f in files}):
        artifacts[f] = describe(f, spec)
    tables = {}
    for regime in spec["regimes"]:
        for suite, tasks in spec["suites"].items():
            key = f"{regime}_{suite}"
            tj = f"{R}/tables/{key}.json"
            if tj not in artifacts:
                continue
            rows = trace_rows(tj, R, D, tasks, spec.get("imported", {}).get(regime, ()))
            for row, paths in rows.items():
                missing = [p for p in paths if p not in artifacts]
                if missing:
                    raise ArtifactError(f"{tj}: row '{row}' traces to {missing[0]}, which is not "
                                        "among the manifest's inputs (rules and manifest.py disagree)")
            files_ = [f"{R}/tables/{key}.{e}" for e in ("md", "tex", "csv", "json")] + \
                     [f"{R}/figures/{kind}_{key}.{e}" for kind in ("accuracy", "ranks") for e in ("png", "pdf")]
            tables[key] = {"files": [p for p in files_ if p in artifacts], "rows": rows}
    prov = provenance()
    return {"name": spec["name"], "results_dir": R, "data_root": D,
            "code_version": prov["code_version"], "packages": prov["packages"],
            "config": spec.get("config"), "artifacts": artifacts, "tables": tables}


def write_manifest(spec: Mapping[str, Any], files: Iterable[str | os.PathLike],
                   out: str | os.PathLike) -> dict[str, Any]:
    man = build_manifest(spec, files)
    save_json(man, out)
    return man


def verify_manifest(path: str | os.PathLike) -> list[str]:
    """Artifacts whose current sha256 differs from the manifest (or that are missing)."""
    man = load_json(path)
    bad = []
    for f, entry in man["artifacts"].items():
        p = Path(f)
        if not p.exists():
            bad.append(f"{f}: missing")
            continue
        sha = tree_sha256(p)[0] if p.is_dir() else sha256_file(p)
        if sha != entry["sha256"]:
            bad.append(f"{f}: sha256 {sha} != manifest {entry['sha256']}")
    return bad
