"""Where was explained: a thin outline around every explained region (napari, no Qt).

One ``Vectors`` layer per slide ("explained areas") holds four line segments per region: every
click pasted on a canvas, every single-click heatmap and every probability map of a view. It is
rebuilt from the heatmap layers in the viewer, so deleting a heatmap removes its outlines. A
``Vectors`` layer (not ``Shapes``) so that it is never taken for a region annotation; it sits
just below the annotation layers, above the heatmaps. Its line width follows the zoom so the
outline stays about ``SCREEN_PX`` screen pixels wide.
"""

from __future__ import annotations

import numpy as np

from .. import layers as L

KIND = "explained areas"
NAME = "explained areas"
COLOUR = "#ffd21f"  # yellow: visible on grey H&E, on red and on blue
SCREEN_PX = 1.5

def explained_rectangles(layers, slide_path=None) -> list[tuple[float, float, float, float]]:
    """Level-0 ``(row, col, height, width)`` of every region explained on ``slide_path``."""
    rects = []
    for layer in layers:
        meta = layer.metadata.get("xhisto", {})
        if meta.get("kind") not in ("heatmap", "probability"):
            continue
        if slide_path is not None and meta.get("slide_path") not in (None, str(slide_path)):
            continue
        if meta.get("canvas"):
            rects += [tuple(p["extent"]) for p in meta.get("pastes", []) if "extent" in p]
            continue
        region = meta.get("provenance", {}).get("region")
        if region is None:  # a whole-slide map: nothing to outline
            continue
        rects.append(tuple(float(v) for v in region))
    seen, out = set(), []
    for r in rects:
        key = tuple(round(v, 3) for v in r)
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out


def rectangle_vectors(rects, *, scale, translate) -> np.ndarray:
    """``(4 N, 2, 2)`` napari vectors (start, projection) in world units tracing ``rects``.

    Level-0 pixel edge ``e`` (pixel ``i`` spans ``[i, i + 1)``) is at world
    ``(e - 0.5) * scale + translate`` (napari puts pixel centres at ``translate + i * scale``).
    """
    s = np.asarray(scale, np.float64)[-2:]
    t = np.asarray(translate, np.float64)[-2:]
    out = np.zeros((4 * len(rects), 2, 2), np.float64)
    for k, (r, c, h, w) in enumerate(rects):
        top_left = (np.array([r, c]) - 0.5) * s + t
        size = np.array([h, w]) * s
        corners = [top_left, top_left + (0, size[1]), top_left + size, top_left + (size[0], 0)]
        for j in range(4):
            out[4 * k + j, 0] = corners[j]
            out[4 * k + j, 1] = corners[(j + 1) % 4] - corners[j]
    return out


def find(viewer, slide_layer):
    for layer in viewer.layers:
        meta = layer.metadata.get("xhisto", {})
        if meta.get("kind") == KIND and meta.get("of") == slide_layer.name:
            return layer
    return None


def _width(viewer) -> float:
    return SCREEN_PX / max(float(viewer.scene.camera.zoom), 1e-9)


def _follow_zoom(viewer) -> None:
    if not L.first_time(viewer.layers, "outline width follows zoom"):
        return

    def on_zoom(event=None):
        width = _width(viewer)
        for layer in viewer.layers:
            if layer.metadata.get("xhisto", {}).get("kind") == KIND \
                    and not np.isclose(layer.edge_width, width, rtol=0.05):
                layer.edge_width = width

    viewer.scene.camera.events.zoom.connect(on_zoom)


def _make(viewer, slide_layer, data):
    from napari.layers import Vectors

    active = viewer.layers.selection.active
    layer = Vectors(data, name=NAME, edge_color=COLOUR, edge_width=_width(viewer),
                    vector_style="line", units=slide_layer.units,
                    metadata={"xhisto": {"kind": KIND, "of": slide_layer.name}})
    L.insert_below_annotations(viewer, layer)
    if active is not None:  # the layer selected before stays selected
        viewer.layers.selection.active = active
    _follow_zoom(viewer)
    return layer


def sync_outlines(viewer, slide_layer, *, keep_empty: bool = False):
    """Make the outline layer of ``slide_layer`` match the explained regions; return it or None.

    Kept just below the lowest annotation layer (above every heatmap). With nothing explained
    on this slide it is removed, unless ``keep_empty`` (explain mode makes it ahead of the
    first click: adding a layer stalls the viewer, updating one does not).
    """
    path = slide_layer.metadata.get("xhisto", {}).get("slide_path")
    rects = explained_rectangles(viewer.layers, path)
    layer = find(viewer, slide_layer)
    if not rects and not keep_empty:
        if layer is not None:
            viewer.layers.remove(layer)
        return None
    data = rectangle_vectors(rects, scale=slide_layer.scale, translate=slide_layer.translate)
    if layer is None:
        return _make(viewer, slide_layer, data)
    if len(layer.data) or len(data):
        layer.data = data
    floor = L.annotation_floor(viewer.layers)
    here = viewer.layers.index(layer)
    if here != floor - 1:  # a heatmap (or an annotation below it) was inserted meanwhile
        viewer.layers.move(here, floor)  # before the lowest annotation (pre-move indices)
    return layer
