"""Views from above: land use from a satellite (imitates EuroSAT) and aerial scenes
(imitates RESISC45)."""
from __future__ import annotations

import numpy as np

from .primitives import (_b, _bb, _col, _fill, _finish, _frac, _frame, _gray, _grid, _hash, _hsv,
                         _mottle, _noise, _paint, _per_class, _u)


# --- land use from a satellite (imitates EuroSAT) ----------------------------
def _l_crop(rng, m):
    xl, yl = _frame(rng, m, full_rot=True, shift=1.0)
    band = np.floor(xl * _b(_u(rng, 1.2, 2.5, m)) + _b(_u(rng, 0, 50, m)))
    cut = np.floor(yl * _b(_u(rng, 0.5, 1.0, m)) + 5)
    h = _hash(band, cut)[..., None]
    a, b, c = _col((150, 115, 70), m, rng, 0.15), _col((95, 135, 60), m, rng, 0.15), _col((195, 180, 115), m, rng, 0.1)
    img = np.where(h < 0.4, a, np.where(h < 0.75, b, c))
    rows = np.sin(xl * _b(_u(rng, 40, 60, m)))
    return img * (0.9 + 0.08 * rows)[..., None]


def _l_forest(rng, m):
    t = (0.5 * _noise(rng, m, 14) + 0.5 * _noise(rng, m, 28))[..., None]
    return _col((35, 65, 35), m, rng, 0.15) * (0.55 + 0.9 * t)


def _l_herb(rng, m):
    img = _mottle(rng, m, (120, 150, 70), (160, 160, 95), cells=7)
    return img * (0.85 + 0.3 * _noise(rng, m, 16))[..., None]


def _l_highway(rng, m):
    img = _mottle(rng, m, (100, 125, 70), (150, 135, 95), cells=5)
    for p in (1.0, 0.35):
        xl, yl = _frame(rng, m, full_rot=True, shift=0.6)
        road = (np.abs(yl) < _b(_u(rng, 0.05, 0.1, m))) & _bb(rng.random(m) < p)
        img = _paint(img, road, _gray(_u(rng, 0.4, 0.65, m))[:, None, None])
    return img


def _l_industrial(rng, m):
    img = _fill(m, _gray(_u(rng, 0.35, 0.55, m))[:, None, None])
    xl, yl = _frame(rng, m, full_rot=True, shift=1.0)
    fx, fy = _b(_u(rng, 1.2, 2.2, m)), _b(_u(rng, 1.2, 2.2, m))
    u, v = xl * fx, yl * fy
    bld = (_frac(u) < _b(_u(rng, 0.55, 0.85, m))) & (_frac(v) < _b(_u(rng, 0.55, 0.85, m)))
    h = _hash(np.floor(u) + 7, np.floor(v) + 3)
    roof = np.where((h < 0.2)[..., None], _col((90, 120, 160), m), _gray(0.6 + 0.35 * h))
    return np.where(bld[..., None], roof, img)


def _l_pasture(rng, m):
    img = _fill(m, _col((125, 165, 80), m, rng, 0.12))
    return img * (0.92 + 0.16 * _noise(rng, m, 3))[..., None]


def _l_permanent(rng, m):
    img = _mottle(rng, m, (150, 120, 80), (130, 110, 70), cells=4)
    xl, yl = _frame(rng, m, full_rot=True, shift=1.0)
    p = _b(_u(rng, 0.17, 0.25, m))
    du, dv = _frac(xl / p) - 0.5, _frac(yl / p) - 0.5
    trees = du * du + dv * dv < _b(_u(rng, 0.25, 0.38, m)) ** 2
    return _paint(img, trees, _col((55, 95, 40), m, rng, 0.15))


