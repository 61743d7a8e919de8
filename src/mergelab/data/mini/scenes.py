"""Upright landscape / scene layouts around a horizon (imitates SUN397)."""
from __future__ import annotations

import numpy as np

from .primitives import (_SS, RES, _b, _bb, _col, _finish, _frac, _gray, _hash, _hsv, _local,
                         _noise, _paint, _per_class, _rand_col, _u)


def _scene_frame(rng, m):
    z = np.zeros(m, np.float32)
    xl, yl = _local(_u(rng, -0.5, 0.5, m), z, _u(rng, -0.15, 0.15, m), _u(rng, 0.75, 1.3, m))
    return xl, yl, _b(_u(rng, -0.45, 0.45, m))


def _sky(rng, m, yl, top, bottom, jit=0.25):
    t = np.clip((yl + 1) / 2, 0, 1)[..., None]
    return _col(top, m, rng, jit) * (1 - t) + _col(bottom, m, rng, jit) * t


def _tri(x):
    return 1 - 2 * np.abs(_frac(x) - 0.5)


def _s_desert(rng, m):
    xl, yl, h = _scene_frame(rng, m)
    img = _sky(rng, m, yl, (80, 140, 210), (200, 220, 235))
    ph, g = _b(_u(rng, 0, 6.3, m)), _b(_u(rng, 1.5, 4, m))
    dune = h + _b(_u(rng, 0.04, 0.15, m)) * np.sin(g * xl + ph)
    sand = _col((215, 180, 120), m, rng, 0.1) * (0.85 + 0.2 * np.sin(g * xl + ph + 1.2 + 6 * yl))[..., None]
    return np.where((yl > dune)[..., None], sand, img)


def _s_mountains(rng, m):
    xl, yl, h = _scene_frame(rng, m)
    img = _sky(rng, m, yl, (70, 120, 200), (180, 205, 230))
    hh = _b(_u(rng, 0.5, 0.9, m))
    prof = 0.65 * _tri(xl * _b(_u(rng, 0.5, 1.0, m)) + _b(_u(rng, 0, 1, m))) \
        + 0.35 * _tri(xl * _b(_u(rng, 1.5, 3, m)) + _b(_u(rng, 0, 1, m)))
    top = h - hh * prof
    mount = yl > top
    img = _paint(img, mount, _col((110, 100, 95), m, rng, 0.15))
    img = _paint(img, mount & (yl < top + 0.12) & (prof > 0.55), _gray(np.full(m, 0.95))[:, None, None])
    return _paint(img, yl > h + 0.3, _col((80, 120, 60), m, rng, 0.15))


def _s_city(rng, m):
    xl, yl, h = _scene_frame(rng, m)
    dusk = (rng.random(m) < 0.4)[:, None, None, None]
    img = np.where(dusk, _sky(rng, m, yl, (60, 50, 110), (240, 150, 90)), _sky(rng, m, yl, (90, 150, 220), (200, 220, 240)))
    nb = _b(rng.integers(5, 10, m))
    band = np.floor((xl + 1) * nb / 2)
    hh = _hash(band, _b(np.arange(m) % 113))
    top = h + 0.2 - (0.25 + 0.75 * hh) * 0.9
    bld = yl > top
    img = np.where(bld[..., None], _gray(0.15 + 0.3 * _frac(hh * 5.7)), img)
    win = bld & (_frac(xl * 12) < 0.5) & (_frac(yl * 12) < 0.5) & (_hash(np.floor(xl * 12), np.floor(yl * 12)) > 0.45)
    img = _paint(img, win, _col((230, 210, 120), m, rng, 0.1))
    return _paint(img, yl > h + 0.45, _gray(_u(rng, 0.1, 0.3, m))[:, None, None])


def _s_ocean(rng, m):
    xl, yl, h = _scene_frame(rng, m)
    img = _sky(rng, m, yl, (80, 140, 215), (200, 220, 240))
    waves = 0.88 + 0.15 * np.sin(yl * 45 + 3 * _noise(rng, m, 6))
    sea = _col((30, 85, 145), m, rng, 0.15) * waves[..., None]
    return np.where((yl > h)[..., None], sea, img)


def _s_snow(rng, m):
    xl, yl, h = _scene_frame(rng, m)
    img = _sky(rng, m, yl, (160, 175, 195), (215, 220, 230), jit=0.08)
    snow = _col((235, 240, 248), m, rng, 0.05) * (0.88 + 0.12 * _noise(rng, m, 4))[..., None]
    img = np.where((yl > h + 0.05 * np.sin(3 * xl))[..., None], snow, img)
    rocks = (_noise(rng, m, 7) > 0.78) & (yl > h + 0.1)
    return _paint(img, rocks, _gray(_u(rng, 0.1, 0.35, m))[:, None, None])


