"""The paper datasets: where each one lives, how its columns are named, its class
names and CLIP prompt templates, and the protocol's split rules.

Every paper task ends up as one HF ``DatasetDict`` directory with splits ``train``,
``validation`` and ``test`` and two columns, ``image`` (``datasets.Image``) and
``label`` (``datasets.ClassLabel`` carrying the class names the zero-shot head is
built from). The directory also holds ``mergelab_source.json`` saying where the
data came from and which split rule made the validation split.

Sources (``data.tasks.<task>.source``):

* ``hub``: ``datasets.load_dataset(hub_id, hub_config, cache_dir=data.cache_dir)``.
  The hub ids, split names and column names are in ``HUB_TASKS``; a task config may
  override ``hub_id`` / ``hub_config``.
* ``local`` (``path:``): a folder in one of three layouts, detected in this order:
  a saved ``DatasetDict`` (``save_to_disk`` output, has ``dataset_dict.json``);
  parquet files per split (``<split>.parquet``, ``<split>-*.parquet``,
  ``<split>/*.parquet``, also under ``data/``); or a torchvision ``ImageFolder``
  tree ``<path>/train/<class>/*.png``, ``<path>/test/<class>/...`` and optionally
  ``<path>/val/<class>/...``.

Split rules (``data.tasks.<task>.split_protocol``):

* ``full`` (task-vector / TSV protocol): validation = a random 10 % of the
  training split, at most 5,000 examples, drawn with a ``torch.Generator`` seeded
  with the config seed (0 in the paper configs) exactly as ``random_split`` with
  lengths ``[n - n_val, n_val]`` does; training uses the rest; test = the standard
  test split.
* ``lora`` (KnOTS protocol): Cars, GTSRB, MNIST, SUN397, SVHN: validation = the
  first 20 % of the KnOTS code's fixed permutation of the test split (shipped as
  ``mergelab/data/knots_splits/<task>.npy``, ``mergelab.data.knots_index``), test = the
  other 80 %, training = the whole training split. When the test split has another size
  than the file indexes, a permutation seeded with the config seed replaces it and
  ``mergelab_source.json`` says so. DTD, EuroSAT, RESISC45: the source's own
  validation split (``val/`` folder or a ``validation``/``valid``/``val`` split);
  when the source has none, the ``full`` rule is used and this is recorded in
  ``mergelab_source.json``. Every other task: the ``full`` rule.

Pre-download with internet: ``python -m mergelab.data.paper download --cache-dir DIR
--tasks Cars DTD ...`` (see ``docs/paper_scale.md``).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence


class PaperDataError(RuntimeError):
    """A paper dataset cannot be prepared; the message names the task, the source and the fix."""


# --------------------------------------------------------------------------------------
# Prompt templates (the CLIP zero-shot templates used by the task-vector code bases).
# "{}" is replaced by the class name.
# --------------------------------------------------------------------------------------

_T_DIGITS = ('a photo of the number: "{}".',)
_T_PLAIN2 = ("a photo of a {}.", "a photo of the {}.")
_T_CIFAR = (
    "a photo of a {}.", "a blurry photo of a {}.", "a black and white photo of a {}.",
    "a low contrast photo of a {}.", "a high contrast photo of a {}.", "a bad photo of a {}.",
    "a good photo of a {}.", "a photo of a small {}.", "a photo of a big {}.",
    "a photo of the {}.", "a blurry photo of the {}.", "a black and white photo of the {}.",
    "a low contrast photo of the {}.", "a high contrast photo of the {}.",
    "a bad photo of the {}.", "a good photo of the {}.", "a photo of the small {}.",
    "a photo of the big {}.",
)
_T_RESISC = tuple(
    f"{kind} {noun} of {art}{{}}."
    for art in ("", "a ", "the ")
    for noun in ("imagery", "photo", "view")
    for kind in ("satellite", "aerial")
)
_T_DTD = tuple(f"a photo of {art} {{}} {thing}." for art in ("a", "the")
               for thing in ("texture", "pattern", "thing", "object"))
_T_CARS = ("a photo of a {}.", "a photo of the {}.", "a photo of my {}.", "i love my {}!",
           "a photo of my dirty {}.", "a photo of my clean {}.", "a photo of my new {}.",
           "a photo of my old {}.")
_T_FER = ("a photo of a {} looking face.", "a photo of a face showing the emotion: {}.",
          "a photo of a face looking {}.", "a face that looks {}.", "they look {}.",
          "look at how {} they are.")

TEMPLATES: dict[str, tuple[str, ...]] = {
    "Cars": _T_CARS,
    "DTD": _T_DTD,
    "EuroSAT": tuple(f"a centered satellite photo of {a}{{}}." for a in ("", "a ", "the ")),
    "GTSRB": tuple(f'a {how} photo of a "{{}}" traffic sign.'
                   for how in ("zoomed in", "centered", "close up")),
    "MNIST": _T_DIGITS,
    "RESISC45": _T_RESISC,
    "SVHN": _T_DIGITS,
    "SUN397": _T_PLAIN2,
    "STL10": _T_PLAIN2,
    "OxfordIIITPet": ("a photo of a {}, a type of pet.",),
    "Flowers102": ("a photo of a {}, a type of flower.",),
    "CIFAR100": _T_CIFAR,
    "PCAM": ("this is a photo of {}",),
    "FER2013": _T_FER,
    "CIFAR10": _T_CIFAR,
    "Food101": ("a photo of {}, a type of food.",),
    "FashionMNIST": _T_PLAIN2,
    "RenderedSST2": ("a {} review of a movie.",),
    "EMNIST": ('a photo of the digit character: "{}".',),
    "KMNIST": ("a photo of the character {}.",),
}
# EMNIST digits (the variant the DC-Merge code reads) uses the number template.
_VARIANT_TEMPLATES = {("EMNIST", "digits"): _T_DIGITS}
GENERIC_TEMPLATES = ("a photo of a {}.",)

# --------------------------------------------------------------------------------------
# Explicit class names, for sources whose label column is not a ClassLabel (PCAM's bool,
# FER2013's integer "cls") and for tasks whose standard CLIP class names differ from the
# raw label names (EuroSAT folder names, GTSRB numbers, KMNIST romanizations, ...).
# Order = label index.
# --------------------------------------------------------------------------------------

_DIGITS = tuple(str(i) for i in range(10))
_CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
            "truck")
_STL10 = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
_EUROSAT = ("annual crop land", "forest", "brushland or shrubland", "highway or road",
            "industrial buildings or commercial buildings", "pasture land",
            "permanent crop land", "residential buildings or homes or apartments", "river",
            "lake or sea")
_FASHION = ("T - shirt / top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
            "Sneaker", "Bag", "Ankle boot")
_PCAM = ("lymph node", "lymph node containing metastatic tumor tissue")
_FER = ("angry", "disgusted", "fearful", "happy", "neutral", "sad", "surprised")
_SST2 = ("negative", "positive")
_EMNIST_LETTERS = tuple(chr(ord("A") + i) for i in range(26))
_KMNIST = ("お", "き", "す", "つ", "な", "は", "ま", "や", "れ", "を")


def _gtsrb_names() -> tuple[str, ...]:
    rc = "red and white circle"
    rt = "red and white triangle"
    bc = "blue circle with white"
    speed = [f"{rc} {v} kph speed limit" for v in (20, 30, 50, 60, 70, 80)]
    return tuple(speed + [
        "end / de-restriction of 80 kph speed limit",
        f"{rc} 100 kph speed limit",
        f"{rc} 120 kph speed limit",
        f"{rc} red car and black car no passing",
        f"{rc} red truck and black car no passing",
        f"{rt} road intersection warning",
        "white and yellow diamond priority road",
        "red and white upside down triangle yield right-of-way",
        "stop",
        "empty red and white circle",
        f"{rc} no truck entry",
        "red circle with white horizonal stripe no entry",
        f"{rt} with exclamation mark warning",
        f"{rt} with black left curve approaching warning",
        f"{rt} with black right curve approaching warning",
        f"{rt} with black double curve approaching warning",
        f"{rt} rough / bumpy road warning",
        f"{rt} car skidding / slipping warning",
        f"{rt} with merging / narrow lanes warning",
        f"{rt} with person digging / construction / road work warning",
        f"{rt} with traffic light approaching warning",
        f"{rt} with person walking warning",
        f"{rt} with child and person walking warning",
        f"{rt} with bicyle warning",
        f"{rt} with snowflake / ice warning",
        f"{rt} with deer warning",
        "white circle with gray strike bar no speed limit",
        f"{bc} right turn arrow mandatory",
        f"{bc} left turn arrow mandatory",
        f"{bc} forward arrow mandatory",
        f"{bc} forward or right turn arrow mandatory",
        f"{bc} forward or left turn arrow mandatory",
        f"{bc} keep right arrow mandatory",
        f"{bc} keep left arrow mandatory",
        f"{bc} arrows indicating a traffic circle",
        "white circle with gray strike bar indicating no passing for cars has ended",
        "white circle with gray strike bar indicating no passing for trucks has ended",
    ])


_GTSRB = _gtsrb_names()


# --------------------------------------------------------------------------------------
# Hub sources
# --------------------------------------------------------------------------------------

IMAGE_COLUMNS = ("image", "img", "jpg", "jpeg", "png", "webp", "pixel_values")
LABEL_COLUMNS = ("label", "labels", "fine_label", "cls", "class", "target")
VAL_SPLITS = ("validation", "valid", "val")

# KnOTS (LoRA) protocol
LORA_VAL_FROM_TEST = frozenset({"Cars", "GTSRB", "MNIST", "SUN397", "SVHN"})
LORA_OWN_VAL = frozenset({"DTD", "EuroSAT", "RESISC45"})
LORA_VAL_FRACTION = 0.2
FULL_VAL_FRACTION = 0.1
FULL_VAL_CAP = 5000


@dataclass(frozen=True)
class HubTask:
    """Where one paper task lives on the Hugging Face hub and how to read it.

    ``classnames`` is None when the label column is a ClassLabel whose names are the
    class names; otherwise it is the explicit list (index = label), which then also
    takes precedence over a ClassLabel with the same number of classes.
    """

    hub_id: str
    config: str | None = None
    train_split: str = "train"
    test_split: str = "test"
    val_split: str | None = None  # the source's own validation split, if it has one
    image_column: str = "image"
    label_column: str = "label"
    classnames: tuple[str, ...] | None = None
    variant: str | None = None
    note: str = ""

    @property
    def classnames_source(self) -> str:
        return "explicit" if self.classnames is not None else "ClassLabel feature"


HUB_TASKS: dict[str, HubTask] = {
    "Cars": HubTask("tanganke/stanford_cars"),
    "DTD": HubTask("tanganke/dtd"),
    "EuroSAT": HubTask("tanganke/eurosat", classnames=_EUROSAT,
                       note="also holds corrupted test splits (contrast, gaussian_noise, ...)"),
    "GTSRB": HubTask("tanganke/gtsrb", classnames=_GTSRB,
                     note="also holds corrupted test splits (contrast, ...)"),
    "MNIST": HubTask("ylecun/mnist", classnames=_DIGITS),
    "RESISC45": HubTask("tanganke/resisc45"),
    "SVHN": HubTask("ufldl-stanford/svhn", config="cropped_digits", classnames=_DIGITS),
    "SUN397": HubTask("tanganke/sun397"),
    "STL10": HubTask("tanganke/stl10", classnames=_STL10),
    "OxfordIIITPet": HubTask("timm/oxford-iiit-pet"),
    "Flowers102": HubTask("dpdl-benchmark/oxford_flowers102", val_split="validation"),
    "CIFAR100": HubTask("tanganke/cifar100"),
    "PCAM": HubTask("1aurent/PatchCamelyon", val_split="valid", classnames=_PCAM,
                    note="label is a bool (True = metastatic tissue)"),
    "FER2013": HubTask("clip-benchmark/wds_fer2013", image_column="jpg", label_column="cls",
                       classnames=_FER, note="webdataset export, the source FusionBench loads"),
    "CIFAR10": HubTask("tanganke/cifar10", classnames=_CIFAR10),
    "Food101": HubTask("ethz/food101", test_split="validation",
                       note="the hub's 'validation' split is the standard Food-101 test set"),
    "FashionMNIST": HubTask("zalando-datasets/fashion_mnist", classnames=_FASHION),
    "RenderedSST2": HubTask("nateraw/rendered-sst2", val_split="validation", classnames=_SST2),
    "EMNIST": HubTask("tanganke/emnist_letters", classnames=_EMNIST_LETTERS, variant="letters",
                      note="FusionBench's EMNIST; the DC-Merge code reads EMNIST digits "
                           "(hub_id: tanganke/emnist_mnist)"),
    "KMNIST": HubTask("tanganke/kmnist", classnames=_KMNIST),
}

# Alternative hub sources for a task, selected by ``hub_id`` in the task config.
HUB_VARIANTS: dict[str, dict[str, HubTask]] = {
    "EMNIST": {
        "tanganke/emnist_letters": HUB_TASKS["EMNIST"],
        "tanganke/emnist_mnist": HubTask("tanganke/emnist_mnist", classnames=_DIGITS,
                                         variant="digits",
                                         note="EMNIST digits, as read by the DC-Merge code"),
    },
}


def canonical_task(task: str) -> str | None:
    """The HUB_TASKS key for ``task`` (exact, else case-insensitive), or None."""
    if task in HUB_TASKS:
        return task
    low = {k.lower(): k for k in HUB_TASKS}
    return low.get(task.lower())


def hub_task(task: str, task_cfg: Mapping[str, Any] | None = None) -> HubTask:
    """The HubTask for ``task``, with the task config's ``hub_id``/``hub_config`` applied."""
    task_cfg = task_cfg or {}
    name = canonical_task(task)
    base = HUB_TASKS.get(name) if name else None
    hub_id = task_cfg.get("hub_id")
    if base is None:
        if not hub_id:
            raise PaperDataError(
                f"task '{task}': no built-in hub source (known: {', '.join(HUB_TASKS)}); "
                "set data.tasks.<task>.hub_id or use source: local with a path")
        return HubTask(hub_id, config=task_cfg.get("hub_config"))
    if hub_id and hub_id != base.hub_id:
        alt = HUB_VARIANTS.get(name, {}).get(hub_id)
        base = alt if alt is not None else replace(base, hub_id=hub_id, classnames=base.classnames,
                                                   variant=None, note="hub_id set in the config")
    if task_cfg.get("hub_config") is not None:
        base = replace(base, config=task_cfg["hub_config"])
    return base


