"""Procedural flowers over foliage (imitates Flowers102)."""
from __future__ import annotations

import numpy as np

from .primitives import _N, _b, _finish, _frame, _hsv, _mottle, _noise, _paint, _u


#          name, petals k, petal hue, sat, val, centre rgb, centre r, depth a, sharpness p
_FLOWERS = [("daisy", 16, 0.15, 0.05, 0.95, (230, 190, 30), 0.25, 0.25, 0.6),
            ("sunflower", 20, 0.13, 0.9, 0.95, (90, 55, 25), 0.45, 0.5, 0.8),
            ("buttercup", 5, 0.15, 0.95, 0.95, (190, 200, 60), 0.15, 0.55, 1.5),
            ("poppy", 4, 0.0, 0.9, 0.85, (20, 15, 15), 0.15, 0.6, 2.0),
            ("periwinkle", 5, 0.7, 0.5, 0.85, (240, 240, 240), 0.1, 0.35, 1.0),
            ("lotus", 8, 0.93, 0.45, 0.95, (235, 200, 60), 0.18, 0.15, 0.4),
            ("cornflower", 9, 0.62, 0.85, 0.8, (60, 30, 90), 0.2, 0.45, 0.3),
            ("marigold", 14, 0.08, 0.9, 0.95, (200, 90, 10), 0.15, 0.7, 1.0),
            ("rose", 5, 0.98, 0.8, 0.75, (0, 0, 0), 0.0, 0.88, 1.0),
            ("dandelion", 36, 0.14, 0.95, 0.95, (0, 0, 0), 0.0, 0.75, 1.0)]


def _r_flowers(rng, labels):
    m = len(labels)
    P = {k: np.array([f[i] for f in _FLOWERS], np.float32) for i, k in enumerate(
        ["name", "k", "h", "s", "v", "c", "cr", "a", "p"]) if k not in ("name", "c")}
    ctr = np.array([f[5] for f in _FLOWERS], np.float32)[labels] / 255.0
    img = _mottle(rng, m, (30, 70, 30), (100, 140, 60), cells=6, jitter=0.2)
    xl, yl = _frame(rng, m, full_rot=True, scale=(0.55, 0.9), shift=0.25)
    r = np.sqrt(xl * xl + yl * yl)
    th = np.arctan2(yl, xl)
    k, a, p = _b(P["k"][labels]), _b(P["a"][labels]), _b(P["p"][labels])
    R = a + (1 - a) * np.abs(np.cos(k * th / 2)) ** p
    col = _hsv(P["h"][labels] + rng.normal(0, 0.025, m), np.clip(P["s"][labels] + rng.normal(0, 0.08, m), 0, 1),
               np.clip(P["v"][labels] + rng.normal(0, 0.08, m), 0, 1))[:, None, None]
    petal = col * (0.7 + 0.35 * np.clip(r / R, 0, 1))[..., None]
    rose = _b(labels == 8)
    petal = np.where((rose * (np.sin(3 * th + 22 * r) > 0.55))[..., None] > 0, petal * 0.6, petal)
    dand = _b(labels == 9)
    petal = petal * (1 - 0.3 * dand * rng.random((m, _N, _N), dtype=np.float32))[..., None]
    img = np.where((r < R)[..., None], petal, img)
    mari = _b(labels == 7) * (r < 0.6 * (0.7 + 0.3 * np.abs(np.cos(k * th / 2 + 0.5))))
    img = _paint(img, mari, col * 0.7)
    cr = _b(P["cr"][labels] * _u(rng, 0.85, 1.15, m))
    img = _paint(img, r < cr, ctr[:, None, None] * (0.8 + 0.4 * _noise(rng, m, 12))[..., None])
    return _finish(img, rng, noise=(0.02, 0.05), shade=0.2, blur=0.4)
