"""Vectorised drawing primitives of the mini suite: per-pixel coordinate frames, value
noise, colours, compositing, template warping and the final pooling / noise / blur.
All float32, images in [0, 1], shape [m, N, N, 3] (m images of N x N pixels)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

RES = 32            # output resolution
_SS = 1             # supersampling factor: 1 renders directly at 32x32 (_pool averages when > 1)
_N = RES * _SS
_CHUNK = 128        # images rendered per vectorised chunk (bounds memory)


@lru_cache(maxsize=1)
def _grid() -> tuple[np.ndarray, np.ndarray]:
    g = ((np.arange(_N) + 0.5) / _N * 2 - 1).astype(np.float32)
    yy, xx = np.meshgrid(g, g, indexing="ij")
    return xx, yy  # x to the right, y downwards, image spans [-1, 1]


def _u(rng, lo, hi, m) -> np.ndarray:
    return rng.uniform(lo, hi, m).astype(np.float32)


def _b(a: np.ndarray) -> np.ndarray:
    """[m] -> [m, 1, 1] for broadcasting against [m, N, N]."""
    return np.asarray(a, np.float32)[:, None, None]


def _bb(a) -> np.ndarray:
    """[m] -> [m, 1, 1] keeping the dtype (for boolean masks)."""
    return np.asarray(a)[:, None, None]


def _local(tx, ty, rot, sx, sy=None):
    """Coordinates of every pixel in a per-image frame shifted by (tx, ty),
    rotated by rot and scaled by (sx, sy): returns xl, yl of shape [m, N, N]."""
    xx, yy = _grid()
    sy = sx if sy is None else sy
    dx = xx[None] - _b(tx)
    dy = yy[None] - _b(ty)
    c, s = _b(np.cos(rot)), _b(np.sin(rot))
    return (c * dx + s * dy) / _b(sx), (-s * dx + c * dy) / _b(sy)


def _frame(rng, m, rot=(0.0, 0.0), scale=(1.0, 1.0), shift=0.0, full_rot=False):
    rot_a = _u(rng, 0, 2 * np.pi, m) if full_rot else _u(rng, rot[0], rot[1], m)
    sc = _u(rng, scale[0], scale[1], m)
    tx, ty = _u(rng, -shift, shift, m), _u(rng, -shift, shift, m)
    return _local(tx, ty, rot_a, sc)


def _pool(img: np.ndarray) -> np.ndarray:
    f = img.shape[1] // RES
    if f == 1:
        return img
    out = np.zeros((img.shape[0], RES, RES, img.shape[3]), np.float32)
    for i in range(f):
        for j in range(f):
            out += img[:, i::f, j::f]
    out *= 1.0 / (f * f)
    return out


@lru_cache(maxsize=16)
def _interp_matrix(cells: int, n: int = _N) -> np.ndarray:
    """[n, cells+1] smooth (smoothstep) interpolation weights."""
    pos = (np.arange(n) + 0.5) / n * cells
    i0 = np.clip(np.floor(pos).astype(int), 0, cells - 1)
    t = pos - i0
    t = t * t * (3 - 2 * t)
    w = np.zeros((n, cells + 1), np.float32)
    w[np.arange(n), i0] = 1 - t
    w[np.arange(n), i0 + 1] = t
    return w


def _noise(rng, m, cells: int, n: int = _N) -> np.ndarray:
    """Smooth value noise in [0, 1], shape [m, n, n]; ``cells`` = feature count per side."""
    r = rng.random((m, cells + 1, cells + 1), dtype=np.float32)
    w = _interp_matrix(cells, n)
    return np.einsum("ij,mjk,lk->mil", w, r, w, optimize=True)


@lru_cache(maxsize=8)
def _blur_matrix(sigma: float, n: int = RES) -> np.ndarray:
    x = np.arange(n)
    k = np.exp(-0.5 * ((x[:, None] - x[None, :]) / sigma) ** 2)
    return (k / k.sum(1, keepdims=True)).astype(np.float32)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    g = _blur_matrix(round(float(sigma), 2), img.shape[1])
    return np.einsum("ij,mjkc,lk->milc", g, img, g, optimize=True)


def _hsv(h, s, v) -> np.ndarray:
    """Vectorised HSV -> RGB; h, s, v arrays of shape [m] -> [m, 3]."""
    h = np.mod(np.asarray(h, np.float32), 1.0)
    s = np.asarray(s, np.float32)
    v = np.asarray(v, np.float32)
    k = np.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], -1)
    return (v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(k, 4 - k), 0, 1)).astype(np.float32)


def _col(rgb, m, rng=None, jitter: float = 0.0) -> np.ndarray:
    """A base colour (0-255 tuple) for m images, optionally jittered: [m, 1, 1, 3]."""
    c = np.tile(np.asarray(rgb, np.float32) / 255.0, (m, 1))
    if jitter and rng is not None:
        c = c * _u(rng, 1 - jitter, 1 + jitter, m)[:, None] + rng.normal(0, jitter / 2, (m, 3)).astype(np.float32)
    return np.clip(c, 0, 1)[:, None, None, :]


def _rand_col(rng, m) -> np.ndarray:
    return _hsv(_u(rng, 0, 1, m), _u(rng, 0.3, 1.0, m), _u(rng, 0.25, 1.0, m))[:, None, None, :]


def _contrast_pair(rng, m, min_gap=0.35, sat=(0.2, 1.0)):
    """Two colours per image whose brightness differs by at least ``min_gap``: [m,1,1,3] each."""
    v1 = _u(rng, 0, 1, m)
    gap = _u(rng, min_gap, 0.75, m)
    up = v1 + gap
    v2 = np.where(up <= 1.0, up, v1 - gap)
    v2 = np.where(v2 < 0, np.minimum(v1 + gap, 1.0), v2)
    c1 = _hsv(_u(rng, 0, 1, m), _u(rng, *sat, m), v1)
    c2 = _hsv(_u(rng, 0, 1, m), _u(rng, *sat, m), v2)
    swap = rng.random(m) < 0.5
    a = np.where(swap[:, None], c1, c2)
    b = np.where(swap[:, None], c2, c1)
    return a[:, None, None, :], b[:, None, None, :]


def _paint(img, mask, colour):
    """Alpha-composite ``colour`` over ``img`` with ``mask`` ([m,N,N] in [0,1])."""
    a = np.asarray(mask, dtype=np.float32)
    out = np.empty(np.broadcast_shapes(img.shape, np.shape(colour)), np.float32)
    ib, cb = np.broadcast_to(img, out.shape), np.broadcast_to(colour, out.shape)
    for c in range(out.shape[-1]):  # per channel: numpy is slow at broadcasting a size-3 last axis
        ic = ib[..., c]
        np.subtract(cb[..., c], ic, out=out[..., c])
        out[..., c] *= a
        out[..., c] += ic
    return out


def _window(cx: float, cy: float, half: float):
    """Pixel window (row slice, col slice) and its grid coordinates covering the square of
    half-size ``half`` around (cx, cy): lets slot-based drawing touch only that region."""
    xx, yy = _grid()
    g = xx[0]
    lo_x, hi_x = np.searchsorted(g, cx - half), np.searchsorted(g, cx + half)
    lo_y, hi_y = np.searchsorted(g, cy - half), np.searchsorted(g, cy + half)
    rs, cs = slice(lo_y, max(hi_y, lo_y + 1)), slice(lo_x, max(hi_x, lo_x + 1))
    return rs, cs, xx[rs, cs], yy[rs, cs]


def _fill(m, colour, n=_N):
    return np.broadcast_to(colour, (m, n, n, 3)).astype(np.float32).copy()


def _finish(img, rng, noise=(0.02, 0.06), blur=None, shade=0.0):
    """Pool to 32x32 and add per-image lighting, gaussian noise and optional blur."""
    m = img.shape[0]
    if shade:
        img = img * (1 + shade * (2 * _noise(rng, m, 2) - 1))[..., None]
    out = _pool(img) if img.shape[1] != RES else img
    if blur:
        out = _blur(out, blur)
    sig = _u(rng, noise[0], noise[1], m)[:, None, None, None]
    out = out + sig * rng.standard_normal(out.shape, dtype=np.float32)
    return np.clip(out, 0, 1)


def _warp(src: np.ndarray, idx: np.ndarray, xl: np.ndarray, yl: np.ndarray) -> np.ndarray:
    """Bilinear sample template ``src[idx]`` ([K,S,S,C], spanning [-1,1]^2) at local
    coordinates xl, yl ([m,N,N]); zero outside: returns [m, N, N, C]."""
    flat, s = _padded(src)
    c = src.shape[-1]
    px = np.clip((xl + 1) * (0.5 * (s - 2)) + 0.5, 0, s - 1.001)  # +1 border, -0.5 centre
    py = np.clip((yl + 1) * (0.5 * (s - 2)) + 0.5, 0, s - 1.001)
    x0 = px.astype(np.int32)
    y0 = py.astype(np.int32)
    wx = (px - x0)[..., None]
    wy = (py - y0)[..., None]
    base = (np.asarray(idx, np.int32)[:, None, None] * s + y0) * s + x0
    tl = np.take(flat, base, axis=0)
    tr = np.take(flat, base + 1, axis=0)
    top = tl + wx * (tr - tl)
    bl = np.take(flat, base + s, axis=0)
    br = np.take(flat, base + s + 1, axis=0)
    bot = bl + wx * (br - bl)
    out = top + wy * (bot - top)
    return out.reshape(xl.shape + (c,))


_PADDED: dict[int, tuple[np.ndarray, int, np.ndarray]] = {}


def _padded(src: np.ndarray) -> tuple[np.ndarray, int]:
    """Template stack with a one-pixel zero border, flattened to [K*(S+2)^2, C] (cached)."""
    key = id(src)
    hit = _PADDED.get(key)
    if hit is None or hit[2] is not src:
        p = np.pad(src, ((0, 0), (1, 1), (1, 1), (0, 0)))
        hit = (np.ascontiguousarray(p.reshape(-1, src.shape[-1])), p.shape[1], src)
        _PADDED[key] = hit
    return hit[0], hit[1]


def _per_class(rng, labels, fns) -> np.ndarray:
    img = np.zeros((len(labels), _N, _N, 3), np.float32)
    for c, fn in enumerate(fns):
        sel = np.flatnonzero(labels == c)
        if len(sel):
            img[sel] = fn(rng, len(sel))
    return img


def _frac(x):
    return x - np.floor(x)


def _hash(*keys) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per cell index (float64 arithmetic)."""
    acc = np.zeros(np.broadcast(*keys).shape, np.float64)
    for i, k in enumerate(keys):
        acc = acc + np.asarray(k, np.float64) * (12.9898 + 29.7 * i)
    return _frac(np.sin(acc) * 43758.5453).astype(np.float32)


def _gray(v) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return np.stack([v, v, v], -1)


def _mottle(rng, m, c1, c2, cells=6, jitter=0.12):
    t = _noise(rng, m, cells)[..., None]
    return _col(c1, m, rng, jitter) * (1 - t) + _col(c2, m, rng, jitter) * t