def _l_residential(rng, m):
    xl, yl = _frame(rng, m, full_rot=True, shift=1.0)
    p = _b(_u(rng, 0.28, 0.4, m))
    u, v = xl / p, yl / p
    fu, fv = _frac(u), _frac(v)
    img = _fill(m, _col((95, 130, 70), m, rng, 0.15))
    street = (fu > 0.82) | (fv > 0.82)
    img = _paint(img, street, _gray(_u(rng, 0.45, 0.65, m))[:, None, None])
    house = (fu > 0.12) & (fu < 0.62) & (fv > 0.12) & (fv < 0.6)
    h = _hash(np.floor(u) + 11, np.floor(v) + 2)
    roof = np.where((h < 0.45)[..., None], _col((170, 75, 55), m),
                    np.where((h < 0.75)[..., None], _col((120, 100, 90), m), _gray(0.75)))
    return np.where(house[..., None], roof, img)


def _l_river(rng, m):
    img = _mottle(rng, m, (85, 120, 60), (140, 130, 90), cells=5)
    xl, yl = _frame(rng, m, full_rot=True, shift=0.3)
    centre = _b(_u(rng, 0.1, 0.3, m)) * np.sin(_b(_u(rng, 2, 5, m)) * xl + _b(_u(rng, 0, 6.3, m)))
    water = np.abs(yl - centre) < _b(_u(rng, 0.07, 0.16, m))
    return _paint(img, water, _col((40, 75, 110), m, rng, 0.2))


def _l_sea(rng, m):
    img = _fill(m, _col((35, 70, 115), m, rng, 0.25)) * (0.85 + 0.3 * _noise(rng, m, 3))[..., None]
    xl, yl = _frame(rng, m, full_rot=True)
    shore = (yl > _b(_u(rng, 0.55, 0.95, m)) + 0.08 * np.sin(4 * xl)) & _bb(rng.random(m) < 0.35)
    return _paint(img, shore, _col((130, 140, 90), m, rng, 0.2))


_LANDUSE = ["annual crop land", "forest", "herbaceous vegetation", "highway", "industrial buildings",
            "pasture land", "permanent crop land", "residential buildings", "river", "sea or lake"]
_LANDUSE_FNS = [_l_crop, _l_forest, _l_herb, _l_highway, _l_industrial, _l_pasture, _l_permanent,
                _l_residential, _l_river, _l_sea]


def _r_landuse(rng, labels):
    img = _per_class(rng, labels, _LANDUSE_FNS)
    return _finish(img, rng, noise=(0.01, 0.04), shade=0.15, blur=0.5)


# --- aerial scenes (imitates RESISC45) ------------------------------------------
def _grass(rng, m):
    return _mottle(rng, m, (80, 115, 60), (125, 135, 85), cells=5)


def _a_runway(rng, m):
    img = _grass(rng, m)
    xl, yl = _frame(rng, m, full_rot=True, shift=0.3)
    w = _b(_u(rng, 0.16, 0.26, m))
    img = _paint(img, np.abs(yl) < w, _gray(_u(rng, 0.3, 0.5, m))[:, None, None])
    img = _paint(img, (np.abs(yl) < 0.03) & (_frac(xl * 3) < 0.5), _gray(np.full(m, 0.95))[:, None, None])
    img = _paint(img, np.abs(np.abs(yl) - w + 0.04) < 0.018, _gray(np.full(m, 0.9))[:, None, None])
    return img


def _a_baseball(rng, m):
    img = _grass(rng, m)
    xl, yl = _frame(rng, m, full_rot=True, scale=(0.8, 1.2), shift=0.2)
    dx, dy = xl, yl - 0.6
    r = np.sqrt(dx * dx + dy * dy)
    ang = np.abs(np.arctan2(dx, -dy))
    img = _paint(img, (r < 1.05) & (ang < np.pi / 4 + 0.05), _col((170, 120, 80), m, rng, 0.12))
    diamond = np.abs(xl) + np.abs(yl - 0.15) < 0.33
    img = _paint(img, diamond, _col((70, 130, 60), m, rng, 0.1))
    return img


