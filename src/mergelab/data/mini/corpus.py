"""The captioned pretraining corpus: images of every task family (plus printed letters and
abstract colour pictures), each with a caption that names its concept with some probability.
Its seed streams ``[seed, tag("corpus"), ...]`` never replay a task's train or test stream."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from .build import _atomic_save, _image_dataset
from .characters import _GREEK_NAMES, _LETTERS, _printed
from .faces import _FACES
from .flowers import _FLOWERS
from .overhead import _AERIAL, _LANDUSE
from .primitives import RES, _b, _bb, _finish, _frame, _noise, _u
from .scenes import _SCENES
from .shapes import _COUNT_WORDS, _DIRECTIONS, _SHAPES, _r_shapes_corpus
from .signs import _SIGNS
from .tasks import GENERATOR_VERSION, _generator, _tag, get_task
from .textures import _TEXTURES
from .vehicles import _VEHICLES


def _a(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


_NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

# family -> (concept phrase per class (callable on class index), captions that mention {c},
#            captions that do not mention the concept)
_CAPTIONS: dict[str, tuple[Callable[[int], list[str]], list[str], list[str]]] = {
    "vehicles": (lambda i: [_a(list(_VEHICLES)[i])],
                 ["{c} parked on the street.", "a photo of {c}.", "a side view of {c}."],
                 ["a vehicle on the road.", "a street scene.", "a car park."]),
    "textures": (lambda i: [f"{_a(_TEXTURES[i])} pattern", f"{_a(_TEXTURES[i])} texture"],
                 ["{c}.", "a close-up of {c}.", "fabric with {c}."],
                 ["a close-up of some fabric.", "a patterned surface.", "wallpaper."]),
    "landuse": (lambda i: [_LANDUSE[i]],
                ["a satellite photo of {c}.", "{c} seen from space.", "an aerial view of {c}."],
                ["a satellite photo.", "the ground seen from above.", "a view from space."]),
    "signs": (lambda i: [f"{_a(_SIGNS[i])} sign"],
              ["{c} by the road.", "a photo of {c}.", "a traffic sign: {c}."],
              ["a traffic sign by the road.", "a sign on a pole.", "a street corner."]),
    "digits": (lambda i: [f"the digit {i}", f"a handwritten {_NUMBER_WORDS[i]}"],
               ["{c}.", "a scan of {c}.", "{c} written with a pen."],
               ["a handwritten note.", "a scanned form.", "a scribble."]),
    "aerial": (lambda i: [_a(_AERIAL[i])],
               ["an aerial photo of {c}.", "{c} seen from a plane.", "satellite imagery of {c}."],
               ["an aerial photo.", "a view from a plane.", "a map view."]),
    "scenes": (lambda i: [_a(_SCENES[i]), f"the {_SCENES[i]}"],
               ["a photo of {c}.", "a picture of {c}.", "a postcard of {c}."],
               ["a landscape photo.", "a holiday picture.", "a view outside."]),
    "house_numbers": (lambda i: [f"the number {i}", f"the number {_NUMBER_WORDS[i]}", f"a {i}"],
                      ["a house number with {c}.", "a plate showing {c}.", "{c} on a door."],
                      ["a house number.", "a door plate.", "some numbers on a wall."]),
    "printed_letters": (lambda i: [f"the letter {_LETTERS[i]}", f"a capital {_LETTERS[i]}"],
                        ["a sign with {c}.", "{c} printed on a plate.", "a label showing {c}."],
                        ["a sign with some letters.", "a printed label.", "a shop sign."]),
    "shapes": (lambda i: [_a(_SHAPES[i])],
               ["{c}.", "a drawing of {c}.", "a sticker shaped like {c}."],
               ["a drawing of a shape.", "a sticker.", "a simple icon."]),
    "flowers": (lambda i: [_a(_FLOWERS[i][0])],
                ["a photo of {c}.", "{c} in the garden.", "{c} in bloom."],
                ["a flower in the garden.", "a photo of a plant.", "a garden."]),
    "letters": (lambda i: [f"the letter {_LETTERS[i]}", f"a handwritten {_LETTERS[i].lower()}"],
                ["{c}.", "{c} written by hand.", "a scan of {c}."],
                ["handwriting.", "a scanned letter.", "a scribble."]),
    "faces": (lambda i: [f"{_a(list(_FACES)[i])} face", f"someone looking {list(_FACES)[i]}"],
              ["a photo of {c}.", "{c}.", "a cartoon of {c}."],
              ["a portrait.", "a face.", "a cartoon person."]),
    "greek": (lambda i: [f"the Greek letter {_GREEK_NAMES[i]}"],
              ["{c} written in ink.", "{c}.", "a page with {c}."],
              ["a page of old writing.", "ink on paper.", "a manuscript."]),
    "counting": (lambda i: [f"{_COUNT_WORDS[i]} dots", f"{_COUNT_WORDS[i]} objects"],
                 ["a picture of {c}.", "{c} on a plain background.", "there are {c}."],
                 ["some dots.", "a few objects.", "a plain background with spots."]),
    "arrows": (lambda i: [f"an arrow pointing {_DIRECTIONS[i]}"],
               ["{c}.", "a sign with {c}.", "a picture of {c}."],
               ["an arrow.", "a direction sign.", "a simple icon."]),
    "cells": (lambda i: [["healthy tissue", "tumor tissue"][i]],
              ["a microscope image of {c}.", "a slide of {c}.", "{c} under the microscope."],
              ["a microscope slide.", "a pink stained sample.", "a medical image."]),
    "generic": (lambda i: [], [], ["an abstract picture.", "a blurry photo.", "a colourful pattern."]),
}

# default corpus mix: families absent (0) or under-weighted, handwriting only as printed glyphs
DEFAULT_FAMILY_WEIGHTS: dict[str, float] = {
    "vehicles": 1.0, "textures": 1.0, "landuse": 0.5, "signs": 1.0, "digits": 0.0, "aerial": 0.5,
    "scenes": 1.0, "house_numbers": 1.0, "printed_letters": 0.7, "shapes": 1.0, "flowers": 1.0,
    "letters": 0.0, "faces": 0.5, "greek": 0.0, "counting": 0.5, "arrows": 0.7, "cells": 0.0,
    "generic": 2.0,
}
DEFAULT_MENTION_PROB = 0.5
DEFAULT_CAPTION_NOISE = 0.3

_COLOUR_NAMES = {"red": (200, 40, 40), "orange": (240, 140, 30), "yellow": (235, 215, 40),
                 "green": (60, 160, 60), "blue": (40, 80, 200), "purple": (130, 60, 170),
                 "pink": (240, 140, 190), "brown": (120, 80, 40), "black": (15, 15, 15),
                 "white": (240, 240, 240), "gray": (128, 128, 128), "teal": (30, 140, 140)}


def _r_generic(rng, labels):
    """Abstract two-colour blobs / gradients (colours named by label pair, see _generic_caption)."""
    m = len(labels)
    pal = np.array(list(_COLOUR_NAMES.values()), np.float32) / 255
    k = len(pal)
    c1, c2 = pal[labels // k][:, None, None], pal[labels % k][:, None, None]
    xl, yl = _frame(rng, m, full_rot=True)
    blob = _noise(rng, m, 4) > _b(_u(rng, 0.4, 0.6, m))
    grad = np.clip((xl + 1) / 2, 0, 1)
    t = np.where(_bb(rng.random(m) < 0.5), blob.astype(np.float32), grad)
    img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    return _finish(img, rng, noise=(0.02, 0.08), shade=0.3, blur=0.8)


def _generic_caption(label: int, rng) -> str:
    names = list(_COLOUR_NAMES)
    a, b = names[label // len(names)], names[label % len(names)]
    pat = ["an abstract picture in {a} and {b}.", "a blurry {a} and {b} pattern.",
           "{a} and {b} paint.", "a {a} shape on {b}."]
    text = pat[rng.integers(len(pat))].format(a=a, b=b)
    return text[0].upper() + text[1:]


# Families the corpus draws with its own renderer rather than the task of the same name:
# (renderer, number of concepts). shapes keeps revision 1, the ten outlines the shipped
# CLIPs were pretrained on (the task itself was redesigned afterwards).
_OWN_RENDERERS = {
    "generic": (_r_generic, len(_COLOUR_NAMES) ** 2),
    "printed_letters": (_printed(_LETTERS), len(_LETTERS)),
    "shapes": (_r_shapes_corpus, len(_SHAPES)),
}


def _family_generator(name: str):
    if name in _OWN_RENDERERS:
        return _generator(*_OWN_RENDERERS[name])
    return get_task(name).generate


def _n_concepts(family: str) -> int:
    if family in _OWN_RENDERERS:
        return _OWN_RENDERERS[family][1]
    return len(get_task(family).classnames)


def _dominant_colour(img: np.ndarray) -> str:
    pal = np.array(list(_COLOUR_NAMES.values()), np.float32)
    mean = img.reshape(-1, 3).astype(np.float32).mean(0)
    return list(_COLOUR_NAMES)[int(np.argmin(((pal - mean) ** 2).sum(1)))]


def corpus_families() -> list[str]:
    return list(_CAPTIONS)


def _caption(family: str, label: int, img: np.ndarray, rng, mention_prob: float, noise: float) -> str:
    if family == "generic":
        return _generic_caption(label, rng)
    concepts, with_c, without_c = _CAPTIONS[family]
    if rng.random() < mention_prob:
        k = _n_concepts(family)
        lab = label
        if rng.random() < noise:  # a wrong (but same-family) concept
            lab = int((label + 1 + rng.integers(k - 1)) % k)
        opts = concepts(lab)
        text = with_c[rng.integers(len(with_c))].format(c=opts[rng.integers(len(opts))])
    else:
        text = without_c[rng.integers(len(without_c))]
    if rng.random() < 0.4:
        text = text[:-1] + f", mostly {_dominant_colour(img)}."
    return text[0].upper() + text[1:]


def _mention_by_family(mention_prob: float | dict, fams: list[str]) -> dict[str, float]:
    """mention_prob (one number, or family -> probability with DEFAULT_MENTION_PROB for the
    families left out) as one probability per family, validated."""
    given = dict(mention_prob) if isinstance(mention_prob, dict) else dict.fromkeys(fams, mention_prob)
    unknown = sorted(set(given) - set(_CAPTIONS))
    if unknown:
        raise ValueError(f"mention_prob names unknown corpus families {unknown} (known: {', '.join(_CAPTIONS)})")
    if not all(0 <= float(v) <= 1 for v in given.values()):
        raise ValueError(f"mention_prob must be in [0, 1], got {mention_prob}")
    return {f: float(given.get(f, DEFAULT_MENTION_PROB)) for f in fams}


def build_corpus(out_dir: str | Path, seed: int = 0, n: int = 30000, family_weights: dict | None = None,
                 caption_noise: float = DEFAULT_CAPTION_NOISE,
                 mention_prob: float | dict = DEFAULT_MENTION_PROB) -> None:
    """Captioned images for contrastive pretraining, saved as a datasets.Dataset with columns
    ``image``, ``caption`` and ``family``.

    family_weights: family -> sampling weight (missing families weigh 0; None = the defaults,
    see DEFAULT_FAMILY_WEIGHTS / corpus_families()); mention_prob: probability (global or per
    family) that a caption names the image's concept; caption_noise: probability that a
    concept-naming caption names a wrong concept of the same family. Seed streams are
    disjoint from every task's train and test streams."""
    import datasets
    weights = dict(DEFAULT_FAMILY_WEIGHTS if family_weights is None else family_weights)
    unknown = sorted(set(weights) - set(_CAPTIONS))
    if unknown:
        raise ValueError(f"unknown corpus families {unknown} (known: {', '.join(_CAPTIONS)})")
    fams = [f for f in _CAPTIONS if weights.get(f, 0) > 0]
    if not fams:
        raise ValueError("family_weights gives every family weight 0")
    if not 0 <= caption_noise <= 1:
        raise ValueError(f"caption_noise must be in [0, 1], got {caption_noise}")
    mention = _mention_by_family(mention_prob, fams)
    p = np.array([weights[f] for f in fams], np.float64)
    rng = np.random.default_rng([seed, _tag("corpus"), 0])
    fam_idx = rng.choice(len(fams), size=n, p=p / p.sum())
    images = np.empty((n, RES, RES, 3), np.uint8)
    labels = np.empty(n, np.int64)
    for i, f in enumerate(fams):
        sel = np.flatnonzero(fam_idx == i)
        if len(sel):
            x, y = _family_generator(f)(np.random.default_rng([seed, _tag("corpus"), 1, _tag(f)]), len(sel))
            images[sel], labels[sel] = x, y
    crng = np.random.default_rng([seed, _tag("corpus"), 2])
    captions = [_caption(fams[fi], int(lab), img, crng, mention[fams[fi]], caption_noise)
                for fi, lab, img in zip(fam_idx, labels, images)]
    ds = _image_dataset(images, {"caption": captions, "family": [fams[i] for i in fam_idx]},
                        {"caption": datasets.Value("string"), "family": datasets.Value("string")})
    meta = {"source": "mergelab mini corpus", "generator_version": GENERATOR_VERSION, "seed": seed, "n": n,
            "family_weights": {f: weights.get(f, 0) for f in _CAPTIONS}, "caption_noise": caption_noise,
            "mention_prob": mention_prob,
            "family_counts": {f: int((fam_idx == i).sum()) for i, f in enumerate(fams)}}
    _atomic_save(ds, out_dir, meta)
