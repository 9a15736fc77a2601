"""Slide artefacts: tissue fold, pen mark, air bubble, out-of-focus patch.

Each artefact is a small dict of geometry in level-0 pixels; ``apply_artefact`` changes the
optical densities of a render window where it falls, ``artefact_ring`` gives its polygon.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from .layout import CODE, Layout
from .regions import ellipse_ring
from .stain import INK_VECTORS

NEUTRAL = np.array([0.58, 0.58, 0.58])  # grey absorber (bubble rim)


def _bent_line(rng, start, direction, length, n=14, bend=0.08):
    t = np.linspace(0, 1, n)
    normal = np.array([-direction[1], direction[0]])
    wiggle = np.cumsum(rng.normal(0, bend, n)) * length / n
    wiggle -= np.linspace(wiggle[0], wiggle[-1], n) * 0.5
    return start + np.outer(t * length, direction) + np.outer(wiggle, normal)


def place_artefacts(lay: Layout, rng) -> list[dict]:
    """One fold, one pen mark, one bubble, one out-of-focus patch (two folds on large slides)."""
    um = 1.0 / lay.mpp
    h, w = lay.height, lay.width
    side = min(h, w)
    tissue = lay.fields["tissue"]
    ii, jj = np.nonzero(tissue > min(150 * um, 0.05 * side))
    if len(ii) == 0:
        return []

    def inside_point():
        k = rng.integers(len(ii))
        return np.array([ii[k] * lay.step, jj[k] * lay.step], float)

    arts = []
    for _ in range(2 if side * lay.mpp > 15000 else 1):
        ang = rng.uniform(0, np.pi)
        d = np.array([np.cos(ang), np.sin(ang)])
        length = side * rng.uniform(0.25, 0.45)
        line = _bent_line(rng, inside_point() - d * length / 2, d, length, bend=0.05)
        arts.append({"kind": "fold", "line": line,
                     "width": float(min(rng.uniform(60, 160) * um, 0.03 * side))})
    t0 = rng.uniform(0, 2 * np.pi)
    t = np.linspace(t0, t0 + rng.uniform(0.5, 0.9), 24)
    line = np.stack([h / 2 + 0.46 * h * np.sin(t), w / 2 + 0.46 * w * np.cos(t)], axis=1)
    line += rng.normal(0, 0.002 * side, line.shape)
    arts.append({"kind": "pen", "line": line, "ink": str(rng.choice(list(INK_VECTORS))),
                 "width": float(min(rng.uniform(120, 220) * um, 0.03 * side))})
    arts.append({"kind": "bubble", "center": inside_point(),
                 "radius": float(min(rng.uniform(150, 400) * um, 0.08 * side))})
    r = min(rng.uniform(250, 600) * um, 0.1 * side)
    arts.append({"kind": "blur", "center": inside_point(), "radii": (r, r * rng.uniform(0.6, 1)),
                 "angle": float(rng.uniform(0, np.pi))})
    return arts


def artefact_bbox(art) -> tuple[float, float, float, float]:
    """(row min, row max, col min, col max) of the artefact's polygon."""
    ring = artefact_ring(art)
    return ring[:, 0].min(), ring[:, 0].max(), ring[:, 1].min(), ring[:, 1].max()


def artefact_ring(art) -> np.ndarray:
    """Polygon (K, 2) of level-0 (row, col) around the artefact."""
    if art["kind"] in ("fold", "pen"):
        line, half = art["line"], art["width"] / 2
        d = np.gradient(line, axis=0)
        d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-12
        normal = np.stack([-d[:, 1], d[:, 0]], axis=1)
        return np.concatenate([line + half * normal, (line - half * normal)[::-1]])
    if art["kind"] == "bubble":
        c = art["center"]
        return ellipse_ring(c[0], c[1], art["radius"], art["radius"], 0.0, n=64)
    c = art["center"]
    return ellipse_ring(c[0], c[1], art["radii"][0], art["radii"][1], art["angle"], n=64)