def templates_for(task: str, task_cfg: Mapping[str, Any] | None = None) -> list[str]:
    """The CLIP prompt templates of ``task`` ("{}" = class name).

    Unknown tasks (custom datasets) get the generic 'a photo of a {}.'.
    """
    name = canonical_task(task)
    if name is None:
        return list(GENERIC_TEMPLATES)
    if task_cfg:
        variant = hub_task(name, task_cfg).variant
        if (name, variant) in _VARIANT_TEMPLATES:
            return list(_VARIANT_TEMPLATES[(name, variant)])
    return list(TEMPLATES[name])


# --------------------------------------------------------------------------------------
# Loading the raw source into a DatasetDict
# --------------------------------------------------------------------------------------

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
            + f"python -m mergelab.data.paper download --tasks {task}"
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
    raise PaperDataError(
        f"task '{task}': no dataset found at {path}. Expected one of: a saved DatasetDict "
        "(dataset_dict.json), parquet files per split (train.parquet / train-*.parquet / "
        "train/*.parquet), or an ImageFolder tree (train/<class>/*.png, test/<class>/..., "
        "optional val/<class>/...)")


# --------------------------------------------------------------------------------------
# Column mapping, class names, validation
# --------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------
# Split rules
# --------------------------------------------------------------------------------------

