"""Evaluate's inputs, read from napari layers into level-0 pixels (no Qt).

The GUI thread only takes a :class:`HeatmapInput`, :class:`PointsInput` or :class:`ShapesInput`
of each chosen layer (references to its arrays, its transform and metadata: microseconds);
everything that costs time (reading the explained part of a heatmap, 22k cells to level-0
pixels, patches) runs on those snapshots in the worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...annotations import (
    CellPoints,
    ClassMap,
    points_data_to_cells,
    shapes_data_to_regions,
)
from ...annotations.classmap import IGNORE, cell_roles
from ...errors import XhistoError
from ...geometry import Placement
from ...metrics._common import level0_to_map, map_to_level0

HEATMAP_KINDS = ("heatmap", "probability")


def xmeta(layer) -> dict:
    """``layer.metadata["xhisto"]`` or ``{}``."""
    meta = getattr(layer, "metadata", None)
    info = meta.get("xhisto") if isinstance(meta, dict) else None
    return info if isinstance(info, dict) else {}


def is_heatmap_layer(layer) -> bool:
    """A heatmap or probability layer of ours (the Explain widget's, or a heatmap file's)."""
    return getattr(layer, "_type_string", "") == "image" and xmeta(layer).get("kind") in HEATMAP_KINDS


def _world(data, scale, translate) -> np.ndarray:
    """Layer data coordinates (last two axes) to world µm: data * scale + translate."""
    data = np.asarray(data, dtype=np.float64).reshape(-1, np.shape(data)[-1])[:, -2:]
    return data * np.asarray(scale)[-2:] + np.asarray(translate)[-2:]


# ---- snapshots of layers (taken on the GUI thread) -------------------------------------------

@dataclass
class HeatmapInput:
    """A heatmap layer's data (finest level, possibly lazy), where it lies, and its metadata."""

    name: str
    data: object
    placement: Placement
    mpp: float
    meta: dict = field(default_factory=dict)

    @classmethod
    def of(cls, layer, *, mpp: float | None = None) -> HeatmapInput:
        """Snapshot of ``layer``; ``metadata["xhisto"]`` placement and mpp when present, else the
        layer's scale/translate with ``mpp`` µm per level-0 pixel."""
        meta = xmeta(layer)
        data = layer.data[0] if layer.multiscale else layer.data
        if "placement" in meta and meta.get("mpp"):
            return cls(layer.name, data, Placement.from_dict(meta["placement"]), float(meta["mpp"]),
                       dict(meta))
        mpp = float(mpp or meta.get("mpp") or 1.0)
        scale, translate = np.asarray(layer.scale)[-2:], np.asarray(layer.translate)[-2:]
        step = scale / mpp
        origin = translate / mpp - (step - 1) / 2
        return cls(layer.name, data, Placement(origin[0], origin[1], step[0], step[1]), mpp, dict(meta))


def heatmap_from_layer(layer, *, mpp: float | None = None):
    """``(values, placement, mpp)`` of an image layer (see :meth:`HeatmapInput.of`)."""
    h = HeatmapInput.of(layer, mpp=mpp)
    return h.data, h.placement, h.mpp


def _default_class(layer) -> str:
    return str(xmeta(layer).get("class") or layer.name)


def class_map_of(data) -> ClassMap:
    """The class map a layer carries (``metadata["xhisto"]["class_map"]``, as the Annotate
    widget keeps it), else the suggested one (QuPath's "Tumor" is a tumour cell)."""
    if isinstance(data, dict) and data:
        try:
            return ClassMap.from_dict(data)
        except XhistoError:  # a damaged map in a layer: the suggestion
            pass
    return ClassMap()


def region_role(name: str, class_map: ClassMap) -> str:
    """The class a region is scored as: its role, or its own name."""
    return class_map.region_role(name) or name


@dataclass
class PointsInput:
    layer: object
    data: np.ndarray
    scale: tuple
    translate: tuple
    features: object
    default_class: str
    class_map: dict | None = None

    @classmethod
    def of(cls, layer) -> PointsInput:
        return cls(layer, layer.data, tuple(layer.scale), tuple(layer.translate), layer.features,
                   _default_class(layer), xmeta(layer).get("class_map"))


@dataclass
class ShapesInput:
    layer: object
    data: list
    shape_type: list
    scale: tuple
    translate: tuple
    features: object
    holes: dict
    default_class: str
    class_map: dict | None = None

    @classmethod
    def of(cls, layer) -> ShapesInput:
        return cls(layer, list(layer.data), list(layer.shape_type), tuple(layer.scale),
                   tuple(layer.translate), layer.features, dict(xmeta(layer).get("holes", {})),
                   _default_class(layer), xmeta(layer).get("class_map"))


