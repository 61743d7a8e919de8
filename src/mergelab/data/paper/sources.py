"""Loading a paper task's raw source (a hub dataset or a local folder) into a DatasetDict,
and reading its columns and class names."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..prepare import png_bytes
from .idx import find_idx, read_idx_split
from .tasks import HUB_TASKS, VAL_SPLITS, HubTask, PaperDataError, hub_task


IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm"}


def download_command(hub: HubTask, cache_dir: str | None) -> str:
    args = [repr(hub.hub_id)]
    if hub.config:
        args.append(repr(hub.config))
    if cache_dir:
        args.append(f"cache_dir={str(cache_dir)!r}")
    return f"python -c \"import datasets; datasets.load_dataset({', '.join(args)})\""


def load_hub(task: str, hub: HubTask, cache_dir: str | None):
    import datasets

    try:
        dsd = datasets.load_dataset(hub.hub_id, hub.config, cache_dir=cache_dir)
    except Exception as exc:  # offline, not cached, gated, renamed ...
        offline = os.environ.get("HF_DATASETS_OFFLINE") or os.environ.get("HF_HUB_OFFLINE")
        cfg = f" (config {hub.config!r})" if hub.config else ""
        raise PaperDataError(
            f"task '{task}': cannot load hub dataset '{hub.hub_id}'{cfg} with cache dir "
            f"{cache_dir or '<default HF cache>'}: {type(exc).__name__}: {exc}.\n"
            + ("HF offline mode is on and the dataset is not in that cache. "
               if offline else "The hub is unreachable or the dataset is not cached. ")
            + "On a machine with internet, pre-download it into the same cache dir:\n  "
            + f"python -m mergelab.cli paper-data download --tasks {task}"
            + (f" --cache-dir {cache_dir}" if cache_dir else "")
            + f"\n  (equivalently: {download_command(hub, cache_dir)})\n"
            "or point the task at a local copy: data.tasks."
            f"{task}: {{source: local, path: /path/to/{task}}}") from exc
    if not isinstance(dsd, datasets.DatasetDict):
        raise PaperDataError(f"task '{task}': hub dataset '{hub.hub_id}' did not load as a "
                             f"DatasetDict (got {type(dsd).__name__})")
    return dsd


def _find_parquet(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for root in (path, path / "data"):
        if not root.is_dir():
            continue
        for f in sorted(root.glob("*.parquet")):
            split = f.stem.split("-")[0]
            found.setdefault(split, []).append(str(f))
        for d in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "data"):
            files = sorted(str(f) for f in d.glob("*.parquet"))
            if files:
                found.setdefault(d.name, []).extend(files)
        if found:
            return found
    return found


def _imagefolder_split(split_dir: Path) -> list[tuple[str, str]]:
    """(class folder name, file path) for every image below ``split_dir/<class>/``."""
    items = []
    for cdir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        for f in sorted(cdir.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                items.append((cdir.name, str(f)))
    return items


def _imagefolder_splits(path: Path) -> dict[str, Path]:
    splits = {}
    for name in ("train", "test", *VAL_SPLITS):
        d = path / name
        if d.is_dir() and any(p.is_dir() for p in d.iterdir()):
            splits[name] = d
    return splits


def load_local(task: str, path: str | Path, work_dir: Path):
    """Read a local folder as a DatasetDict; returns (DatasetDict, format name, extra info)."""
    import datasets

    path = Path(path).expanduser()
    if not path.is_dir():
        raise PaperDataError(f"task '{task}': local path {path} does not exist or is not a "
                             "folder (data.tasks.<task>.path)")
    if (path / "dataset_dict.json").is_file():
        return datasets.load_from_disk(str(path)), "saved_datasetdict", {}
    if (path / "dataset_info.json").is_file() and (path / "state.json").is_file():
        raise PaperDataError(f"task '{task}': {path} is a single saved Dataset, not a "
                             "DatasetDict with train/test splits")
    parquet = _find_parquet(path)
    if parquet:
        dsd = datasets.load_dataset("parquet", data_files=parquet,
                                    cache_dir=str(work_dir / "cache"))
        return dsd, "parquet", {"parquet_files": {k: len(v) for k, v in parquet.items()}}
    folders = _imagefolder_splits(path)
    if folders:
        if "train" not in folders:
            raise PaperDataError(f"task '{task}': ImageFolder layout at {path} has no 'train' "
                                 f"split (expected {path / 'train'}/<class>/<image>)")
        classes = sorted(p.name for p in folders["train"].iterdir() if p.is_dir())
        index = {c: i for i, c in enumerate(classes)}
        features = datasets.Features({"image": datasets.Image(),
                                      "label": datasets.ClassLabel(names=classes)})
        out = {}
        for split, d in folders.items():
            items = _imagefolder_split(d)
            unknown = sorted({c for c, _ in items if c not in index})
            if unknown:
                raise PaperDataError(
                    f"task '{task}': {d} has class folder(s) {unknown[:5]} that are not in "
                    f"{folders['train']} (labels outside the class range)")
            if not items:
                raise PaperDataError(f"task '{task}': split folder {d} holds no images")

            def gen(items=items):
                for c, f in items:
                    with open(f, "rb") as fh:
                        yield {"image": {"bytes": fh.read(), "path": os.path.basename(f)},
                               "label": index[c]}

            out[split] = datasets.Dataset.from_generator(
                gen, features=features, cache_dir=str(work_dir / "cache"),
                keep_in_memory=False)
        return datasets.DatasetDict(out), "imagefolder", {"class_folders": classes}
    idx = _load_idx(task, path)
    if idx is not None:
        dsd, extra = idx
        return dsd, "idx", extra
    raise PaperDataError(
        f"task '{task}': no dataset found at {path}. Expected one of: a saved DatasetDict "
        "(dataset_dict.json), parquet files per split (train.parquet / train-*.parquet / "
        "train/*.parquet), an ImageFolder tree (train/<class>/*.png, test/<class>/..., "
        "optional val/<class>/...), or IDX files (train-images-idx3-ubyte[.gz], "
        "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
        "t10k-labels-idx1-ubyte[.gz])")


def _load_idx(task: str, path: Path):
    """(DatasetDict, extra info) of the IDX files in ``path``, or None when it holds none;
    a corrupt or unmatched file is an error naming the task and the file."""
    try:
        idx = find_idx(path)
        if not idx:
            return None
        return _idx_datasetdict(idx), {"idx_files": {k: [f.name for f in v]
                                                     for k, v in idx.items()}}
    except PaperDataError as exc:
        raise PaperDataError(f"task '{task}': {exc}") from None


def _idx_datasetdict(idx: dict[str, tuple[Path, Path]]):
    """DatasetDict of the IDX splits in file order: ``image`` (greyscale PNG, as the hub's
    parquet copies store them) and ``label`` (ClassLabel "0".."k-1"; IDX has no class names,
    so a task's paper list replaces them when the class count matches)."""
    import datasets

    arrays = {split: read_idx_split(*files) for split, files in idx.items()}
    n_classes = 1 + max(int(labels.max(initial=0)) for _, labels in arrays.values())
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=[str(c) for c in
                                                                      range(n_classes)])})
    # PNG bytes encoded here and an in-memory table: twice as fast as a generator dataset
    return datasets.DatasetDict({
        split: datasets.Dataset.from_dict(
            {"image": [{"bytes": png_bytes(image), "path": None} for image in images],
             "label": labels.tolist()}, features=features)
        for split, (images, labels) in arrays.items()})