def full_split_indices(n: int, seed: int = 0, fraction: float = FULL_VAL_FRACTION,
                       cap: int = FULL_VAL_CAP) -> tuple[list[int], list[int]]:
    """(train, validation) indices: ``torch.utils.data.random_split`` with lengths
    ``[n - n_val, n_val]``, ``n_val = min(int(n * fraction), cap)``, generator seed ``seed``."""
    import torch

    n_val = min(int(n * fraction), cap)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return perm[: n - n_val], perm[n - n_val:]


def test_split_indices(n: int, seed: int = 0,
                       fraction: float = LORA_VAL_FRACTION) -> tuple[list[int], list[int]]:
    """(validation, test) indices: the first ``int(n * fraction)`` of a seeded permutation
    are validation, the rest test (the KnOTS rule when its index file does not apply)."""
    import torch

    n_val = int(n * fraction)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return perm[:n_val], perm[n_val:]


def split_rule(task: str, protocol: str) -> str:
    name = canonical_task(task) or task
    if protocol == "lora":
        if name in LORA_VAL_FROM_TEST:
            return "lora_test20"
        if name in LORA_OWN_VAL:
            return "own_validation"
    elif protocol != "full":
        raise PaperDataError(f"task '{task}': unknown split_protocol {protocol!r} (full|lora)")
    return "full_train10"


