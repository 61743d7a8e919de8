"""Greyscale cartoon faces with seven expressions (imitates FER2013)."""
from __future__ import annotations

import numpy as np

from .primitives import _b, _bb, _fill, _finish, _frame, _gray, _noise, _paint, _u


#   mouth curve, mouth tilt, mouth open, mouth width, eye open, brow tilt, brow raise
_FACES = {"angry": (0.15, 0.0, 0.0, 0.28, 0.6, 0.55, 0.06),
          "disgusted": (0.4, 0.25, 0.0, 0.24, 0.55, -0.25, 0.0),
          "fearful": (0.0, 0.0, 0.07, 0.3, 1.35, -0.5, -0.1),
          "happy": (-0.9, 0.0, 0.0, 0.32, 0.9, 0.0, 0.0),
          "sad": (0.8, 0.0, 0.0, 0.24, 0.8, -0.5, -0.02),
          "surprised": (0.0, 0.0, 0.17, 0.14, 1.4, 0.0, -0.14),
          "neutral": (0.0, 0.0, 0.0, 0.26, 1.0, 0.0, 0.0)}


def _r_faces(rng, labels):
    m = len(labels)
    tab = np.array(list(_FACES.values()), np.float32)[labels]
    jit = np.array([0.2, 0.08, 0.025, 0.04, 0.15, 0.15, 0.03], np.float32)
    tab = tab + rng.normal(0, 1, tab.shape).astype(np.float32) * jit
    curve, tilt, opn, wid, eye, btilt, braise = (_b(tab[:, i]) for i in range(7))
    opn = np.maximum(opn, 0)
    xl, yl = _frame(rng, m, rot=(-0.2, 0.2), scale=(0.78, 1.0), shift=0.1)
    bgv, facev = _u(rng, 0.05, 0.95, m), _u(rng, 0.4, 0.9, m)
    img = _fill(m, _gray(bgv)[:, None, None]) * (0.85 + 0.3 * _noise(rng, m, 3))[..., None]
    hair = ((xl / 0.86) ** 2 + ((yl + 0.08) / 1.0) ** 2 < 1) & _bb(rng.random(m) < 0.7)
    img = _paint(img, hair, _gray(_u(rng, 0.03, 0.4, m))[:, None, None])
    face = ((xl / 0.75) ** 2 + (yl / 0.92) ** 2 < 1) & (yl > _b(_u(rng, -0.9, -0.5, m)))
    img = _paint(img, face, _gray(facev)[:, None, None])
    dark = _gray(facev * _u(rng, 0.0, 0.3, m))[:, None, None]
    feat = np.zeros_like(xl, dtype=bool)
    for s in (-1, 1):
        feat |= ((xl - s * 0.3) / 0.11) ** 2 + ((yl + 0.12) / (0.075 * eye)) ** 2 < 1
        q = (xl - s * 0.3) * s
        brow_y = -0.33 + braise - btilt * q * (1.0 + 0.3 * s * (tilt > 0.1))
        feat |= (np.abs(q) < 0.15) & (np.abs(yl - brow_y) < 0.035)
    mouth_y = 0.45 + curve * (xl * xl - wid * wid / 3) + tilt * xl
    feat |= (np.abs(xl) < wid) & (np.abs(yl - mouth_y) < 0.035)
    feat |= (opn > 0.01) & ((xl / wid) ** 2 + ((yl - 0.45) / np.maximum(opn, 1e-3)) ** 2 < 1)
    img = _paint(img, feat & face, dark)
    return _finish(img, rng, noise=(0.02, 0.06), shade=0.25, blur=0.5)
