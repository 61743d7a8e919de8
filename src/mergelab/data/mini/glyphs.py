"""Templates rendered once with PIL (cached): glyphs of matplotlib's bundled fonts, the
drawing operations the per-family templates are made of, and scikit-learn's bundled
8x8 handwritten digits."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np


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
