"""H&E-like tissue patches, healthy or tumour (imitates PatchCamelyon; binary)."""
from __future__ import annotations

import numpy as np

from .primitives import _b, _finish, _grid, _hsv, _noise, _paint, _u, _window


def _r_cells(rng, labels):
    m = len(labels)
    xx, yy = _grid()
    tum = labels == 1
    stain = _u(rng, -0.04, 0.04, m)
    bgc = _hsv(0.93 + stain, _u(rng, 0.15, 0.35, m), _u(rng, 0.75, 0.92, m))[:, None, None]
    img = bgc * (0.85 + 0.25 * _noise(rng, m, 10))[..., None]
    img = _paint(img, (_noise(rng, m, 6) > 0.6) * 0.5, _hsv(0.95 + stain, _u(rng, 0.3, 0.5, m), _u(rng, 0.6, 0.8, m))[:, None, None])
    p = np.where(tum, _u(rng, 0.4, 0.85, m), _u(rng, 0.2, 0.55, m))
    rad = np.where(tum, _u(rng, 0.08, 0.13, m), _u(rng, 0.06, 0.1, m))
    ecc = np.where(tum, _u(rng, 1.0, 1.8, m), _u(rng, 1.0, 1.35, m))
    nv = np.where(tum, _u(rng, 0.2, 0.45, m), _u(rng, 0.35, 0.6, m))
    present = rng.random((m, 36)) < p[:, None]
    for i in range(36):
        cx, cy = -0.833 + (i % 6) / 3, -0.833 + (i // 6) / 3
        rs, cs, wx, wy = _window(cx, cy, 0.12 + 0.13 * 1.2 * 1.8 + 0.02)
        x0, y0 = _b(cx + _u(rng, -0.12, 0.12, m)), _b(cy + _u(rng, -0.12, 0.12, m))
        a = _b(_u(rng, 0, np.pi, m))
        r = _b(rad * _u(rng, 0.8, 1.2, m))
        dx, dy = wx[None] - x0, wy[None] - y0
        u, v = np.cos(a) * dx + np.sin(a) * dy, -np.sin(a) * dx + np.cos(a) * dy
        nuc = (u / (r * _b(ecc))) ** 2 + (v / r) ** 2 < 1
        col = _hsv(0.75 + stain, _u(rng, 0.35, 0.6, m), nv * _u(rng, 0.85, 1.15, m))[:, None, None]
        img[:, rs, cs] = _paint(img[:, rs, cs], nuc & present[:, i, None, None], col)
    return _finish(img, rng, noise=(0.02, 0.05), blur=0.5)
