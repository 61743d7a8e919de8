"""Two-colour procedural textures (imitates DTD)."""
from __future__ import annotations

import numpy as np

from .primitives import _SS, RES, _b, _contrast_pair, _finish, _frac, _frame, _noise, _per_class, _u


def _tex_frame(rng, m):
    xl, yl = _frame(rng, m, scale=(0.8, 1.25), shift=1.0, full_rot=True)
    return xl, yl, _b(_u(rng, 9, 15, m))


def _tex(fn):
    def render(rng, m):
        mask = fn(rng, m).astype(np.float32)
        c1, c2 = _contrast_pair(rng, m, 0.3)
        return c1 * (1 - mask[..., None]) + c2 * mask[..., None]
    return render


def _t_banded(rng, m):
    xl, yl, f = _tex_frame(rng, m)
    return np.sin(f * xl) > _b(_u(rng, -0.4, 0.4, m))


def _t_chequered(rng, m):
    xl, yl, f = _tex_frame(rng, m)
    return np.sin(f * xl) * np.sin(f * yl) > 0


def _t_dotted(rng, m):
    xl, yl, f = _tex_frame(rng, m)
    p = 2 * np.pi / f
    v = yl / p
    u = xl / p + 0.5 * (np.floor(v) % 2) * _b(rng.random(m) < 0.5)
    du, dv = _frac(u) - 0.5, _frac(v) - 0.5
    return du * du + dv * dv < _b(_u(rng, 0.18, 0.32, m)) ** 2


def _t_zigzag(rng, m):
    xl, yl, f = _tex_frame(rng, m)
    g = f / (2 * np.pi) * _b(_u(rng, 0.5, 1.0, m))
    y2 = yl + _b(_u(rng, 0.12, 0.25, m)) * 2 * np.abs(_frac(xl * g) - 0.5)
    return np.sin(f * y2) > 0


def _t_grid(rng, m):
    xl, yl, f = _tex_frame(rng, m)
    p = 2 * np.pi / f * 1.3
    w = _b(_u(rng, 0.1, 0.2, m))
    return (_frac(xl / p) < w) | (_frac(yl / p) < w)


def _t_wavy(rng, m):
    xl, yl, f = _tex_frame(rng, m)
    y2 = yl + _b(_u(rng, 0.08, 0.18, m)) * np.sin(_b(_u(rng, 4, 8, m)) * xl + _b(_u(rng, 0, 6.3, m)))
    return np.sin(f * y2) > 0


def _t_swirly(rng, m):
    xl, yl = _frame(rng, m, scale=(0.8, 1.2), shift=0.6, full_rot=True)
    r = np.sqrt(xl * xl + yl * yl)
    th = np.arctan2(yl, xl)
    k = _b(rng.integers(2, 6, m))
    return np.sin(k * th + _b(_u(rng, 8, 14, m)) * r) > 0


def _t_speckled(rng, m):
    dens = _u(rng, 0.06, 0.16, m)
    half = rng.random((m, RES, RES), dtype=np.float32) < _b(dens)
    return half.repeat(_SS, 1).repeat(_SS, 2)


def _t_blotchy(rng, m):
    n = 0.65 * _noise(rng, m, 4) + 0.35 * _noise(rng, m, 9)
    return n > _b(_u(rng, 0.45, 0.58, m))


def _t_honeycomb(rng, m):
    xl, yl, f = _tex_frame(rng, m)
    f = f * 0.8
    s = sum(np.cos(f * (np.cos(a) * xl + np.sin(a) * yl)) for a in (0, 2 * np.pi / 3, 4 * np.pi / 3))
    return s < _b(_u(rng, -0.4, 0.2, m))


_TEXTURES = ["banded", "chequered", "dotted", "zigzagged", "grid", "wavy", "swirly", "speckled",
             "blotchy", "honeycombed"]
_TEXTURE_FNS = [_t_banded, _t_chequered, _t_dotted, _t_zigzag, _t_grid, _t_wavy, _t_swirly,
                _t_speckled, _t_blotchy, _t_honeycomb]


def _r_textures(rng, labels):
    img = _per_class(rng, labels, [_tex(f) for f in _TEXTURE_FNS])
    return _finish(img, rng, noise=(0.02, 0.08), shade=0.3)