def _a_beach(rng, m):
    img = _mottle(rng, m, (215, 195, 150), (190, 170, 125), cells=5)
    xl, yl = _frame(rng, m, full_rot=True, shift=0.3)
    edge = _b(_u(rng, 0.08, 0.2, m)) * np.sin(_b(_u(rng, 2, 5, m)) * xl + _b(_u(rng, 0, 6.3, m)))
    img = _paint(img, yl < edge, _col((50, 110, 150), m, rng, 0.2))
    return _paint(img, np.abs(yl - edge) < 0.04, _gray(np.full(m, 0.95))[:, None, None])


def _a_bridge(rng, m):
    img = _fill(m, _col((45, 85, 115), m, rng, 0.2)) * (0.85 + 0.3 * _noise(rng, m, 4))[..., None]
    xl, yl = _frame(rng, m, full_rot=True, shift=0.3)
    w = _b(_u(rng, 0.08, 0.14, m))
    img = _paint(img, np.abs(yl - 0.07) < w, _gray(np.full(m, 0.1))[:, None, None] * 0.5 + img * 0.5)
    img = _paint(img, np.abs(yl) < w, _gray(_u(rng, 0.5, 0.8, m))[:, None, None])
    bank = (np.abs(xl) > _b(_u(rng, 0.6, 0.9, m)))
    return _paint(img, bank, _col((90, 120, 70), m, rng, 0.2))


def _a_circular(rng, m):
    img = _mottle(rng, m, (170, 140, 100), (150, 125, 90), cells=4)
    xx, yy = _grid()
    present = rng.random((m, 4)) < 0.7
    present[np.arange(m), rng.integers(0, 4, m)] = True
    for i, (cx, cy) in enumerate(((-0.5, -0.5), (0.5, -0.5), (-0.5, 0.5), (0.5, 0.5))):
        x0, y0 = cx + _u(rng, -0.15, 0.15, m), cy + _u(rng, -0.15, 0.15, m)
        disc = (xx[None] - _b(x0)) ** 2 + (yy[None] - _b(y0)) ** 2 < _b(_u(rng, 0.3, 0.5, m)) ** 2
        col = _hsv(_u(rng, 0.12, 0.33, m), _u(rng, 0.3, 0.7, m), _u(rng, 0.35, 0.7, m))[:, None, None]
        img = _paint(img, disc & present[:, i, None, None], col)
    return img


def _a_parking(rng, m):
    img = _fill(m, _gray(_u(rng, 0.3, 0.5, m))[:, None, None])
    xl, yl = _frame(rng, m, full_rot=True, shift=1.0)
    u, v = xl / 0.16, yl / 0.42
    fu, fv = _frac(u), _frac(v)
    img = _paint(img, (fu < 0.1) & (fv < 0.9), _gray(np.full(m, 0.85))[:, None, None])
    car = (fu > 0.25) & (fu < 0.85) & (fv > 0.1) & (fv < 0.75)
    h = _hash(np.floor(u) + 1, np.floor(v) + 9, _b(np.arange(m) % 97))
    colour = _hsv(h.reshape(-1), np.full(h.size, 0.6, np.float32),
                  0.3 + 0.7 * _frac(h * 7.3).reshape(-1)).reshape(h.shape + (3,))
    return np.where((car & (_frac(h * 3.1) < 0.75))[..., None], colour, img)


def _a_roundabout(rng, m):
    img = _grass(rng, m)
    xl, yl = _frame(rng, m, full_rot=True, scale=(0.8, 1.2), shift=0.2)
    r = np.sqrt(xl * xl + yl * yl)
    road = _gray(_u(rng, 0.35, 0.6, m))[:, None, None]
    for k in range(4):
        a = k * np.pi / 2
        xr, yr = np.cos(a) * xl + np.sin(a) * yl, -np.sin(a) * xl + np.cos(a) * yl
        img = _paint(img, (np.abs(yr) < 0.08) & (xr > 0) & _bb(rng.random(m) < 0.8), road)
    img = _paint(img, (r > 0.2) & (r < 0.4), road)
    return _paint(img, r < 0.2, _col((70, 130, 60), m, rng, 0.15))