def _lora_validation(task: str, n: int, s_test: str, seed: int,
                     notes: list[str]) -> tuple[list[int], list[int], str]:
    """(validation, test, description) of the LoRA rule: the KnOTS index file when it indexes
    a test split of this size, else a seeded permutation (with a note saying why)."""
    from .knots_index import KNOTS_TEST_SIZES, knots_split

    name = canonical_task(task) or task
    fixed = knots_split(name, n, LORA_VAL_FRACTION)
    if fixed is not None:
        val_idx, test_idx = fixed
        return val_idx, test_idx, (
            f"{LORA_VAL_FRACTION:.0%} of the test split '{s_test}' (first {len(val_idx)} of "
            f"the KnOTS index file knots_splits/{name}.npy); test = the rest")
    if name in KNOTS_TEST_SIZES:
        notes.append(f"test split '{s_test}' has {n} images but the KnOTS index file indexes "
                     f"{KNOTS_TEST_SIZES[name]}: used a permutation seeded {seed} instead")
    val_idx, test_idx = test_split_indices(n, seed)
    return val_idx, test_idx, (f"{LORA_VAL_FRACTION:.0%} of the test split '{s_test}' (first "
                               f"{len(val_idx)} of a permutation seeded {seed}); test = the rest")


# --------------------------------------------------------------------------------------
# prepare_task
# --------------------------------------------------------------------------------------

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

        # --- splits of the source
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
        info["source_splits"] = {"train": s_train, "test": s_test, "validation": s_val,
                                 "all": list(dsd)}

        # --- columns and classes
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

        train_full = standard(s_train)
        test_full = standard(s_test)
        notes = []
        if rule == "lora_test20":
            val_idx, test_idx, vdesc = _lora_validation(task, len(test_full), s_test, seed, notes)
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
        info.update({"validation_rule": vdesc, "split_rule": rule,
                     "sizes": {k: len(v) for k, v in splits.items()}})
        if notes:
            info["notes"] = notes
        out = datasets.DatasetDict(splits)
        out.save_to_disk(str(stage))
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


