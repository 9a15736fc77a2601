"""Where each tissue lies: smooth fields on a coarse grid, and vessels as objects.

Region boundaries are zero level sets of coarse fields scaled like signed distances in
level-0 pixels (positive inside). The same bilinear interpolation serves rendering windows,
cell placement and ground-truth polygons, so pixels, cells and polygons agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.fft as sfft
from scipy.spatial import cKDTree

TISSUE_CODES = {0: "background", 1: "stroma", 2: "tumour", 3: "necrosis", 4: "vessel",
                5: "artefact"}
CODE = {v: k for k, v in TISSUE_CODES.items()}
LAYOUTS = ("mixed", "slide")

GRID_UM = 12.0        # coarse grid spacing, µm
NECROSIS_RIM_UM = 35  # viable tumour around necrosis
TUMOUR_AREA_MARGIN_UM = 20  # the tumour-area polygon is drawn this far out, around the nests


@dataclass
class Layout:
    """Coarse description of a synthetic section.

    Attributes
    ----------
    height, width : int
        Level-0 size in pixels.
    mpp : float
    kind : str
        ``"mixed"`` (tissue everywhere: tumour, stroma, necrosis, vessels) or ``"slide"``
        (a section on glass, with artefacts).
    step : float
        Pixels between coarse grid nodes; node (i, j) sits on pixel (i * step, j * step).
    fields : dict of str -> ndarray (ni, nj) float32
        ``tissue``, ``tumour``, ``nest``, ``necrosis``: signed-distance-like, pixels, > 0 inside
        (nests may reach ``TUMOUR_AREA_MARGIN_UM`` beyond the tumour-area field's zero level);
        ``lymph``: lymphocyte density 0..1; ``orient_c``/``orient_s``: a smooth vector field
        whose angle is twice the collagen fibre angle (length about 1, small near defects).
    vessels : ndarray (V, 7) float64
        row, col, semi-axis a, semi-axis b, angle, wall fraction, lumen filling with erythrocytes.
    artefacts : list of dict
    """

    height: int
    width: int
    mpp: float
    kind: str
    seed: int
    step: float
    fields: dict
    vessels: np.ndarray
    artefacts: list = field(default_factory=list)

    # -- interpolation -------------------------------------------------------------------
    def _weights(self, coords: np.ndarray, n: int):
        x = np.clip(coords / self.step, 0, n - 1.000001)
        i0 = np.floor(x).astype(np.int64)
        return i0, (x - i0).astype(np.float32)

    def fields_grid(self, r0: int, c0: int, h: int, w: int, names, *, stride: int = 1) -> dict:
        """Bilinear fields on the pixel grid ``[r0, r0+h) x [c0, c0+w)``.

        With ``stride`` > 1, only every ``stride``-th pixel (at the centre of each
        ``stride`` x ``stride`` cell): arrays of ``ceil(h/stride) x ceil(w/stride)``.
        """
        ni, nj = self.fields["tissue"].shape
        off = (stride - 1) / 2
        wr = _interp_matrix(np.arange(r0, r0 + h, stride, dtype=np.float64) + off, self.step, ni)
        wc = _interp_matrix(np.arange(c0, c0 + w, stride, dtype=np.float64) + off, self.step, nj)
        (a, b), (c, d) = wr[1], wc[1]
        out = {}
        for name in names:
            sub = self.fields[name][a:b, c:d]
            out[name] = (wr[0] @ sub) @ wc[0].T
        return out

    def field_range(self, name: str, r0: float, c0: float, h: float, w: float):
        """Bounds (min, max) of a field over a window (bilinear values lie within node values)."""
        ni, nj = self.fields[name].shape
        a = int(np.clip(np.floor(r0 / self.step), 0, ni - 1))
        b = int(np.clip(np.floor((r0 + h) / self.step) + 2, 1, ni))
        c = int(np.clip(np.floor(c0 / self.step), 0, nj - 1))
        d = int(np.clip(np.floor((c0 + w) / self.step) + 2, 1, nj))
        sub = self.fields[name][a:b, c:d]
        return float(sub.min()), float(sub.max())

    def fields_points(self, rows: np.ndarray, cols: np.ndarray, names) -> dict:
        """Bilinear fields at points (level-0 pixel coordinates)."""
        ni, nj = self.fields["tissue"].shape
        i0, fr = self._weights(np.asarray(rows, np.float64), ni)
        j0, fc = self._weights(np.asarray(cols, np.float64), nj)
        out = {}
        for name in names:
            f = self.fields[name]
            top = f[i0, j0] * (1 - fc) + f[i0, j0 + 1] * fc
            bot = f[i0 + 1, j0] * (1 - fc) + f[i0 + 1, j0 + 1] * fc
            out[name] = top * (1 - fr) + bot * fr
        return out

    def vessels_in(self, r0: float, c0: float, h: float, w: float, margin: float = 0) -> np.ndarray:
        """Rows of ``vessels`` whose bounding circle meets the window."""
        v = self.vessels
        if len(v) == 0:
            return v
        rad = v[:, 2] + margin
        sel = ((v[:, 0] + rad > r0) & (v[:, 0] - rad < r0 + h)
               & (v[:, 1] + rad > c0) & (v[:, 1] - rad < c0 + w))
        return v[sel]


def _interp_matrix(coords: np.ndarray, step: float, n: int):
    """Dense bilinear weights (len(coords), k) on the node slice [a, b) the coords need."""
    x = np.clip(coords / step, 0, n - 1.000001)
    i0 = np.floor(x).astype(np.int64)
    t = (x - i0).astype(np.float32)
    a, b = int(i0.min()), int(i0.max()) + 2
    m = np.zeros((len(coords), b - a), np.float32)
    idx = np.arange(len(coords))
    m[idx, i0 - a] = 1 - t
    m[idx, i0 - a + 1] += t
    return m, (a, b)


def _smooth_noise(rng, shape, sigma_nodes):
    """Unit-variance Gaussian-filtered noise; filtered in the Fourier domain (cost independent
    of sigma) on a grid padded by 3 sigma, so opposite edges stay independent."""
    pad = int(min(3 * sigma_nodes, 2 * max(shape)))
    big = (shape[0] + pad, shape[1] + pad)
    fr = np.fft.fftfreq(big[0])[:, None]
    fc = np.fft.rfftfreq(big[1])[None, :]
    gain = np.exp(-2 * np.pi ** 2 * sigma_nodes ** 2 * (fr ** 2 + fc ** 2))
    white = rng.standard_normal(big).astype(np.float32)
    f = sfft.irfft2(sfft.rfft2(white) * gain, s=big)[: shape[0], : shape[1]]
    return (f - f.mean()) / (f.std() + 1e-12)


def _as_distance(f: np.ndarray, step: float) -> np.ndarray:
    """Scale a smooth field so one unit is about one pixel of distance near its zero level."""
    gr, gc = np.gradient(f)
    g = np.hypot(gr, gc) / step
    near = np.abs(f) < np.quantile(np.abs(f), 0.2)
    scale = np.median(g[near]) if near.any() else np.median(g)
    return (f / max(scale, 1e-12)).astype(np.float32)


def make_layout(height: int, width: int, *, seed: int, mpp: float, kind: str = "mixed") -> Layout:
    """Draw the coarse layout of a section (deterministic by seed).

    Parameters
    ----------
    height, width : int
        Level-0 pixels.
    seed : int
    mpp : float
        Micrometres per pixel.
    kind : {"mixed", "slide"}
    """
    if kind not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {kind!r}")
    rng = np.random.default_rng([int(seed), 101])
    um = 1.0 / mpp
    step = GRID_UM * um
    ni, nj = int(np.ceil(height / step)) + 3, int(np.ceil(width / step)) + 3
    shape = (ni, nj)
    sig = lambda s_um: s_um / GRID_UM  # noqa: E731  (µm -> nodes)
    ii, jj = np.meshgrid(np.arange(ni) * step, np.arange(nj) * step, indexing="ij")

    if kind == "slide":
        # One or two tissue pieces with irregular outlines, inside the glass.
        tissue = np.full(shape, -1e9)
        n_pieces = 1 if rng.random() < 0.6 else 2
        for p in range(n_pieces):
            cr = height * (0.5 if n_pieces == 1 else rng.uniform(0.35, 0.65))
            cc = width * (0.5 if n_pieces == 1 else (0.3 + 0.4 * p))
            ar = height * rng.uniform(0.34, 0.42)
            ac = width * (rng.uniform(0.34, 0.42) if n_pieces == 1 else rng.uniform(0.17, 0.22))
            rho = np.hypot((ii - cr) / ar, (jj - cc) / ac)
            wob = _smooth_noise(rng, shape, sig(max(height, width) * mpp / 12)) * 0.12
            tissue = np.maximum(tissue, 1 - rho + wob)
        tissue = _as_distance(tissue, step)
        tumour_sigma, tumour_q = 350.0, 0.55
    else:
        tissue = np.full(shape, 1e6, np.float32)
        tumour_sigma, tumour_q = 120.0, 0.5
    inside = tissue > 0
    if not inside.any():
        inside = np.ones(shape, bool)

    tum = _smooth_noise(rng, shape, sig(tumour_sigma))
    tum = _as_distance(tum - np.quantile(tum[inside], tumour_q), step)
    # an irregular, infiltrative tumour front rather than a smooth curve
    tum = (tum + (25 * um) * _smooth_noise(rng, shape, sig(40.0))).astype(np.float32)
    nest = _smooth_noise(rng, shape, sig(28.0))
    in_tum = inside & (tum > 0)
    ref = nest[in_tum] if in_tum.any() else nest.ravel()
    nest = _as_distance(nest - np.quantile(ref, 0.35), step)
    # Nests fade out beyond the tumour-area border instead of being cut along it.
    nest = (nest - 4.0 * np.maximum(-tum, 0)).astype(np.float32)
    nec = _smooth_noise(rng, shape, sig(70.0))
    deep = inside & (tum > 45 * um)
    ref = nec[deep] if deep.sum() > 10 else nec[inside]
    nec = _as_distance(nec - np.quantile(ref, 0.6), step)
    necrosis = np.minimum(np.minimum(nec, tum - 45 * um), tissue - 60 * um)

    z = _smooth_noise(rng, shape, sig(45.0))
    lymph = 0.03 + 0.45 * np.clip(z - 1.0, 0, 1.2) + 0.12 * np.exp(-(tum / (50 * um)) ** 2)
    oc, os_ = _smooth_noise(rng, shape, sig(120.0)), _smooth_noise(rng, shape, sig(120.0))
    norm = np.sqrt(np.mean(oc ** 2 + os_ ** 2))  # one global scale: no jumps at defects
    fields = {"tissue": tissue.astype(np.float32), "tumour": tum, "nest": nest,
              "necrosis": necrosis.astype(np.float32),
              "lymph": np.clip(lymph, 0, 0.8).astype(np.float32),
              "orient_c": (oc / norm).astype(np.float32), "orient_s": (os_ / norm).astype(np.float32)}
    lay = Layout(height, width, float(mpp), kind, int(seed), step, fields, np.zeros((0, 7)))
    lay.vessels = _place_vessels(lay, rng)
    if kind == "slide":
        from .artefacts import place_artefacts

        lay.artefacts = place_artefacts(lay, np.random.default_rng([int(seed), 303]))
    return lay


def _place_vessels(lay: Layout, rng) -> np.ndarray:
    um = 1.0 / lay.mpp
    area_mm2 = lay.height * lay.width * (lay.mpp * 1e-3) ** 2
    n = rng.poisson(max(area_mm2 * 40, 1))
    rows = rng.uniform(0, lay.height, n)
    cols = rng.uniform(0, lay.width, n)
    b = np.exp(rng.uniform(np.log(6), np.log(45), n)) * um
    a = b * rng.uniform(1.0, 2.0, n)
    f = lay.fields_points(rows, cols, ["tissue", "tumour"])
    ok = (f["tissue"] > a + 10 * um) & (f["tumour"] < -a - 40 * um)
    big = b > 14 * um
    ok &= big | (rng.random(n) < 0.6)
    k = int(ok.sum())
    wall = np.where(big[ok], rng.uniform(0.2, 0.4, k), 0.0)
    fill = rng.uniform(0, 1, k) ** 2
    ang = rng.uniform(0, np.pi, k)
    v = np.stack([rows[ok], cols[ok], a[ok], b[ok], ang, wall, fill], axis=1)
    # Drop vessels overlapping an earlier one (greedy, in order).
    if len(v) < 2:
        return v
    pairs = cKDTree(v[:, :2]).query_pairs(2 * v[:, 2].max() + 4 * um, output_type="ndarray")
    d = np.hypot(*(v[pairs[:, 0], :2] - v[pairs[:, 1], :2]).T)
    pairs = pairs[d <= v[pairs[:, 0], 2] + v[pairs[:, 1], 2] + 4 * um]
    pairs = np.sort(pairs, axis=1)
    earlier: dict = {}
    for i, j in pairs:
        earlier.setdefault(int(j), []).append(int(i))
    keep = np.ones(len(v), bool)
    for j in range(len(v)):
        if any(keep[i] for i in earlier.get(j, ())):
            keep[j] = False
    return v[keep]


def vessel_distance(v: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Normalised elliptic radius of points from vessel ``v`` (1 on the outer boundary)."""
    dr, dc = rows - v[0], cols - v[1]
    ca, sa = np.cos(v[4]), np.sin(v[4])
    u = dr * ca + dc * sa
    t = -dr * sa + dc * ca
    return np.sqrt((u / v[2]) ** 2 + (t / v[3]) ** 2)


def classify_points(lay: Layout, tex, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Tissue code at points (the same rule as the rendered tissue map, without artefacts)."""
    f = lay.fields_points(rows, cols, ["tissue", "tumour", "nest", "necrosis"])
    e = tex.at("edge", rows, cols)
    e2 = tex.at("edge2", rows, cols)
    code = _codes(lay, f, e, e2)
    if len(rows):
        vs = lay.vessels_in(rows.min(), cols.min(), np.ptp(rows) + 1, np.ptp(cols) + 1)
        for v in vs:
            code[(vessel_distance(v, rows, cols) < 1) & (code > 0)] = CODE["vessel"]
    return code


def soft_distances(lay: Layout, f: dict, e, e2):
    """Signed distances (pixels) to tissue, tumour-nest and necrosis borders, fine noise added."""
    um = 1.0 / lay.mpp
    d_tis = e2 * np.float32(8 * um)
    d_tis += f["tissue"]
    d_nec = e * np.float32(5 * um)
    d_nec += f["necrosis"]
    d_nest = e * np.float32(3 * um)
    d_nest += f["nest"]
    np.maximum(d_nest, d_nec + np.float32(NECROSIS_RIM_UM * um), out=d_nest)
    return d_tis, d_nest, d_nec


def _codes(lay, f, e, e2):
    d_tis, d_nest, d_nec = soft_distances(lay, f, e, e2)
    code = np.where(d_tis > 0, np.where(d_nec > 0, 3, np.where(d_nest > 0, 2, 1)), 0)
    return code.astype(np.uint8)