def _a_tanks(rng, m):
    img = _mottle(rng, m, (150, 145, 130), (120, 115, 105), cells=4)
    xx, yy = _grid()
    present = rng.random((m, 6)) < 0.6
    present[np.arange(m), rng.integers(0, 6, m)] = True
    for i in range(6):
        cx, cy = -0.55 + 0.55 * (i % 3), -0.4 + 0.8 * (i // 3)
        x0, y0 = cx + _u(rng, -0.1, 0.1, m), cy + _u(rng, -0.1, 0.1, m)
        rr = _b(_u(rng, 0.14, 0.22, m))
        d2 = (xx[None] - _b(x0)) ** 2 + (yy[None] - _b(y0)) ** 2
        sh = (xx[None] - _b(x0) - 0.06) ** 2 + (yy[None] - _b(y0) - 0.06) ** 2
        p = present[:, i, None, None]
        img = _paint(img, (sh < rr ** 2) & p, _gray(np.full(m, 0.15))[:, None, None])
        img = _paint(img, (d2 < rr ** 2) & p, _gray(_u(rng, 0.8, 0.98, m))[:, None, None])
        img = _paint(img, (np.abs(np.sqrt(d2) - rr * 0.6) < 0.02) & p, _gray(np.full(m, 0.6))[:, None, None])
    return img


def _a_tennis(rng, m):
    img = _mottle(rng, m, (90, 120, 70), (120, 120, 110), cells=4)
    xl, yl = _frame(rng, m, full_rot=True, scale=(0.85, 1.2), shift=0.15)
    court = _hsv(rng.choice(np.array([0.33, 0.58, 0.05], np.float32), m), _u(rng, 0.4, 0.7, m), _u(rng, 0.4, 0.7, m))
    img = _paint(img, (np.abs(xl) < 0.8) & (np.abs(yl) < 0.45), court[:, None, None])
    white = _gray(np.full(m, 0.95))[:, None, None]
    ax, ay = np.abs(xl), np.abs(yl)
    lines = ((np.abs(ax - 0.7) < 0.025) & (ay < 0.38)) | ((np.abs(ay - 0.37) < 0.025) & (ax < 0.7)) \
        | ((ax < 0.02) & (ay < 0.42)) | ((np.abs(ax - 0.38) < 0.02) & (ay < 0.3)) \
        | ((ay < 0.02) & (ax < 0.38)) | ((np.abs(ay - 0.29) < 0.02) & (ax < 0.7))
    return _paint(img, lines, white)


def _a_track(rng, m):
    img = _grass(rng, m)
    xl, yl = _frame(rng, m, full_rot=True, scale=(0.85, 1.15), shift=0.15)
    outer = (xl / 0.9) ** 2 + (yl / 0.6) ** 2
    img = _paint(img, outer < 1, _col((170, 70, 55), m, rng, 0.15))
    img = _paint(img, np.abs(outer - 0.8) < 0.025, _gray(np.full(m, 0.9))[:, None, None])
    return _paint(img, outer < 0.62, _col((80, 140, 65), m, rng, 0.15))


_AERIAL = ["airport runway", "baseball diamond", "beach", "bridge", "circular farmland",
           "parking lot", "roundabout", "storage tanks", "tennis court", "ground track field"]
_AERIAL_FNS = [_a_runway, _a_baseball, _a_beach, _a_bridge, _a_circular, _a_parking, _a_roundabout,
               _a_tanks, _a_tennis, _a_track]


def _r_aerial(rng, labels):
    img = _per_class(rng, labels, _AERIAL_FNS)
    return _finish(img, rng, noise=(0.01, 0.04), shade=0.2, blur=0.5)