def _pick(columns: Sequence[str], preferred: str, candidates: Iterable[str], what: str,
          task: str, where: str) -> str:
    if preferred in columns:
        return preferred
    for c in candidates:
        if c in columns:
            return c
    raise PaperDataError(f"task '{task}': {where} has no {what} column (columns: "
                         f"{list(columns)}; looked for {preferred!r} and {list(candidates)})")


def _clean(name: str) -> str:
    return name.replace("_", " ").strip()


def resolve_classes(task: str, hub: HubTask | None, label_feature, where: str,
                    dsd=None, label_col: str | None = None) -> tuple[list[str], str]:
    """(class names, where they came from) for the label column."""
    import datasets

    explicit = list(hub.classnames) if hub is not None and hub.classnames is not None else None
    if isinstance(label_feature, datasets.ClassLabel):
        names = [_clean(n) for n in label_feature.names]
        if explicit is not None:
            if len(explicit) != len(names):
                raise PaperDataError(
                    f"task '{task}': {where} has {len(names)} classes but the paper's class "
                    f"list has {len(explicit)}; is this the right dataset/variant?")
            return explicit, "explicit"
        return names, "ClassLabel feature"
    if explicit is not None:
        return explicit, "explicit"
    dtype = getattr(label_feature, "dtype", None)
    if dtype == "string" and dsd is not None:
        uniq = sorted({v for split in dsd.values() for v in split[label_col]})
        return [_clean(u) for u in uniq], "sorted label strings"
    raise PaperDataError(
        f"task '{task}': label column of {where} is {label_feature!r}, not a ClassLabel, and "
        "there is no built-in class-name list for this task; provide a dataset whose label "
        "column is a ClassLabel (or an ImageFolder tree)")


def _labels_as_int(task: str, split: str, ds, label_col: str, names: list[str]):
    """Integer label array of ``ds`` (bools and strings mapped), range-checked."""
    import numpy as np

    raw = ds[label_col]
    if len(raw) and isinstance(raw[0], str):
        idx = {n: i for i, n in enumerate(names)}
        try:
            arr = np.asarray([idx[_clean(v)] for v in raw], dtype=np.int64)
        except KeyError as exc:
            raise PaperDataError(f"task '{task}': split '{split}' has label {exc.args[0]!r} "
                                 f"not among the {len(names)} classes") from None
    else:
        arr = np.asarray(raw).astype(np.int64)
    if arr.size:
        bad = arr[(arr < 0) | (arr >= len(names))]
        if bad.size:
            raise PaperDataError(
                f"task '{task}': split '{split}' has label {int(bad[0])} outside the class range "
                f"0..{len(names) - 1} ({len(names)} classes; {bad.size} such examples)")
    return arr


def _find_split(dsd, candidates: Iterable[str | None]) -> str | None:
    for c in candidates:
        if c and c in dsd:
            return c
    return None


def hub_table() -> list[str]:
    """One line per built-in paper task: hub id, split and column names, class-name source."""
    lines = []
    for t, h in HUB_TASKS.items():
        hub_name = h.hub_id + (f" ({h.config})" if h.config else "")
        lines.append(f"{t:14s} {hub_name:44s} "
                     f"train={h.train_split} test={h.test_split} val={h.val_split} "
                     f"cols=({h.image_column},{h.label_column}) classes={h.classnames_source}")
    return lines


def download(tasks: Sequence[str], cache_dir: str | None,
             task_cfgs: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Download the hub datasets of ``tasks`` into ``cache_dir`` (needs internet), printing
    each task's split sizes."""
    task_cfgs = task_cfgs or {}
    for t in tasks:
        hub = hub_task(t, task_cfgs.get(t))
        print(f"{t}: {hub.hub_id} {hub.config or ''} -> {cache_dir or 'default HF cache'}",
              flush=True)
        dsd = load_hub(t, hub, cache_dir)
        print(f"  splits: {', '.join(f'{k}={len(v)}' for k, v in dsd.items())}", flush=True)
