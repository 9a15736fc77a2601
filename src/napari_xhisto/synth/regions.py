"""Ground-truth region polygons: zero level sets of the layout's fields, vessels, artefacts."""

from __future__ import annotations

import numpy as np
from skimage.measure import approximate_polygon, find_contours, points_in_poly

from .layout import TUMOUR_AREA_MARGIN_UM, Layout

_OUTSIDE = -1e9


def _ring_area(ring: np.ndarray) -> float:
    r, c = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.sum(r * np.roll(c, -1) - np.roll(r, -1) * c))


def level_set_polygons(values: np.ndarray, rows: np.ndarray, cols: np.ndarray, *,
                       tolerance: float, min_area: float):
    """Polygons (exterior, holes) of ``values > 0`` on a grid with node coordinates rows x cols.

    The grid is padded with "outside", so polygons close along the window edge.
    """
    padded = np.pad(values.astype(np.float64), 1, constant_values=_OUTSIDE)
    rr = np.concatenate([[rows[0]], rows, [rows[-1]]])
    cc = np.concatenate([[cols[0]], cols, [cols[-1]]])
    outers, holes = [], []
    for ring in find_contours(padded, 0.0, positive_orientation="high"):
        pts = np.stack([np.interp(ring[:, 0], np.arange(len(rr)), rr),
                        np.interp(ring[:, 1], np.arange(len(cc)), cc)], axis=1)
        pts = approximate_polygon(pts, tolerance)[:-1]
        if len(pts) < 3:
            continue
        area = _ring_area(pts)
        if abs(area) < min_area:
            continue
        (outers if area > 0 else holes).append(pts)
    result = [(o, []) for o in outers]
    for h in holes:
        for o, hs in result:
            if points_in_poly(h[:1], o)[0]:
                hs.append(h)
                break
    return result


def field_regions(lay: Layout, r0: int, c0: int, h: int, w: int) -> list[tuple[str, np.ndarray,
                                                                             list]]:
    """(class, exterior, holes) of tumour area, stroma and necrosis inside a window.

    Coordinates are level-0 pixels relative to the window's origin.
    """
    step = lay.step
    rows = np.unique(np.concatenate([np.arange(r0, r0 + h, step), [r0 + h - 1]]))
    cols = np.unique(np.concatenate([np.arange(c0, c0 + w, step), [c0 + w - 1]]))
    rg, cg = np.meshgrid(rows, cols, indexing="ij")
    f = lay.fields_points(rg.ravel(), cg.ravel(), ["tissue", "tumour", "necrosis"])
    f = {k: v.reshape(rg.shape) for k, v in f.items()}
    um = 1.0 / lay.mpp
    defs = {
        "tumour area": np.minimum(f["tumour"] + TUMOUR_AREA_MARGIN_UM * um, f["tissue"]),
        "stroma": np.minimum(-f["tumour"] - TUMOUR_AREA_MARGIN_UM * um, f["tissue"]),
        "necrosis": f["necrosis"],
    }
    out = []
    for cls, values in defs.items():
        for ext, holes in level_set_polygons(values, rows - r0, cols - c0, tolerance=1.0 * um,
                                             min_area=(15 * um) ** 2):
            out.append((cls, ext, holes))
    return out


def ellipse_ring(row, col, a, b, angle, n=48) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    u, v = a * np.cos(t), b * np.sin(t)
    ca, sa = np.cos(angle), np.sin(angle)
    return np.stack([row + u * ca - v * sa, col + u * sa + v * ca], axis=1)