def cells_from_inputs(inputs, mpp: float):
    """Cells (level-0 px) of points snapshots, and ``(layer, index)`` of each cell.

    The class comes from the "class" feature, else from ``metadata["xhisto"]["class"]`` (one
    layer per class, as the Annotate widget makes them), else the layer name; it is then
    mapped to its role by the layer's class map (:func:`class_map_of`). Cells whose role is
    "ignore" keep that class (the caller leaves them out; indices stay those of the layers).
    """
    parts, source = [], []
    for p in inputs:
        c = points_data_to_cells(_world(p.data, p.scale, p.translate), p.features, mpp,
                                 default_class=p.default_class)
        c = CellPoints(c.rows, c.cols, cell_roles(c.classes, class_map_of(p.class_map)))
        parts.append(c)
        source += [(p.layer, i) for i in range(len(c.rows))]
    if not parts:
        return None, []
    cells = CellPoints(np.concatenate([c.rows for c in parts]), np.concatenate([c.cols for c in parts]),
                       np.concatenate([c.classes for c in parts]))
    return cells, source


def regions_from_inputs(inputs, mpp: float):
    """Regions (level-0 px) of shapes snapshots (holes from ``metadata["xhisto"]["holes"]``)."""
    regions, source = [], []
    for s in inputs:
        holes = {k: [_world(h, s.scale, s.translate) for h in v] for k, v in s.holes.items()}
        found = shapes_data_to_regions([_world(d, s.scale, s.translate) for d in s.data],
                                       s.shape_type, s.features, mpp, holes=holes,
                                       default_class=s.default_class)
        class_map = class_map_of(s.class_map)
        for region in found:
            region.cls = region_role(region.cls, class_map)
        regions += found
        source += [(s.layer, i) for i in range(len(found))]
    return regions, source


def cells_from_layers(layers, mpp: float):
    """:func:`cells_from_inputs` of napari Points layers."""
    return cells_from_inputs([PointsInput.of(layer) for layer in layers], mpp)


def regions_from_layers(layers, mpp: float):
    """:func:`regions_from_inputs` of napari Shapes layers."""
    return regions_from_inputs([ShapesInput.of(layer) for layer in layers], mpp)


def class_names(layers, kind: str = "cell") -> list[str]:
    """The classes annotation layers are scored as ("class" feature, else the layer's class,
    mapped to its role by the layer's class map; "ignore" left out)."""
    found: dict[str, None] = {}
    for layer in layers:
        names: list[str] = []
        features = getattr(layer, "features", None)
        if features is not None and "class" in getattr(features, "columns", ()) and len(features):
            names = [str(c) for c in features["class"].dropna().unique()]
        elif xmeta(layer).get("class"):
            names = [str(xmeta(layer)["class"])]
        class_map = class_map_of(xmeta(layer).get("class_map"))
        for name in names:
            role = (class_map.cell_role(name) if kind == "cell" else class_map.region_role(name))
            found[role or name] = None
    found.pop(IGNORE, None)
    return list(found)


# ---- the explained area ---------------------------------------------------------------------

def explained_box(heat: HeatmapInput) -> tuple[int, int, int, int]:
    """Index box ``(r0, r1, c0, c1)`` of the explained part of a heatmap.

    A slide-wide canvas (``metadata["xhisto"]["canvas"]``) holds nothing outside its pasted
    regions: the box bounds them (each paste's provenance carries its level-0 ``region``).
    Any other heatmap was computed over its whole extent.
    """
    H, W = heat.data.shape[-2:]
    boxes = [(p.get("provenance") or {}).get("region") for p in heat.meta.get("pastes") or ()]
    if heat.meta.get("canvas") and not boxes:
        raise XhistoError(f"nothing was explained on '{heat.name}' yet: click the slide in "
                          "explain mode first, or pick another heatmap")
    if not heat.meta.get("canvas") or any(b is None for b in boxes):
        return 0, H, 0, W
    p = heat.placement
    r0 = min(b[0] for b in boxes)
    c0 = min(b[1] for b in boxes)
    r1 = max(b[0] + b[2] for b in boxes)
    c1 = max(b[1] + b[3] for b in boxes)
    i0 = max(int(np.floor((r0 - p.origin_row) / p.step_row)), 0)
    i1 = min(int(np.ceil((r1 - p.origin_row) / p.step_row)), H)
    j0 = max(int(np.floor((c0 - p.origin_col) / p.step_col)), 0)
    j1 = min(int(np.ceil((c1 - p.origin_col) / p.step_col)), W)
    if i1 <= i0 or j1 <= j0:
        raise XhistoError(f"nothing was explained on '{heat.name}' yet: explain a region first")
    return i0, i1, j0, j1


def mask_uncovered(values, placement: Placement, pastes) -> np.ndarray:
    """NaN where no explained region was pasted (slide-wide canvas layers hold 0 there).

    ``pastes`` is ``metadata["xhisto"]["pastes"]``: each provenance carries its level-0
    ``region`` (row, col, height, width). Unchanged when a region is missing.
    """
    boxes = [(p.get("provenance") or {}).get("region") for p in pastes or ()]
    if not boxes or any(b is None for b in boxes):
        return values
    r, c = map_to_level0(np.arange(values.shape[0]), np.arange(values.shape[1]), placement)
    covered = np.zeros(values.shape, dtype=bool)
    for r0, c0, h, w in boxes:
        covered |= ((r >= r0) & (r < r0 + h))[:, None] & ((c >= c0) & (c < c0 + w))[None, :]
    return np.where(covered, values, np.nan)


