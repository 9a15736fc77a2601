"""npe2 writers: points layers -> QuPath GeoJSON or CSV, shapes layers -> QuPath GeoJSON.

Layer data are napari data coordinates; ``data * scale + translate`` is the world position in
µm (or pixels when the slide has no µm/px). Level-0 pixels are ``(world - slide translate) /
mpp`` where mpp comes from the layer's ``metadata["xhisto"]["mpp"]`` (our Annotate layers carry
it), else from the slide layer of the current viewer, else 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .annotations import (
    AnnotationSet,
    CellPoints,
    points_data_to_cells,
    qupath_origin,
    shapes_data_to_regions,
    write_annotations,
)
from .annotations.model import concat_annotations
from .annotations.objects import objects_from_json

UNCLASSIFIED = "unclassified"


def find_slide_layer(viewer):
    """The slide image layer of ``viewer`` (``metadata["xhisto"]`` without a ``kind``), or None."""
    from napari.layers import Image

    for layer in viewer.layers:
        info = layer.metadata.get("xhisto") if isinstance(layer, Image) else None
        if isinstance(info, dict) and "kind" not in info:
            return layer
    return None


def _xhisto(meta: dict) -> dict:
    return (meta.get("metadata") or {}).get("xhisto") or {}


def _slide_frame(meta: dict) -> tuple[float, np.ndarray, tuple[float, float]]:
    """(mpp, slide translate, QuPath origin) turning this layer's world coordinates into the
    level-0 px of the file."""
    info = _xhisto(meta)
    if info.get("mpp"):
        origin = tuple(info.get("qupath_origin", (0.0, 0.0)))
        return (float(info["mpp"]), np.asarray(info.get("slide_translate", (0.0, 0.0)), dtype=float),
                origin)
    try:
        import napari

        viewer = napari.current_viewer()
        layer = find_slide_layer(viewer) if viewer is not None else None
    except Exception:  # no viewer (headless save): fall back to pixels
        layer = None
    if layer is not None:
        origin = qupath_origin(layer.metadata["xhisto"].get("properties"))
        return float(layer.scale[-1]), np.asarray(layer.translate[-2:], dtype=float), origin
    return 1.0, np.zeros(2), (0.0, 0.0)


def _to_slide_um(coords, meta: dict, slide_translate) -> np.ndarray:
    """Layer data (N, D) -> world (N, 2) µm relative to the slide origin."""
    coords = np.asarray(coords, dtype=np.float64)
    coords = coords.reshape(-1, coords.shape[-1] if coords.ndim else 2)[:, -2:]
    scale = np.asarray(meta.get("scale", (1.0, 1.0)), dtype=float)[-2:]
    translate = np.asarray(meta.get("translate", (0.0, 0.0)), dtype=float)[-2:]
    return coords * scale + translate - slide_translate


def _to_level0(coords, meta: dict, mpp: float, slide_translate) -> np.ndarray:
    """Layer data (N, D) -> level-0 px (N, 2). Layers in the slide's frame (the Annotate
    widget's: the slide's scale and translate) hold level-0 px already: taken as they are, so
    untouched positions are written back to the last digit."""
    scale = np.asarray(meta.get("scale", (1.0, 1.0)), dtype=float)[-2:]
    translate = np.asarray(meta.get("translate", (0.0, 0.0)), dtype=float)[-2:]
    if np.all(scale == mpp) and np.array_equal(translate, np.asarray(slide_translate, float)):
        coords = np.asarray(coords, dtype=np.float64)
        return coords.reshape(-1, coords.shape[-1] if coords.ndim else 2)[:, -2:]
    return _to_slide_um(coords, meta, slide_translate) / mpp


def _colors_of(meta: dict, classes: np.ndarray, color_key: str) -> dict:
    colors = {k: tuple(int(c) for c in v) for k, v in (_xhisto(meta).get("colors") or {}).items()}
    face = meta.get(color_key)
    face = None if face is None else np.asarray(face)
    if face is not None and face.ndim == 2 and len(face) == len(classes):
        for name in np.unique(classes):
            if name not in colors:
                first = int(np.flatnonzero(classes == name)[0])
                colors[str(name)] = tuple(int(round(v * 255)) for v in face[first][:3])
    return colors


def _records(meta: dict) -> dict:
    """What an imported file said beyond positions and classes (QuPath measurements, locks,
    MultiPoint grouping, outlines ...), carried by the Annotate widget's layers."""
    info = _xhisto(meta)
    return {"objects": objects_from_json(info.get("objects") or {}),
            "kept": list(info.get("kept") or ())}


def points_to_annotations(data, meta: dict) -> AnnotationSet:
    """The cells of one points layer (data + layer state dict) in level-0 px."""
    mpp, slide_translate, _ = _slide_frame(meta)
    px = _to_level0(data, meta, mpp, slide_translate)
    default = _xhisto(meta).get("class") or UNCLASSIFIED
    cells = points_data_to_cells(px, meta.get("features"), 1.0, default_class=default)
    return AnnotationSet(cells, [], _colors_of(meta, cells.classes, "face_color"), **_records(meta))


def shapes_to_annotations(data, meta: dict) -> AnnotationSet:
    """The regions of one shapes layer (data + layer state dict) in level-0 px."""
    mpp, slide_translate, _ = _slide_frame(meta)
    info = _xhisto(meta)
    px = [_to_level0(d, meta, mpp, slide_translate) for d in data]
    holes = {
        rid: [_to_level0(h, meta, mpp, slide_translate) for h in rings]
        for rid, rings in (info.get("holes") or {}).items()
    }
    regions = shapes_data_to_regions(
        px, meta.get("shape_type", "polygon"), meta.get("features"), 1.0, holes=holes,
        default_class=info.get("class") or UNCLASSIFIED,
    )
    classes = np.array([r.cls for r in regions], dtype=str)
    return AnnotationSet(CellPoints.empty(), regions, _colors_of(meta, classes, "face_color"),
                         **_records(meta))


def write_points(path: str, data, meta: dict) -> list[str]:
    """npe2 single-layer writer: a points layer as QuPath GeoJSON (``.geojson``) or CSV."""
    origin = _slide_frame(meta)[2]
    return [str(write_annotations(path, points_to_annotations(data, meta), origin=origin))]


def write_shapes(path: str, data, meta: dict) -> list[str]:
    """npe2 single-layer writer: a shapes layer as QuPath GeoJSON annotation polygons."""
    if Path(path).suffix.lower() not in (".geojson", ".json"):
        path = str(Path(path).with_suffix(".geojson"))
    origin = _slide_frame(meta)[2]
    return [str(write_annotations(path, shapes_to_annotations(data, meta), origin=origin))]


def write_annotation_layers(path: str, layer_data: list[tuple]) -> list[str]:
    """npe2 multi-layer writer: points and shapes layers together in one QuPath GeoJSON."""
    parts = []
    for data, meta, layer_type in layer_data:
        if layer_type == "points":
            parts.append(points_to_annotations(data, meta))
        elif layer_type == "shapes":
            parts.append(shapes_to_annotations(data, meta))
    combined = concat_annotations(parts)
    # every layer of one import carries the same kept features: write each once
    unique = {json.dumps(f, sort_keys=True, default=str): f for f in combined.kept}
    combined.kept[:] = list(unique.values())
    if Path(path).suffix.lower() not in (".geojson", ".json"):
        path = str(Path(path).with_suffix(".geojson"))
    origin = _slide_frame(layer_data[0][1])[2] if layer_data else (0.0, 0.0)
    return [str(write_annotations(path, combined, origin=origin))]
