"""The paper dataset table: each task's hub source, split and column names, class names
and CLIP prompt templates."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping


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