# --------------------------------------------------------------------------------------
# Command line: list tasks, pre-download hub datasets
# --------------------------------------------------------------------------------------

def _main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mergelab.data.paper",
                                description="paper datasets: list them, pre-download hub copies")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="tasks, hub ids, splits and columns")
    d = sub.add_parser("download", help="download hub datasets into a cache dir (needs internet)")
    d.add_argument("--tasks", nargs="*", default=None, help="default: all paper tasks")
    d.add_argument("--config", help="a paper config: download its tasks into its data.cache_dir")
    d.add_argument("--cache-dir", default=None)
    a = p.parse_args(argv)
    if a.cmd == "list":
        for t, h in HUB_TASKS.items():
            hub_name = h.hub_id + (f" ({h.config})" if h.config else "")
            print(f"{t:14s} {hub_name:44s} "
                  f"train={h.train_split} test={h.test_split} val={h.val_split} "
                  f"cols=({h.image_column},{h.label_column}) classes={h.classnames_source}")
        return 0
    tasks, cache_dir, cfgs = a.tasks, a.cache_dir, {}
    if a.config:
        from ..config import load_config
        cfg = load_config(a.config)
        cfgs = cfg["data"]["tasks"]
        tasks = tasks or [t for t, c in cfgs.items() if c.get("source", "mini") == "hub"]
        cache_dir = cache_dir or cfg["data"].get("cache_dir")
    for t in tasks or list(HUB_TASKS):
        hub = hub_task(t, cfgs.get(t))
        print(f"{t}: {hub.hub_id} {hub.config or ''} -> {cache_dir or 'default HF cache'}",
              flush=True)
        dsd = load_hub(t, hub, cache_dir)
        print(f"  splits: {', '.join(f'{k}={len(v)}' for k, v in dsd.items())}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
