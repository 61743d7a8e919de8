"""Preparing one paper task: load its source, standardise the columns to ``image`` +
``label`` (ClassLabel), apply the split rule and write the DatasetDict with its provenance."""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from .sources import _find_split, _labels_as_int, _pick, load_hub, load_local, resolve_classes
from .splits import FULL_VAL_CAP, FULL_VAL_FRACTION, full_split_indices, lora_validation, split_rule
from .tasks import (IMAGE_COLUMNS, LABEL_COLUMNS, VAL_SPLITS, HubTask, PaperDataError,
                    canonical_task, hub_task)


def prepare_task(task: str, task_cfg: Mapping[str, Any], out_dir: str | Path, seed: int = 0,
                 cache_dir: str | None = None) -> dict[str, Any]:
    """Write ``task``'s DatasetDict (train/validation/test; image + ClassLabel label) to
    ``out_dir`` atomically and return the provenance written to mergelab_source.json."""
    import datasets

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    source = task_cfg.get("source", "hub")
    protocol = task_cfg.get("split_protocol") or "full"
    rule = split_rule(task, protocol)
    work = Path(f"{out_dir.parent}/.{out_dir.name}.tmp-{os.getpid()}-{int(time.time())}")
    stage = work / "dataset"
    t0 = time.time()
    try:
        work.mkdir(parents=True)
        info: dict[str, Any] = {"task": task, "source": source, "split_protocol": protocol,
                                "seed": seed, "datasets_version": datasets.__version__}
        dsd, hub, where = _load_source(task, task_cfg, source, cache_dir, work, info)
        s_train, s_test, s_val = _source_splits(task, dsd, hub, source, where)
        info["source_splits"] = {"train": s_train, "test": s_test, "validation": s_val,
                                 "all": list(dsd)}
        standard = _standardizer(task, dsd, hub, s_train, where, info)
        splits, vdesc, notes = _apply_split_rule(task, rule, standard, s_train, s_test, s_val,
                                                 seed, where)
        info.update({"validation_rule": vdesc, "split_rule": rule,
                     "sizes": {k: len(v) for k, v in splits.items()}})
        if notes:
            info["notes"] = notes
        datasets.DatasetDict(splits).save_to_disk(str(stage))
        info["seconds"] = round(time.time() - t0, 1)
        with open(stage / "mergelab_source.json", "w") as fh:
            json.dump(info, fh, indent=2, sort_keys=True)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(stage, out_dir)
        return info
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _load_source(task: str, task_cfg: Mapping[str, Any], source: str, cache_dir: str | None,
                 work: Path, info: dict[str, Any]):
    """(DatasetDict of the raw source, its HubTask or None, a phrase naming it for errors);
    records the source's format and location in ``info``."""
    hub: HubTask | None = None
    if source == "hub":
        hub = hub_task(task, task_cfg)
        dsd = load_hub(task, hub, cache_dir)
        where = f"hub dataset '{hub.hub_id}'"
        info.update({"format": "hub", "hub_id": hub.hub_id, "hub_config": hub.config,
                     "cache_dir": cache_dir})
    elif source == "local":
        if not task_cfg.get("path"):
            raise PaperDataError(f"task '{task}': source 'local' needs data.tasks.{task}.path")
        name = canonical_task(task)
        if name:
            hub = hub_task(name, {k: v for k, v in task_cfg.items()
                                  if k in ("hub_id", "hub_config")})
        dsd, fmt, extra = load_local(task, task_cfg["path"], work)
        where = f"local {fmt} at {Path(task_cfg['path']).expanduser()}"
        info.update({"format": fmt, "path": str(Path(task_cfg["path"]).expanduser().resolve()),
                     **extra})
        if fmt == "imagefolder":
            # torchvision ImageFolder semantics: label = index of the sorted class folder.
            # The paper's class-name list (same order) is used when its length matches.
            if hub is not None and hub.classnames is not None and \
                    len(hub.classnames) != len(extra["class_folders"]):
                hub = replace(hub, classnames=None)
    else:
        raise PaperDataError(f"task '{task}': source {source!r} is not a paper source "
                             "(hub|local)")
    if hub is not None and hub.variant:
        info["variant"] = hub.variant
    if hub is not None and hub.note:
        info["note"] = hub.note
    return dsd, hub, where


