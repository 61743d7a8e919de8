"""Traffic signs (imitates GTSRB): shape + colour + pictogram on street clutter."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .glyphs import _arrow_pts, _draw_masks, _ell, _poly, _rect, _regular, _text
from .primitives import _b, _col, _finish, _grid, _local, _noise, _paint, _rand_col, _u, _warp


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