def explained_values(heat: HeatmapInput):
    """The explained part of a heatmap: ``(values float64, placement, offset)``.

    ``offset`` is the index of ``values[0, 0]`` in the full layer (keeps patches on the model's
    grid). Canvas pixels outside every pasted region become NaN.
    """
    i0, i1, j0, j1 = explained_box(heat)
    values = np.asarray(heat.data[i0:i1, j0:j1], dtype=np.float64)
    p = heat.placement
    placement = Placement(p.origin_row + i0 * p.step_row, p.origin_col + j0 * p.step_col,
                          p.step_row, p.step_col)
    if heat.meta.get("canvas"):
        values = mask_uncovered(values, placement, heat.meta.get("pastes"))
    return values, placement, (i0, j0)


def on_explained(values, placement: Placement, rows, cols) -> np.ndarray:
    """Which level-0 points fall on a finite (explained) pixel of ``values``."""
    fr, fc = level0_to_map(rows, cols, placement)
    i, j = np.floor(fr + 0.5).astype(np.int64), np.floor(fc + 0.5).astype(np.int64)
    inside = (i >= 0) & (i < values.shape[0]) & (j >= 0) & (j < values.shape[1])
    out = np.zeros(len(i), dtype=bool)
    out[inside] = np.isfinite(values[i[inside], j[inside]])
    return out


def crop_to(data, placement: Placement, rows, cols, *, margin: float):
    """The part of a (possibly lazy, slide-wide) heatmap around level-0 points, and its placement."""
    H, W = data.shape[-2:]
    if len(rows) == 0:
        return np.asarray(data[:, :], dtype=np.float64), placement
    r0 = int(np.floor((np.min(rows) - margin - placement.origin_row) / placement.step_row)) - 1
    r1 = int(np.ceil((np.max(rows) + margin - placement.origin_row) / placement.step_row)) + 2
    c0 = int(np.floor((np.min(cols) - margin - placement.origin_col) / placement.step_col)) - 1
    c1 = int(np.ceil((np.max(cols) + margin - placement.origin_col) / placement.step_col)) + 2
    r0, r1, c0, c1 = max(r0, 0), min(r1, H), max(c0, 0), min(c1, W)
    if r1 <= r0 or c1 <= c0:
        raise XhistoError("the regions do not overlap the heatmap layer")
    values = np.asarray(data[r0:r1, c0:c1], dtype=np.float64)
    return values, Placement(placement.origin_row + r0 * placement.step_row,
                             placement.origin_col + c0 * placement.step_col,
                             placement.step_row, placement.step_col)


# ---- patches for the bias diagnostics -------------------------------------------------------

def patches_of(values, size: int, *, offset=(0, 0)):
    """Non-overlapping ``size`` x ``size`` patches that are finite and not all zero.

    ``offset`` is the grid index of ``values[0, 0]`` in the full layer, so patches stay aligned
    with multiples of ``size`` there (the model's patch grid). Returns the patches (K, s, s) and
    their top-left indices in ``values`` (K, 2).
    """
    skip_r, skip_c = (-int(offset[0])) % size, (-int(offset[1])) % size
    v = values[skip_r:, skip_c:]
    n_r, n_c = v.shape[0] // size, v.shape[1] // size
    if n_r == 0 or n_c == 0:
        raise XhistoError(f"the explained area ({values.shape[0]} x {values.shape[1]} heatmap px) "
                          f"holds no whole {size} px patch: lower the model patch side")
    p = v[:n_r * size, :n_c * size].reshape(n_r, size, n_c, size).swapaxes(1, 2)
    p = p.reshape(-1, size, size)
    corners = np.stack(np.meshgrid(np.arange(n_r) * size + skip_r, np.arange(n_c) * size + skip_c,
                                   indexing="ij"), -1).reshape(-1, 2)
    keep = np.isfinite(p).all(axis=(1, 2)) & (np.abs(p).sum(axis=(1, 2)) > 0)
    if not keep.any():
        raise XhistoError("no complete patch with relevance: lower the model patch side")
    return p[keep], corners[keep]


def patch_classes(corners, size: int, placement: Placement, prob: HeatmapInput) -> np.ndarray:
    """Predicted class of each patch: the probability layer's value at the patch centre >= 0.5."""
    data, p_place = prob.data, prob.placement
    name = str(prob.meta.get("class_name") or prob.name)
    r, c = map_to_level0(corners[:, 0] + (size - 1) / 2, corners[:, 1] + (size - 1) / 2, placement)
    i, j = level0_to_map(r, c, p_place)
    i, j = np.floor(i + 0.5).astype(int), np.floor(j + 0.5).astype(int)
    ok = (i >= 0) & (i < data.shape[-2]) & (j >= 0) & (j < data.shape[-1])
    probs = np.full(len(corners), np.nan)
    if ok.any():
        block = np.asarray(data[i[ok].min():i[ok].max() + 1, j[ok].min():j[ok].max() + 1])
        probs[ok] = block[i[ok] - i[ok].min(), j[ok] - j[ok].min()]
    return np.where(np.isnan(probs), "unknown", np.where(probs >= 0.5, name, f"not {name}"))
