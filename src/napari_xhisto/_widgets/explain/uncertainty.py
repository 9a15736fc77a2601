"""The Monte-Carlo dropout std layer of a probability map: data, colormap, display range.

No napari import at module level; :func:`uncertainty_layer_data` returns what
``viewer.add_image`` takes. The colormap is clear where the passes agree (std 0) and runs from
blue through green to yellow as they disagree, so it reads apart from the probability map's
yellow-to-red and the heatmaps' blue-white-red.
"""

from __future__ import annotations

import numpy as np

from .. import layers as L

COLORMAP_NAME = "xhisto-mc-std"
# (position, RGBA): viridis colours, transparent at 0, opaque from a quarter of the range up
_CONTROLS = [(0.0, (0.27, 0.00, 0.33, 0.0)), (0.08, (0.28, 0.14, 0.45, 0.35)),
             (0.25, (0.23, 0.32, 0.55, 0.8)), (0.5, (0.13, 0.57, 0.55, 0.9)),
             (0.75, (0.37, 0.79, 0.38, 1.0)), (1.0, (0.99, 0.91, 0.14, 1.0))]


def uncertainty_colormap():
    """napari ``Colormap`` of std layers (see module docstring)."""
    from napari.utils.colormaps import Colormap

    return Colormap(colors=[c for _, c in _CONTROLS], controls=[p for p, _ in _CONTROLS],
                    name=COLORMAP_NAME)


def display_limit(std: np.ndarray) -> float:
    """Upper display limit: the 99th percentile of the finite std values (at least 1e-3, at
    most 0.5, the largest std a probability can have), to three significant digits."""
    fin = std[np.isfinite(std)]
    hi = float(np.percentile(fin, 99)) if fin.size else 0.0
    hi = min(max(hi, 1e-3), 0.5)
    return float(f"{hi:.3g}")


def uncertainty_layer_data(umap, class_name: str, *, mpp: float, provenance: dict, name: str,
                           slide_path=None, opacity: float = 0.6) -> tuple[np.ndarray, dict]:
    """``(data, kwargs)`` of the std layer of ``class_name`` of an ``UncertaintyMap``.

    Cells without tissue (no patch ran) are NaN, as are damaged cells (already NaN).
    """
    std = umap.std_map(class_name).astype(np.float32)
    std[~np.asarray(umap.mean.tissue_mask, bool)] = np.nan
    placement = umap.mean.placement
    meta = {"kind": "uncertainty", "statistic": "std", "placement": placement.to_dict(),
            "mpp": float(mpp), "provenance": dict(provenance), "class_name": str(class_name),
            "class_names": [str(c) for c in umap.mean.class_names],
            "slide_path": None if slide_path is None else str(slide_path)}
    kwargs = {"name": name, **placement.layer_transform(mpp), "units": L.UNITS,
              "colormap": uncertainty_colormap(), "contrast_limits": (0.0, display_limit(std)),
              "opacity": float(opacity), "blending": "translucent", "interpolation2d": "nearest",
              "metadata": {"xhisto": meta}}
    return std, kwargs
