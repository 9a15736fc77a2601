"""Heatmap files back into napari layers, lined up with their slide (no napari import here).

``_reader.py`` (or any caller) can hand :func:`heatmap_file_layer_data` to napari: one lazy
multiscale image layer per file, every level read tile by tile, with ``scale``/``translate``
from the recorded placement and ``metadata["xhisto"]`` shaped like the Explain widget's layers
(kind, placement, mpp, provenance), so exports and metrics work on it unchanged. It looks as it
did in the widget: the same colormaps (:mod:`napari_xhisto.colormaps`: clear centre for
relevance, clear low values for probabilities, NaN transparent) and the display limits the
layer had when it was written (``provenance["display_limits"]``), else the widget's rule
(+-99.5th percentile of |relevance|; 0..1 for probabilities).
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import tifffile

from ..colormaps import HEATMAP_NAME, PROBABILITY_NAME, colormap_spec
from ..geometry import split_index_2d, squeeze_2d
from .heatmap_io import _read_description, _read_info
from .tiles import HeatmapTileReader

HEATMAP_COLORMAP = HEATMAP_NAME
PROBABILITY_COLORMAP = PROBABILITY_NAME
DISPLAY_PERCENTILE = 99.5  # as the Explain widget's new layers
LIMITS_SAMPLE_PX = 4_000_000  # display limits from the finest level up to this many pixels


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
    kind = kind if kind in ("heatmap", "probability") else "heatmap"
    limits = display_limits(levels, kind, prov)
    meta = {"kind": kind, "placement": placement.to_dict(), "mpp": mpp, "provenance": prov,
            "slide_path": None if slide_path is None else str(slide_path), "source_file": str(path)}
    kwargs = {"name": prov.get("name") or path.name.split(".")[0], **placement.layer_transform(mpp),
              "colormap": colormap_spec(kind), "contrast_limits": limits,
              "opacity": float(opacity),
              "blending": "translucent", "interpolation2d": "nearest", "multiscale": len(levels) > 1,
              "metadata": {"xhisto": meta}}
    if file_mpp or mpp != 1.0:
        kwargs["units"] = ("µm", "µm")
    data = levels if len(levels) > 1 else levels[0]
    return [(data, kwargs, "image")]


def display_limits(levels, kind: str, provenance: dict) -> tuple[float, float]:
    """Contrast limits: recorded in the file, else 0..1 (probability) or +-99.5th pct of |R|."""
    recorded = provenance.get("display_limits")
    if recorded is not None and len(recorded) == 2 and all(
            isinstance(v, int | float) and math.isfinite(v) for v in recorded) \
            and recorded[0] < recorded[1]:
        return float(recorded[0]), float(recorded[1])
    if kind == "probability":
        return (0.0, 1.0)
    level = next((lv for lv in levels if lv.size <= LIMITS_SAMPLE_PX), levels[-1])
    values = np.asarray(level)
    finite = np.abs(values[np.isfinite(values)])
    m = float(np.percentile(finite, DISPLAY_PERCENTILE)) if finite.size else 0.0
    return (-m, m) if m > 0 else (-1.0, 1.0)


def overlay_translate(properties: dict, mpp: float) -> tuple[float, float]:
    """World translate (µm) of an RGB overlay region from its Aperio keys (0, 0 for full slides)."""
    row = float(properties.get("aperio.XhistoOriginRow", properties.get("XhistoOriginRow", 0)) or 0)
    col = float(properties.get("aperio.XhistoOriginCol", properties.get("XhistoOriginCol", 0)) or 0)
    return (row * mpp, col * mpp) if math.isfinite(row + col) else (0.0, 0.0)
