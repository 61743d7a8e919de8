"""Vehicles (imitates Stanford Cars): side views of ten road-vehicle body types."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .glyphs import _draw_masks, _ell, _poly
from .primitives import _b, _finish, _grid, _hsv, _gray, _local, _noise, _paint, _rand_col, _u, _warp


# vehicles: channels body, windows, wheels; drawn facing right on a 64x64 canvas
def _wheels(*centres, r=5):
    return [_ell(x, y, r) for x, y in centres]


_VEHICLES = {
    "sedan": ([(6, 44), (6, 35), (16, 33), (24, 25), (42, 25), (50, 33), (58, 35), (58, 44)],
              [(18, 33), (25, 27), (41, 27), (47, 33)], ((17, 44), (47, 44)), 5),
    "hatchback": ([(8, 44), (8, 26), (14, 22), (36, 22), (48, 32), (56, 34), (56, 44)],
                  [(10, 30), (14, 24), (35, 24), (44, 31)], ((18, 44), (46, 44)), 5),
    "sports car": ([(3, 44), (3, 38), (22, 35), (30, 30), (40, 30), (50, 36), (61, 38), (61, 44)],
                   [(28, 35), (32, 32), (39, 32), (45, 35)], ((14, 44), (51, 44)), 5),
    "convertible": ([(6, 44), (6, 35), (58, 35), (58, 44)],
                    [(36, 35), (41, 27), (43, 27), (40, 35)], ((17, 44), (47, 44)), 5),
    "SUV": ([(6, 46), (6, 21), (44, 21), (52, 31), (58, 33), (58, 46)],
            [(10, 30), (10, 24), (42, 24), (48, 31)], ((18, 46), (46, 46)), 6),
    "pickup truck": ([(3, 44), (3, 33), (34, 33), (34, 21), (46, 21), (54, 31), (61, 33), (61, 44)],
                     [(37, 23), (45, 23), (51, 31), (37, 31)], ((14, 44), (49, 44)), 5),
    "van": ([(6, 46), (6, 15), (46, 15), (56, 30), (58, 46)],
            [(46, 18), (54, 30), (44, 30), (44, 18)], ((16, 46), (46, 46)), 5),
    "bus": ([(2, 47), (2, 13), (62, 13), (62, 47)],
            [(5, 17), (59, 17), (59, 27), (5, 27)], ((13, 47), (50, 47)), 5),
    "box truck": ([(2, 47), (2, 11), (40, 11), (40, 47), (42, 47), (42, 24), (54, 24), (62, 34), (62, 47)],
                  [(45, 26), (53, 26), (59, 34), (45, 34)], ((11, 47), (28, 47), (52, 47)), 5),
    "limousine": ([(1, 42), (1, 35), (10, 33), (16, 27), (48, 27), (54, 33), (63, 35), (63, 42)],
                  [(18, 33), (18, 29), (46, 29), (50, 33)], ((10, 42), (54, 42)), 4),
}


@lru_cache(maxsize=1)
def _vehicle_templates() -> np.ndarray:
    out = []
    for body, win, wheels, r in _VEHICLES.values():
        out.append(_draw_masks(64, lambda: [[_poly(body)], [_poly(win)], _wheels(*wheels, r=r)]))
    return np.stack(out)


def _r_vehicles(rng, labels):
    m = len(labels)
    xx, yy = _grid()
    ty = _u(rng, -0.15, 0.15, m)
    hz = ty + _u(rng, 0.0, 0.35, m)
    sky = _hsv(_u(rng, 0.5, 0.68, m), _u(rng, 0.0, 0.6, m), _u(rng, 0.45, 1.0, m))[:, None, None]
    ground = _hsv(_u(rng, 0, 1, m), _u(rng, 0, 0.35, m), _u(rng, 0.15, 0.6, m))[:, None, None]
    t = (yy[None] > _b(hz)).astype(np.float32)[..., None]
    img = sky * (1 - t) + ground * t
    img = img * (0.8 + 0.4 * _noise(rng, m, 5))[..., None]
    for _ in range(3):  # background clutter: buildings / trees behind the vehicle
        x0, w, h = _u(rng, -1, 1, m), _u(rng, 0.1, 0.45, m), _u(rng, 0.1, 0.8, m)
        box = (np.abs(xx[None] - _b(x0)) < _b(w)) & (yy[None] < _b(hz)) & (yy[None] > _b(hz - h))
        img = _paint(img, box * _b(rng.random(m) < 0.6), _rand_col(rng, m) * 0.85)
    flip = np.where(rng.random(m) < 0.5, -1.0, 1.0).astype(np.float32)
    sc = _u(rng, 0.78, 1.05, m)
    xl, yl = _local(_u(rng, -0.15, 0.15, m), ty, _u(rng, -0.1, 0.1, m), sc * flip,
                    sc * _u(rng, 0.88, 1.12, m))
    w = _warp(_vehicle_templates(), labels, xl, yl)
    img = _paint(img, w[..., 0], _rand_col(rng, m))
    img = _paint(img, w[..., 1], _hsv(_u(rng, 0.5, 0.65, m), _u(rng, 0, 0.5, m), _u(rng, 0.1, 0.6, m))[:, None, None])
    img = _paint(img, w[..., 2], _gray(_u(rng, 0.02, 0.2, m))[:, None, None])
    return _finish(img, rng, noise=(0.02, 0.06), shade=0.15)
