"""Geometric objects: shapes on clutter (generic objects, stands in for CIFAR / STL10),
counting (CLEVR-count style) and arrow directions (orientation)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .glyphs import _arrow_pts, _draw_masks, _ell, _poly, _rect, _regular
from .primitives import (_b, _contrast_pair, _finish, _frame, _grid, _local, _noise, _paint,
                         _rand_col, _u, _warp, _window)


# The pretraining corpus's shapes family keeps all ten outlines (the shipped CLIPs were
# pretrained on it); the shapes task drops hexagon and pentagon, which at 32x32 are
# near-circles, and draws larger shapes (docs/mini_suite.md, "The 16-task ablation's added tasks").
_SHAPES = ["circle", "square", "triangle", "star", "hexagon", "pentagon", "cross", "heart",
           "crescent", "ring"]
_TASK_SHAPES = [n for n in _SHAPES if n not in ("hexagon", "pentagon")]
_TASK_SHAPE_INDEX = np.array([_SHAPES.index(n) for n in _TASK_SHAPES])


@lru_cache(maxsize=1)
def _shape_templates() -> np.ndarray:
    c = 32
    t = np.linspace(0, 2 * np.pi, 80)
    heart = [(c + 1.7 * 16 * np.sin(a) ** 3,
              c - 1.7 * (13 * np.cos(a) - 5 * np.cos(2 * a) - 2 * np.cos(3 * a) - np.cos(4 * a)) - 2)
             for a in t]
    star = []
    for i in range(10):
        r = 29 if i % 2 == 0 else 12
        a = -np.pi / 2 + np.pi * i / 5
        star.append((c + r * np.cos(a), c + 2 + r * np.sin(a)))
    specs = {
        "circle": [_ell(c, c, 26)],
        "square": [_rect(10, 10, 54, 54)],
        "triangle": [_poly(_regular(c, c + 6, 32, 3))],
        "star": [_poly(star)],
        "hexagon": [_poly(_regular(c, c, 28, 6))],
        "pentagon": [_poly(_regular(c, c + 2, 29, 5))],
        "cross": [_rect(24, 6, 40, 58), _rect(6, 24, 58, 40)],
        "heart": [_poly(heart)],
        "crescent": [_ell(c, c, 27), _ell(c + 13, c - 6, 22, fill=0)],
        "ring": [_ell(c, c, 23, width=9)],
    }
    return np.stack([_draw_masks(64, lambda: [specs[n]]) for n in _SHAPES])


@lru_cache(maxsize=1)
def _arrow_templates() -> np.ndarray:
    """Three arrow styles pointing right: solid block, thin with big head, chevron."""
    c = 32
    chevron = [(14, 8), (30, 8), (54, 32), (30, 56), (14, 56), (38, 32)]
    specs = [[_poly(_arrow_pts(c, c, 54, 16, 36, 20))],
             [_poly(_arrow_pts(c, c, 56, 6, 30, 22))],
             [_poly(chevron)]]
    return np.stack([_draw_masks(64, lambda: [s]) for s in specs])


def _shape_scene(rng, template_idx, scale, shift):
    m = len(template_idx)
    xx, yy = _grid()
    fg, bg = _contrast_pair(rng, m, 0.3)
    img = bg * (1 - 0.4 * _noise(rng, m, 4))[..., None] + _rand_col(rng, m) * 0.4 * _noise(rng, m, 4)[..., None]
    for _ in range(5):  # small clutter dots
        x0, y0 = _u(rng, -1, 1, m), _u(rng, -1, 1, m)
        dot = (xx[None] - _b(x0)) ** 2 + (yy[None] - _b(y0)) ** 2 < _b(_u(rng, 0.04, 0.12, m)) ** 2
        img = _paint(img, dot, _rand_col(rng, m))
    xl, yl = _frame(rng, m, full_rot=True, scale=scale, shift=shift)
    return _finish(_paint(img, _warp(_shape_templates(), template_idx, xl, yl)[..., 0], fg), rng,
                   noise=(0.02, 0.06), shade=0.2)


def _r_shapes_corpus(rng, labels):
    """The corpus's shapes family: labels index _SHAPES, 45-80 % scale."""
    return _shape_scene(rng, labels, (0.45, 0.8), 0.25)


def _r_shapes(rng, labels):
    """The shapes task: labels index _TASK_SHAPES, 70-95 % scale."""
    return _shape_scene(rng, _TASK_SHAPE_INDEX[np.asarray(labels)], (0.7, 0.95), 0.15)


# --- counting objects (imitates CLEVR-count style counting) ----------------------------
_COUNT_WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight"]


def _r_counting(rng, labels):
    m = len(labels)
    xx, yy = _grid()
    fg, bg = _contrast_pair(rng, m, 0.3)
    img = bg * (0.8 + 0.4 * _noise(rng, m, 3))[..., None]
    ranks = np.argsort(np.argsort(rng.random((m, 16)), axis=1), axis=1)
    chosen = ranks < (labels + 1)[:, None]
    square = _b(rng.random(m) < 0.4)
    size = _u(rng, 0.08, 0.14, m)
    odd = rng.random((m, 16)) < 0.3
    for i in range(16):
        cx, cy = -0.675 + 0.45 * (i % 4), -0.675 + 0.45 * (i // 4)
        rs, cs, wx, wy = _window(cx, cy, 0.1 + 0.14 * 1.2 + 0.02)
        x0, y0 = cx + _u(rng, -0.1, 0.1, m), cy + _u(rng, -0.1, 0.1, m)
        r = _b(size * _u(rng, 0.8, 1.2, m))
        dx, dy = np.abs(wx[None] - _b(x0)), np.abs(wy[None] - _b(y0))
        shape = np.where(square > 0, np.maximum(dx, dy) < r * 0.9, dx * dx + dy * dy < r * r)
        col = np.where(odd[:, i, None, None, None], _rand_col(rng, m), fg)
        img[:, rs, cs] = _paint(img[:, rs, cs], shape & chosen[:, i, None, None], col)
    return _finish(img, rng, noise=(0.02, 0.06), shade=0.2)


# --- arrow directions (orientation) --------------------------------------------------
_DIRECTIONS = ["right", "up and to the right", "up", "up and to the left", "left",
               "down and to the left", "down", "down and to the right"]


def _r_arrows(rng, labels):
    m = len(labels)
    xx, yy = _grid()
    fg, bg = _contrast_pair(rng, m, 0.3)
    img = bg * (0.8 + 0.4 * _noise(rng, m, 4))[..., None]
    xl, yl = _frame(rng, m, full_rot=True, shift=0.5)
    img = _paint(img, (np.abs(yl) < 0.025) * _b(rng.random(m) < 0.5), _rand_col(rng, m))
    rot = -labels.astype(np.float32) * np.pi / 4 + _u(rng, -0.17, 0.17, m)
    sc = _u(rng, 0.45, 0.75, m)
    xl, yl = _local(_u(rng, -0.2, 0.2, m), _u(rng, -0.2, 0.2, m), rot, sc, sc * _u(rng, 0.8, 1.2, m))
    arrow = _warp(_arrow_templates(), rng.integers(0, 3, m), xl, yl)[..., 0]
    return _finish(_paint(img, arrow, fg), rng, noise=(0.02, 0.06), shade=0.2)
