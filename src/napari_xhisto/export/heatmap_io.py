"""Float heatmaps and probability maps as pyramidal OME-TIFF, with their placement on the slide.

The file keeps float values (float32, or float16 on request) and says where it lies:
OME ``PhysicalSizeX/Y`` give µm per heatmap pixel, ``Plane PositionX/Y`` the µm offset of its
top-left corner on the slide, and a ``MapAnnotation`` (namespace ``napari-xhisto``) carries the
exact :class:`~napari_xhisto.geometry.Placement` in level-0 pixels, the slide's µm/px and the
provenance (model, method, parameters, region, normalisation) as JSON.
Pixels not covered by the heatmap are NaN. float16 maps (which OME-XML cannot describe) are
plain pyramidal TIFFs with the same JSON in their ImageDescription.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from ..errors import XhistoError
from ..geometry import Placement

NAMESPACE = "napari-xhisto"
_TILE = 256


@dataclass
class HeatmapFile:
    """A heatmap read back from disk."""

    values: np.ndarray
    placement: Placement
    mpp: float | None
    provenance: dict = field(default_factory=dict)
    levels: int = 1


def _downsample2(a: np.ndarray) -> np.ndarray:
    """Mean of 2x2 blocks, ignoring NaN; odd edges keep their partial blocks."""
    h, w = a.shape
    ph, pw = h % 2, w % 2
    if ph or pw:
        a = np.pad(a, ((0, ph), (0, pw)), constant_values=np.nan)
    blocks = a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2).astype(np.float32)
    finite = np.isfinite(blocks)
    total = np.where(finite, blocks, 0).sum(axis=(1, 3))
    count = finite.sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / count
    return np.where(count > 0, out, np.nan).astype(a.dtype)


def _first_page_metadata(path: Path, placement: Placement, *, mpp, provenance: dict, dtype: str):
    """``(ome, kwargs)`` for the first page of a heatmap file: OME-XML or our JSON description."""
    prov = provenance
    unit_mpp = float(mpp) if mpp else 1.0
    unit = "µm" if mpp else "pixel"
    info = {"placement": placement.to_dict(), "mpp": mpp, "provenance": prov, "kind": prov.get("kind", "heatmap")}
    metadata = {
        "axes": "YX",
        "Name": str(prov.get("name", path.stem)),
        "PhysicalSizeY": placement.step_row * unit_mpp,
        "PhysicalSizeYUnit": unit,
        "PhysicalSizeX": placement.step_col * unit_mpp,
        "PhysicalSizeXUnit": unit,
        "Plane": {
            "PositionY": [placement.origin_row * unit_mpp], "PositionYUnit": [unit],
            "PositionX": [placement.origin_col * unit_mpp], "PositionXUnit": [unit],
        },
        "MapAnnotation": {"Namespace": NAMESPACE, "xhisto": json.dumps(info, default=str)},
    }
    # OME-XML has no half-float pixel type: float16 maps are plain pyramidal TIFFs whose
    # ImageDescription holds the same JSON (read_heatmap understands both).
    ome = dtype == "float32"
    first = {"metadata": metadata} if ome else {"metadata": None, "description": json.dumps(info, default=str)}
    return ome, first


def write_heatmap(
    path,
    values: np.ndarray,
    placement: Placement,
    *,
    mpp: float | None,
    provenance: dict | None = None,
    dtype: str = "float32",
    min_level_size: int = 512,
) -> Path:
    """Write a 2-D float map as a tiled, pyramidal OME-TIFF that records where it lies.

    Parameters
    ----------
    path : str or Path
        Output file (``.ome.tif`` recommended). An existing file is replaced atomically.
    values : ndarray, shape (H, W)
        The map; NaN marks pixels without a value.
    placement : Placement
        Where pixel (0, 0) lies on level 0 and how many level-0 px one map pixel spans.
    mpp : float or None
        The slide's µm per level-0 pixel (None when unknown: sizes are then written in pixels).
    provenance : dict, optional
        Model, method, parameters, region, normalisation: anything JSON-serialisable.
    dtype : {"float32", "float16"}
        Stored precision; the choice is recorded in the provenance.

    Returns
    -------
    Path
        The written file.
    """
    values = np.asarray(values)
    if values.ndim != 2:
        raise XhistoError(f"a heatmap must be 2-D (rows, cols), got shape {values.shape}")
    if dtype not in ("float32", "float16"):
        raise XhistoError(f"heatmap dtype must be 'float32' or 'float16', got {dtype!r}")
    path = Path(path)
    prov = dict(provenance or {})
    prov["stored_dtype"] = dtype
    data = values.astype(dtype, copy=False)
    levels = [data]
    while max(levels[-1].shape) > min_level_size:
        levels.append(_downsample2(levels[-1]))

    ome, first = _first_page_metadata(path, placement, mpp=mpp, provenance=prov, dtype=dtype)
    tmp = path.with_name(path.name + ".partial")
    opts = {"tile": (_TILE, _TILE), "compression": "zlib"}
    try:
        with tifffile.TiffWriter(tmp, bigtiff=True, ome=ome) as tw:
            tw.write(levels[0], subifds=len(levels) - 1, **first, **opts)
            for lvl in levels[1:]:
                tw.write(lvl, subfiletype=1, metadata=None, **opts)
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _read_info(ome_xml: str | None) -> dict:
    if not ome_xml:
        return {}
    try:
        root = ET.fromstring(ome_xml)
    except ET.ParseError:
        return {}
    for el in root.iter():
        if el.tag.endswith("MapAnnotation") and el.get("Namespace") == NAMESPACE:
            for m in el.iter():
                if m.tag.endswith("M") and m.get("K") == "xhisto":
                    try:
                        return json.loads(m.text or "{}")
                    except json.JSONDecodeError:
                        return {}
    return {}


def _read_description(text: str) -> dict:
    try:
        info = json.loads(text or "")
    except json.JSONDecodeError:
        return {}
    return info if isinstance(info, dict) and "placement" in info else {}


def read_heatmap(path, *, level: int = 0) -> HeatmapFile:
    """Read a heatmap written by :func:`write_heatmap` (or any single-channel float TIFF).

    A TIFF without our annotation is placed at the slide origin with one level-0 px per pixel.
    ``level`` > 0 reads a coarser pyramid level, with the placement scaled to match.
    """
    path = Path(path)
    if not path.exists():
        raise XhistoError(f"heatmap file not found: {path}")
    try:
        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            n_levels = len(series.levels)
            if not 0 <= level < n_levels:
                raise XhistoError(f"{path.name} has {n_levels} pyramid level(s); level {level} does not exist")
            values = series.levels[level].asarray()
            info = _read_info(tf.ome_metadata) if tf.is_ome else _read_description(tf.pages[0].description)
    except XhistoError:
        raise
    except Exception as exc:
        raise XhistoError(f"cannot read heatmap {path}: {exc}") from exc
    if values.ndim != 2:
        values = np.squeeze(values)
        if values.ndim != 2:
            raise XhistoError(f"{path.name} is not a single-channel map (shape {values.shape})")
    placement = Placement.from_dict(info["placement"]) if "placement" in info else Placement()
    if level:
        base = series.levels[0].shape
        fr, fc = base[0] / values.shape[0], base[1] / values.shape[1]
        placement = Placement(placement.origin_row, placement.origin_col,
                              placement.step_row * fr, placement.step_col * fc)
    return HeatmapFile(values=values, placement=placement, mpp=info.get("mpp"),
                       provenance=info.get("provenance", {}), levels=n_levels)