def _line_distance(line, rr, cc, reach=np.inf):
    """Distance of grid points to a polyline (segments farther than ``reach`` are skipped)."""
    best = np.full(np.broadcast(rr, cc).shape, np.inf, np.float32)
    r_lo, r_hi, c_lo, c_hi = rr.min() - reach, rr.max() + reach, cc.min() - reach, cc.max() + reach
    for p, q in zip(line[:-1], line[1:]):
        if (max(p[0], q[0]) < r_lo or min(p[0], q[0]) > r_hi or max(p[1], q[1]) < c_lo
                or min(p[1], q[1]) > c_hi):
            continue
        d = q - p
        L2 = float(d @ d) + 1e-12
        t = np.clip(((rr - p[0]) * d[0] + (cc - p[1]) * d[1]) / L2, 0, 1)
        dist = np.hypot(rr - p[0] - t * d[0], cc - p[1] - t * d[1])
        np.minimum(best, dist, out=best)
    return best


def apply_artefact(art, world, h_od, e_od, codes, extra, R0, C0, H, W) -> None:
    """Modify a render window's optical densities (and codes) where ``art`` falls."""
    r_min, r_max, c_min, c_max = artefact_bbox(art)
    pad = 8
    a, b = max(int(r_min) - pad - R0, 0), min(int(r_max) + pad - R0, H)
    c, d = max(int(c_min) - pad - C0, 0), min(int(c_max) + pad - C0, W)
    if a >= b or c >= d:
        return
    um = 1.0 / world.mpp
    rr = (np.arange(a, b, dtype=np.float32) + R0)[:, None]
    cc = (np.arange(c, d, dtype=np.float32) + C0)[None, :]
    hs, es = h_od[a:b, c:d], e_od[a:b, c:d]
    tissue = (hs + es) > 0.1
    kind = art["kind"]
    if kind in ("fold", "pen"):
        half = art["width"] / 2
        dist = _line_distance(art["line"], rr, cc, reach=half + 8 * um)
        inside = np.clip(half - dist + 0.5, 0, 1)
        if kind == "fold":
            edge = np.exp(-((dist - half) / (1.5 * um)) ** 2) * tissue
            hs *= 1 + 0.9 * inside
            es *= 1 + 0.8 * inside
            es += 0.25 * edge
            hs += 0.1 * edge
            mask = (inside > 0.5) & tissue
        else:
            streak = 1 + 0.25 * world.tex.window("smudge", R0 + a, C0 + c, b - a, d - c)
            conc = np.zeros_like(h_od)
            conc[a:b, c:d] = np.clip(1.1 * inside * streak, 0, None)
            extra.append((conc, INK_VECTORS[art["ink"]]))
            mask = inside > 0.5
    elif kind == "bubble":
        cr, cc0 = art["center"]
        dist = np.hypot(rr - cr, cc - cc0)
        rad = art["radius"]
        rim = np.exp(-((dist - rad) / (2.0 * um)) ** 2)
        halo = np.exp(-((dist - rad + 5 * um) / (3.0 * um)) ** 2)
        inside = dist < rad
        hs *= np.where(inside, 0.85, 1.0) * (1 - 0.3 * halo)
        es *= np.where(inside, 0.85, 1.0) * (1 - 0.3 * halo)
        conc = np.zeros_like(h_od)
        conc[a:b, c:d] = 0.9 * rim
        extra.append((conc, NEUTRAL))
        mask = inside
    else:  # out of focus: blur the optical densities inside a soft ellipse
        from .layout import vessel_distance

        cr, cc0 = art["center"]
        v = np.array([cr, cc0, art["radii"][0], art["radii"][1], art["angle"]])
        rho = vessel_distance(v, rr, cc)
        wgt = np.clip((1.15 - rho) / 0.3, 0, 1).astype(np.float32)
        sigma = min(2.5 * um, 5.0)
        hs[...] = hs * (1 - wgt) + gaussian_filter(h_od, sigma)[a:b, c:d] * wgt
        es[...] = es * (1 - wgt) + gaussian_filter(e_od, sigma)[a:b, c:d] * wgt
        mask = rho < 1
    if codes is not None:
        sub = codes[a:b, c:d]
        sub[mask & (sub > 0) if kind != "pen" else mask] = CODE["artefact"]