def _source_splits(task: str, dsd, hub: HubTask | None, source: str,
                   where: str) -> tuple[str, str, str | None]:
    """The source's (train, test, validation or None) split names."""
    hub_train = hub.train_split if hub else "train"
    hub_test = hub.test_split if hub else "test"
    s_train = _find_split(dsd, ["train", hub_train])
    s_test = _find_split(dsd, [hub_test, "test"] if source == "hub" else ["test", hub_test])
    if s_train is None or s_test is None:
        missing = "train" if s_train is None else "test"
        raise PaperDataError(
            f"task '{task}': {where} has no '{missing}' split (has {list(dsd)}); "
            f"the protocol needs train and test")
    s_val = _find_split(dsd, [hub.val_split if hub else None, *VAL_SPLITS])
    if s_val == s_test:
        s_val = None
    return s_train, s_test, s_val


def _standardizer(task: str, dsd, hub: HubTask | None, s_train: str, where: str,
                  info: dict[str, Any]):
    """A function split name -> that split with columns ``image`` (Image) and ``label``
    (ClassLabel); the columns and class names are read from the train split (and recorded
    in ``info``)."""
    import datasets

    ref = dsd[s_train]
    cols = ref.column_names
    img_col = _pick(cols, hub.image_column if hub else "image", IMAGE_COLUMNS, "image",
                    task, where)
    lab_col = _pick(cols, hub.label_column if hub else "label", LABEL_COLUMNS, "label",
                    task, where)
    names, names_src = resolve_classes(task, hub, ref.features[lab_col], where, dsd, lab_col)
    if len(names) < 2:
        raise PaperDataError(f"task '{task}': {where} has {len(names)} class(es)")
    info.update({"columns": {"image": img_col, "label": lab_col}, "num_classes": len(names),
                 "classnames_source": names_src})
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=names)})

    def standard(split_name: str):
        ds = dsd[split_name]
        for c in (img_col, lab_col):
            if c not in ds.column_names:
                raise PaperDataError(f"task '{task}': split '{split_name}' of {where} has no "
                                     f"column {c!r} (columns: {ds.column_names})")
        labels = _labels_as_int(task, split_name, ds, lab_col, names)
        ds = ds.select_columns([img_col])
        if img_col != "image":
            ds = ds.rename_column(img_col, "image")
        ds = ds.cast_column("image", datasets.Image())
        ds = ds.add_column("label", labels.tolist())
        return ds.cast(features)
    return standard


def _apply_split_rule(task: str, rule: str, standard, s_train: str, s_test: str,
                      s_val: str | None, seed: int, where: str):
    """({train, validation, test} datasets, description of the validation rule, notes)."""
    train_full = standard(s_train)
    test_full = standard(s_test)
    notes: list[str] = []
    if rule == "lora_test20":
        val_idx, test_idx, vdesc = lora_validation(task, len(test_full), s_test, seed, notes)
        splits = {"train": train_full, "validation": test_full.select(val_idx),
                  "test": test_full.select(test_idx)}
    elif rule == "own_validation" and s_val is not None:
        splits = {"train": train_full, "validation": standard(s_val), "test": test_full}
        vdesc = f"the source's own validation split '{s_val}'"
    else:
        if rule == "own_validation":
            notes.append(f"{where} has no validation split; used the full-protocol rule")
        tr_idx, va_idx = full_split_indices(len(train_full), seed)
        splits = {"train": train_full.select(tr_idx), "validation": train_full.select(va_idx),
                  "test": test_full}
        vdesc = (f"{FULL_VAL_FRACTION:.0%} of the train split '{s_train}' capped at "
                 f"{FULL_VAL_CAP} (random_split, seed {seed})")
    if s_val is not None and rule != "own_validation":
        notes.append(f"source split '{s_val}' not used (split rule {rule})")
    for k, v in splits.items():
        if len(v) == 0:
            raise PaperDataError(f"task '{task}': split '{k}' is empty after the split rule "
                                 f"({vdesc})")
    return splits, vdesc, notes
