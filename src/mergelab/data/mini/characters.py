"""Characters: handwritten digits (imitates MNIST), letters (EMNIST letters), Greek letters
in ink (KMNIST) and printed house numbers (SVHN)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .glyphs import _GLYPH_FONTS, _glyphs, _sk_digits
from .primitives import _b, _col, _contrast_pair, _finish, _gray, _local, _noise, _paint, _u, _warp


# --- handwritten digits (imitates MNIST) ----------------------------------------
@lru_cache(maxsize=1)
def _digit_pools():
    imgs, tgt = _sk_digits()
    return imgs, [np.flatnonzero(tgt == d) for d in range(10)]


def _r_digits(rng, labels):
    m = len(labels)
    imgs, pools = _digit_pools()
    idx = np.array([pools[c][j % len(pools[c])] for c, j in zip(labels, rng.integers(0, 10**6, m))])
    sc = _u(rng, 0.62, 0.85, m)
    xl, yl = _local(_u(rng, -0.12, 0.12, m), _u(rng, -0.12, 0.12, m), _u(rng, -0.3, 0.3, m),
                    sc * _u(rng, 0.85, 1.15, m), sc)
    xl = xl + _b(_u(rng, -0.25, 0.25, m)) * yl  # shear (slant)
    v = _warp(imgs, idx, xl, yl)[..., 0]
    v = np.clip(v * _b(_u(rng, 1.2, 1.8, m)), 0, 1) ** 0.8
    img = _gray(v * _b(_u(rng, 0.75, 1.0, m)))
    return _finish(img, rng, noise=(0.02, 0.08), blur=0.5)


# --- handwritten-style letters (imitates EMNIST letters: upper and lower case merged) ----
_LETTERS = "ABCDEFGHIJ"


def _r_letters(rng, labels):
    m = len(labels)
    tpl = _glyphs(_LETTERS + _LETTERS.lower())
    nf = len(_GLYPH_FONTS)
    case = rng.integers(0, 2, m)
    idx = (case * 10 + labels) * nf + rng.integers(0, nf, m)
    sc = _u(rng, 0.55, 0.8, m)
    xl, yl = _local(_u(rng, -0.12, 0.12, m), _u(rng, -0.12, 0.12, m), _u(rng, -0.3, 0.3, m),
                    sc * _u(rng, 0.85, 1.15, m), sc)
    xl = xl + _b(_u(rng, -0.3, 0.3, m)) * yl
    v = _warp(tpl, idx, xl, yl)[..., 0]
    thr = _b(_u(rng, 0.15, 0.55, m))
    v = np.clip((v - thr) / 0.25 + 0.5, 0, 1)
    return _finish(_gray(v), rng, noise=(0.02, 0.06), blur=0.8)


# --- Greek letters in ink on paper (an unfamiliar script; imitates KMNIST) -----------
_GREEK = "αβγδεζηθλπ"
_GREEK_NAMES = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "lambda", "pi"]


def _r_greek(rng, labels):
    m = len(labels)
    tpl = _glyphs(_GREEK)
    nf = len(_GLYPH_FONTS)
    idx = labels * nf + rng.integers(0, nf, m)
    paper = _col((235, 225, 200), m, rng, 0.08) * (0.9 + 0.1 * _noise(rng, m, 12))[..., None]
    sc = _u(rng, 0.5, 0.8, m)
    xl, yl = _local(_u(rng, -0.15, 0.15, m), _u(rng, -0.15, 0.15, m), _u(rng, -0.3, 0.3, m),
                    sc * _u(rng, 0.85, 1.15, m), sc)
    ink = _warp(tpl, idx, xl, yl)[..., 0] * _b(_u(rng, 0.7, 1.0, m))
    img = _paint(paper, ink, _col((25, 30, 70), m, rng, 0.3))
    return _finish(img, rng, noise=(0.01, 0.05), blur=0.5)


def _printed(chars: str):
    """Printed glyphs on a coloured plate with neighbouring glyphs (SVHN style)."""
    def render(rng, labels):
        m = len(labels)
        tpl = _glyphs(chars)
        nf = len(_GLYPH_FONTS)
        font = rng.integers(0, nf, m)
        fg, bg = _contrast_pair(rng, m, 0.28)
        img = bg * (0.8 + 0.4 * _noise(rng, m, 3))[..., None]
        sc = _u(rng, 0.5, 0.78, m)
        rot = _u(rng, -0.15, 0.15, m)
        asp = _u(rng, 0.8, 1.15, m)
        tx, ty = _u(rng, -0.08, 0.08, m), _u(rng, -0.1, 0.1, m)
        spacing = sc * _u(rng, 0.95, 1.2, m)
        for off in (-1, 1, 0):
            lab = labels if off == 0 else rng.integers(0, len(chars), m)
            present = np.ones(m, bool) if off == 0 else rng.random(m) < 0.7
            xl, yl = _local(tx + off * spacing * np.cos(rot), ty + off * spacing * np.sin(rot), rot,
                            sc * asp, sc)
            img = _paint(img, _warp(tpl, lab * nf + font, xl, yl)[..., 0] * _b(present), fg)
        return _finish(img, rng, noise=(0.02, 0.07), shade=0.3, blur=0.6)
    return render


_r_house_numbers = _printed("0123456789")  # the SVHN-style task
