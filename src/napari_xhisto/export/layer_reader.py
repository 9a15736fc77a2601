"""Heatmap files back into napari layers, lined up with their slide (no napari import here).

``_reader.py`` (or any caller) can hand :func:`heatmap_file_layer_data` to napari: one lazy
multiscale image layer per file, every level read tile by tile, with ``scale``/``translate``
from the recorded placement and ``metadata["xhisto"]`` shaped like the Explain widget's layers
(kind, placement, mpp, provenance), so exports and metrics work on it unchanged.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import tifffile

from ..geometry import split_index_2d, squeeze_2d
from .heatmap_io import _read_description, _read_info
from .tiles import HeatmapTileReader

HEATMAP_COLORMAP = "bwr"
PROBABILITY_COLORMAP = "magma"


def is_heatmap_file(path) -> bool:
    """Whether ``path`` is a TIFF written by our heatmap writers (OME annotation or JSON description)."""
    try:
        with tifffile.TiffFile(path) as tf:
            if tf.is_ome:
                return "placement" in _read_info(tf.ome_metadata)
            return "placement" in _read_description(tf.pages[0].description or "")
    except Exception:
        return False


class LevelArray:
    """A read-only, lazily decoded 2-D array over one pyramid level of a heatmap file."""

    ndim = 2

    def __init__(self, path, level: int):
        self._reader = HeatmapTileReader(path, level=level)
        self._lock = threading.Lock()  # one file handle: napari may read from several threads
        self.shape = self._reader.shape
        self.dtype = np.dtype(self._reader.dtype)
        self.placement = self._reader.placement

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        (r0, r1, rs), (c0, c1, cs), squeeze = split_index_2d(key, self.shape)
        with self._lock:
            block = self._reader.read(r0, c0, max(r1 - r0, 0), max(c1 - c0, 0))
        return squeeze_2d(block[::rs, ::cs].astype(self.dtype, copy=False), squeeze)

    def __array__(self, dtype=None, copy=None):
        arr = self[:, :]
        return arr if dtype is None else arr.astype(dtype)

    def close(self):
        self._reader.close()


def heatmap_file_layer_data(path, *, mpp: float | None = None, opacity: float = 0.6,
                            slide_path=None) -> list[tuple]:
    """One napari ``LayerData`` tuple (lazy multiscale image) for a heatmap file.

    Parameters
    ----------
    path : str or Path
        A file from :func:`~napari_xhisto.export.write_heatmap` / ``write_heatmap_tiles``.
    mpp : float, optional
        µm per level-0 pixel of the slide; default: recorded in the file (pixels if unknown).
    """
    path = Path(path)
    with HeatmapTileReader(path) as base:
        n_levels, placement = base.levels, base.placement
        file_mpp, prov, kind = base.mpp, dict(base.provenance), base.kind
    levels = [LevelArray(path, k) for k in range(n_levels)]
    mpp = float(mpp or file_mpp or 1.0)
    coarse = np.asarray(levels[-1])
    finite = coarse[np.isfinite(coarse)]
    if kind == "probability":
        limits, cmap = (0.0, 1.0), PROBABILITY_COLORMAP
    else:
        m = float(np.abs(finite).max()) if finite.size else 0.0
        limits, cmap = ((-m, m) if m > 0 else (-1.0, 1.0)), HEATMAP_COLORMAP
    meta = {"kind": kind if kind in ("heatmap", "probability") else "heatmap",
            "placement": placement.to_dict(), "mpp": mpp, "provenance": prov,
            "slide_path": None if slide_path is None else str(slide_path), "source_file": str(path)}
    kwargs = {"name": prov.get("name") or path.name.split(".")[0], **placement.layer_transform(mpp),
              "colormap": cmap, "contrast_limits": limits, "opacity": float(opacity),
              "blending": "translucent", "interpolation2d": "nearest", "multiscale": len(levels) > 1,
              "metadata": {"xhisto": meta}}
    if file_mpp or mpp != 1.0:
        kwargs["units"] = ("µm", "µm")
    data = levels if len(levels) > 1 else levels[0]
    return [(data, kwargs, "image")]


def overlay_translate(properties: dict, mpp: float) -> tuple[float, float]:
    """World translate (µm) of an RGB overlay region from its Aperio keys (0, 0 for full slides)."""
    row = float(properties.get("aperio.XhistoOriginRow", properties.get("XhistoOriginRow", 0)) or 0)
    col = float(properties.get("aperio.XhistoOriginCol", properties.get("XhistoOriginCol", 0)) or 0)
    return (row * mpp, col * mpp) if math.isfinite(row + col) else (0.0, 0.0)