def _s_forest(rng, m):
    xl, yl, _ = _scene_frame(rng, m)
    img = _sky(rng, m, yl, (120, 160, 200), (200, 215, 225))
    img = _paint(img, yl > 0.6, _col((60, 50, 35), m, rng, 0.2))
    for i in range(7):
        cx = _b(-1 + (i + _u(rng, 0.2, 0.8, m)) * 2 / 7)
        top = _b(_u(rng, -0.95, -0.3, m))
        base = _b(_u(rng, 0.5, 0.8, m))
        tree = (np.abs(xl - cx) < (yl - top) * 0.42) & (yl < base)
        img = _paint(img, (np.abs(xl - cx) < 0.04) & (yl >= base), _col((80, 55, 35), m, rng, 0.2))
        img = _paint(img, tree, _col((30, 75, 40), m, rng, 0.25))
    return img


def _s_sunset(rng, m):
    xl, yl, h = _scene_frame(rng, m)
    img = _sky(rng, m, yl, (80, 50, 110), (250, 140, 60))
    sx, sr = _b(_u(rng, -0.6, 0.6, m)), _b(_u(rng, 0.12, 0.25, m))
    img = _paint(img, (xl - sx) ** 2 + (yl - h + 0.08) ** 2 < sr ** 2, _col((255, 220, 120), m, rng, 0.08))
    return _paint(img, yl > h + 0.03 * np.sin(5 * xl), _col((35, 22, 35), m, rng, 0.3))


def _s_night(rng, m):
    xl, yl, h = _scene_frame(rng, m)
    img = _sky(rng, m, yl, (5, 10, 30), (25, 35, 70), jit=0.2)
    stars = (rng.random((m, RES, RES), dtype=np.float32) < 0.03).repeat(_SS, 1).repeat(_SS, 2)
    img = _paint(img, stars * (0.5 + 0.5 * _noise(rng, m, 3)), _gray(np.full(m, 0.95))[:, None, None])
    mx, my = _b(_u(rng, -0.7, 0.7, m)), _b(_u(rng, -0.8, -0.3, m))
    moon = ((xl - mx) ** 2 + (yl - my) ** 2 < 0.02) & _bb(rng.random(m) < 0.6)
    img = _paint(img, moon, _col((240, 235, 200), m))
    return _paint(img, yl > h + 0.3 + 0.08 * _tri(xl * 2.3), _gray(np.full(m, 0.03))[:, None, None])


def _s_meadow(rng, m):
    xl, yl, h = _scene_frame(rng, m)
    img = _sky(rng, m, yl, (70, 130, 215), (170, 205, 240))
    img = _paint(img, (_noise(rng, m, 5) > 0.62) & (yl < h), _gray(np.full(m, 0.97))[:, None, None])
    img = _paint(img, yl > h, _col((90, 150, 60), m, rng, 0.15))
    fl = (rng.random((m, RES, RES), dtype=np.float32) < 0.12).repeat(_SS, 1).repeat(_SS, 2) & (yl > h + 0.05)
    fc = _hsv(rng.choice(np.array([0.0, 0.14, 0.8, 0.6], np.float32), m), _u(rng, 0, 0.9, m), np.ones(m, np.float32))
    return _paint(img, fl, fc[:, None, None])


def _s_cave(rng, m):
    xl, yl, _ = _scene_frame(rng, m)
    rock = _col((70, 55, 45), m, rng, 0.3) * (0.4 + 0.9 * _noise(rng, m, 9))[..., None]
    ox, oy = _b(_u(rng, -0.35, 0.35, m)), _b(_u(rng, -0.2, 0.3, m))
    rx, ry = _b(_u(rng, 0.2, 0.45, m)), _b(_u(rng, 0.3, 0.6, m))
    d = ((xl - ox) / rx) ** 2 + ((yl - oy) / ry) ** 2
    light = _sky(rng, m, yl, (190, 220, 240), (240, 240, 230))
    img = np.where((d < 1)[..., None], light, rock)
    return img * (0.5 + 0.5 * np.clip(1.6 - 0.5 * d, 0, 1))[..., None]


_SCENES = ["desert", "mountains", "city skyline", "ocean", "snowfield", "forest", "sunset",
           "night sky", "meadow", "cave"]
_SCENE_FNS = [_s_desert, _s_mountains, _s_city, _s_ocean, _s_snow, _s_forest, _s_sunset, _s_night,
              _s_meadow, _s_cave]


def _r_scenes(rng, labels):
    m = len(labels)
    img = _per_class(rng, labels, _SCENE_FNS)
    # camera / weather variation: exposure and a colour cast, so global colour is not enough
    amt = _u(rng, 0.0, 0.4, m)[:, None, None, None]
    img = (img * (1 - amt) + _rand_col(rng, m) * amt) * _u(rng, 0.55, 1.25, m)[:, None, None, None]
    return _finish(img, rng, noise=(0.01, 0.05), shade=0.3, blur=0.5)
