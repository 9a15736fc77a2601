"""Banks of nucleus stamps (haematoxylin and eosin optical-density patches) per cell kind.

Stamps are drawn once per (seed, mpp) and then pasted: tumour nuclei (large, pleomorphic,
hyperchromatic, irregular outline, coarse chromatin, nucleoli, faint cell border), lymphocytes
(small, round, dense), spindle fibroblast / endothelial nuclei at several orientations,
"other" cells (pyknotic nuclei, neutrophils, macrophages), karyorrhectic debris, erythrocytes,
and the ghosts of dead tumour cells in "comedo" necrosis (tumour-sized, pale, smudged nuclear
shadows in a hypereosinophilic cell outline, half with karyorrhectic fragments inside).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

N_ORIENT = 12


@dataclass
class Stamp:
    h: np.ndarray   # (s, s) float32, combined by maximum
    e: np.ndarray   # (s, s) float32, added
    half: int       # centre offset: stamp pixel (half, half) sits on the cell position


def _grid(radius_px: float):
    half = int(np.ceil(radius_px)) + 3
    y, x = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float64)
    return half, y, x


def _finish(h, e, half, blur_px):
    h = gaussian_filter(h, blur_px)
    e = gaussian_filter(e, blur_px)
    return Stamp(h.astype(np.float32), e.astype(np.float32), half)


def _blob(rng, y, x, radius, elong, angle, roughness, n_harm=5):
    ca, sa = np.cos(angle), np.sin(angle)
    u = y * ca + x * sa
    t = (-y * sa + x * ca) * elong
    r = np.hypot(u, t)
    th = np.arctan2(t, u)
    bound = np.ones_like(r)
    for k in range(2, n_harm + 1):
        bound += rng.normal(0, roughness / k ** 0.7) * np.cos(k * th + rng.uniform(0, 2 * np.pi))
    bound *= radius
    alpha = np.clip(bound - r + 0.5, 0, 1)
    return alpha, bound - r


def _texture(rng, shape, sigma):
    n = gaussian_filter(rng.standard_normal(shape), sigma)
    return n / (n.std() + 1e-9)


def tumour_stamp(rng, um):
    radius = rng.uniform(4.3, 7.6) * um
    half, y, x = _grid(radius * 1.35 * 1.9)
    if rng.random() < 0.08:  # occasional giant, bizarre nucleus
        radius *= 1.35
    alpha, dist = _blob(rng, y, x, radius, rng.uniform(1.05, 1.5), rng.uniform(0, np.pi), 0.09)
    vesicular = rng.random() < 0.4
    base = rng.uniform(0.8, 1.1) if vesicular else rng.uniform(1.3, 1.9)
    fine = 0.6 * _texture(rng, y.shape, 0.45 * um) + 0.4 * _texture(rng, y.shape, 1.0 * um)
    chrom = 1 + (0.35 if vesicular else 0.2) * fine
    rim = np.exp(-((dist - 0.4 * um) / (0.6 * um)) ** 2) * (0.55 if vesicular else 0.25)
    h = alpha * (base * np.clip(chrom, 0.3, None)) + alpha * rim
    e = -0.12 * alpha
    for _ in range(rng.choice([0, 1, 1, 2, 3])):  # nucleoli, prominent and eosinophilic
        rr = rng.uniform(0, 0.45) * radius
        ang = rng.uniform(0, 2 * np.pi)
        nr = rng.uniform(0.7, 1.4) * um
        spot = np.clip(nr - np.hypot(y - rr * np.cos(ang), x - rr * np.sin(ang)) + 0.5, 0, 1)
        h += 0.45 * spot
        e += 0.55 * spot
    # faint, partial cell border around the nucleus
    cell_r = radius * rng.uniform(1.55, 1.8)
    ring = np.exp(-((np.hypot(y, x) - cell_r) / (0.45 * um)) ** 2)
    ring *= np.clip(_texture(rng, y.shape, 3 * um) + 0.6, 0, 1.5)
    e += 0.09 * ring * (1 - alpha)
    return _finish(h, e, half, 0.45 * um)


def lymphocyte_stamp(rng, um):
    radius = rng.uniform(2.9, 3.7) * um
    half, y, x = _grid(radius + 1.5 * um)
    alpha, dist = _blob(rng, y, x, radius, rng.uniform(1.0, 1.12), rng.uniform(0, np.pi), 0.05)
    chrom = 1 + 0.15 * _texture(rng, y.shape, 0.5 * um)
    h = alpha * rng.uniform(2.0, 2.6) * chrom
    rim = np.clip(radius + 1.0 * um - np.hypot(y, x), 0, 1) * (1 - alpha)
    e = -0.15 * alpha + 0.06 * rim
    return _finish(h, e, half, 0.4 * um)


def spindle_stamp(rng, um, angle, *, thin=False):
    length = rng.uniform(5.5, 9.5) * um
    width = (rng.uniform(0.9, 1.3) if thin else rng.uniform(1.2, 2.0)) * um
    half, y, x = _grid(length + 1)
    ca, sa = np.cos(angle), np.sin(angle)
    u = y * ca + x * sa
    t = -y * sa + x * ca
    bend = rng.normal(0, 0.012) / um
    t = t - bend * u ** 2
    prof = width * np.sqrt(np.clip(1 - (u / length) ** 2, 0, None)) ** 0.8
    alpha = np.clip(prof - np.abs(t) + 0.5, 0, 1)
    h = alpha * rng.uniform(1.4, 1.8) * (1 + 0.15 * _texture(rng, y.shape, 0.6 * um))
    return _finish(h, -0.1 * alpha, half, 0.45 * um)


def other_stamp(rng, um):
    kind = rng.choice(["pyknotic", "neutrophil", "macrophage"], p=[0.45, 0.35, 0.2])
    if kind == "pyknotic":
        radius = rng.uniform(2.3, 3.2) * um
        half, y, x = _grid(radius + 2 * um)
        alpha, _ = _blob(rng, y, x, radius, rng.uniform(1, 1.2), rng.uniform(0, np.pi), 0.08)
        h = alpha * rng.uniform(2.2, 2.8)
        e = -0.05 * alpha + 0.12 * np.clip(radius + 2 * um - np.hypot(y, x), 0, 1) * (1 - alpha)
    elif kind == "neutrophil":
        half, y, x = _grid(6 * um)
        h = np.zeros_like(y)
        n_lobes = rng.integers(3, 5)
        a0 = rng.uniform(0, 2 * np.pi)
        for k in range(n_lobes):
            a = a0 + k * 1.9 / n_lobes * np.pi * rng.uniform(0.8, 1.2)
            lr = rng.uniform(1.2, 1.6) * um
            cy, cx = 2.3 * um * np.cos(a), 2.3 * um * np.sin(a)
            h = np.maximum(h, np.clip(lr - np.hypot(y - cy, x - cx) + 0.5, 0, 1) * 2.0)
        e = 0.12 * np.clip(5.5 * um - np.hypot(y, x), 0, 1)
    else:
        radius = rng.uniform(3.8, 5.0) * um
        half, y, x = _grid(10 * um)
        alpha, _ = _blob(rng, y, x, radius, rng.uniform(1.3, 1.7), rng.uniform(0, np.pi), 0.12)
        h = alpha * rng.uniform(0.8, 1.1) * (1 + 0.3 * _texture(rng, y.shape, 0.6 * um))
        foam = np.clip(9 * um - np.hypot(y, x), 0, 1) * (1 - alpha)
        e = 0.1 * foam * (1 + 0.5 * _texture(rng, y.shape, 0.8 * um)) - 0.1 * alpha
        h = h + 0.06 * foam
    return _finish(h, e, half, 0.45 * um)


def debris_stamp(rng, um):
    half, y, x = _grid(5 * um)
    h = np.zeros_like(y)
    for _ in range(rng.integers(1, 6)):
        cy, cx = rng.normal(0, 1.8 * um, 2)
        r = rng.uniform(0.4, 1.4) * um
        h = np.maximum(h, np.clip(r - np.hypot(y - cy, x - cx) + 0.5, 0, 1) * rng.uniform(1.5, 2.4))
    return _finish(h, np.zeros_like(h), half, 0.5 * um)


def ghost_stamp(rng, um):
    """A dead tumour cell in (comedo) necrosis: the nucleus' shadow, same size and outline as
    a viable tumour nucleus but pale and smudged (karyolysis); its cell outline persists,
    the cytoplasm hypereosinophilic; half of them show karyorrhexis (dark fragments inside the
    nuclear outline)."""
    radius = rng.uniform(4.3, 7.6) * um * rng.uniform(0.85, 1.0)
    cell_r = radius * rng.uniform(1.5, 1.8)
    half, y, x = _grid(cell_r + 1.5 * um)
    alpha, dist = _blob(rng, y, x, radius, rng.uniform(1.05, 1.5), rng.uniform(0, np.pi), 0.09)
    smudge = 1 + 0.15 * _texture(rng, y.shape, 1.5 * um)
    h = alpha * rng.uniform(0.4, 0.8) * smudge  # viable tumour nuclei: 0.8-1.9
    h += alpha * np.exp(-((dist - 0.4 * um) / (0.7 * um)) ** 2) * rng.uniform(0.05, 0.2)
    if rng.random() < 0.5:
        for _ in range(rng.integers(2, 7)):
            cy, cx = rng.normal(0, 0.45 * radius, 2)
            r = rng.uniform(0.4, 1.1) * um
            spot = np.clip(r - np.hypot(y - cy, x - cx) + 0.5, 0, 1) * rng.uniform(1.4, 2.2)
            h = np.maximum(h, spot)
    rr = np.hypot(y, x)
    cyto = np.clip(cell_r - rr + 0.5, 0, 1) * (1 - alpha)
    ring = np.exp(-((rr - cell_r) / (0.5 * um)) ** 2)
    ring *= np.clip(_texture(rng, y.shape, 3 * um) + 0.8, 0, 1.5)
    e = -0.08 * alpha + 0.08 * cyto + 0.12 * ring
    return _finish(h, e, half, 0.7 * um)


def rbc_stamp(rng, um):
    radius = rng.uniform(3.2, 3.8) * um
    half, y, x = _grid(radius + 1)
    alpha, _ = _blob(rng, y, x, radius, rng.uniform(1.0, 1.25), rng.uniform(0, np.pi), 0.04)
    pallor = np.exp(-(np.hypot(y, x) / (0.45 * radius)) ** 2)
    e = alpha * (0.95 - 0.35 * pallor)
    return _finish(0.04 * alpha, e, half, 0.4 * um)


class StampBank:
    """Stamps per kind: ``tumour``, ``lymphocyte``, ``spindle`` (by orientation), ``endothelial``
    (by orientation), ``other``, ``debris``, ``rbc``, ``ghost``.

    Parameters
    ----------
    seed : int
    mpp : float
    """

    def __init__(self, seed: int, mpp: float):
        rng = np.random.default_rng([int(seed), 4242])
        um = 1.0 / mpp
        self.kinds = {
            "tumour": [tumour_stamp(rng, um) for _ in range(64)],
            "lymphocyte": [lymphocyte_stamp(rng, um) for _ in range(24)],
            "other": [other_stamp(rng, um) for _ in range(24)],
            "debris": [debris_stamp(rng, um) for _ in range(24)],
            "rbc": [rbc_stamp(rng, um) for _ in range(12)],
        }
        for name, thin in (("spindle", False), ("endothelial", True)):
            for o in range(N_ORIENT):
                ang = np.pi * o / N_ORIENT
                self.kinds[f"{name}{o}"] = [spindle_stamp(rng, um, ang, thin=thin)
                                            for _ in range(4)]
        # own stream: adding ghosts left every other stamp as it was
        g_rng = np.random.default_rng([int(seed), 4243])
        self.kinds["ghost"] = [ghost_stamp(g_rng, um) for _ in range(48)]
        self.max_half = max(s.half for v in self.kinds.values() for s in v)

    def pick(self, kind: str, index: int) -> Stamp:
        bank = self.kinds[kind]
        return bank[index % len(bank)]


def paste(h_od: np.ndarray, e_od: np.ndarray, stamp: Stamp, row: float, col: float) -> None:
    """Paste a stamp centred on window pixel (row, col), clipped to the window."""
    r0 = int(np.floor(row + 0.5)) - stamp.half
    c0 = int(np.floor(col + 0.5)) - stamp.half
    s = stamp.h.shape[0]
    a, b = max(r0, 0), min(r0 + s, h_od.shape[0])
    c, d = max(c0, 0), min(c0 + s, h_od.shape[1])
    if a >= b or c >= d:
        return
    sh = stamp.h[a - r0:b - r0, c - c0:d - c0]
    np.maximum(h_od[a:b, c:d], sh, out=h_od[a:b, c:d])
    e_od[a:b, c:d] += stamp.e[a - r0:b - r0, c - c0:d - c0]
