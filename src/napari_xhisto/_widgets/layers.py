"""Heatmap and probability layers placed exactly on a slide, and the helpers around them.

Everything here is reusable by other widgets: layer data tuples with provenance, symmetric
contrast limits, the display colormaps, the grey-scale H&E, conversions between napari world µm
and level-0 pixels, and (last section, napari objects but no Qt) where new layers go in the
layer list (below the annotations), the slide's units and the scale bar.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence

import numpy as np

from ..colormaps import (
    PROBABILITY_NAME,
    heatmap_colormap_spec,
    probability_colormap_spec,
)
from ..geometry import Placement, Region
from .sparse_canvas import SparseCanvas, _CanvasLevel  # noqa: F401 - kept import path

HEATMAP_COLORMAP = "bwr"  # red = evidence for the class, blue = against (seed 000)
DISPLAY_PERCENTILE = 99.5  # contrast limits of a new heatmap layer: +-this percentile of |R|
PROBABILITY_COLORMAP = PROBABILITY_NAME
GREY_SUFFIX = " (grey)"
UNITS = ("µm", "µm")
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as the grey-scale H&E of seed 000


# ---- values and layer data ---------------------------------------------------------------------

def symmetric_limits(values, *, percentile: float = 100.0, floor: float = 1e-12) -> tuple[float, float]:
    """Contrast limits ``(-m, m)``, ``m`` the ``percentile`` of ``|value|`` (finite values only).

    Zero stays at the colour map's centre. ``percentile < 100`` is for display only (LRP maps
    are sparse: a few peaks would otherwise wash out the rest). An all-zero (or all-NaN) map
    gets ``(-1, 1)`` so a layer can still be drawn.
    """
    arr = np.asarray(values, dtype=np.float64)
    finite = np.abs(arr[np.isfinite(arr)])
    m = float(np.percentile(finite, percentile)) if finite.size else 0.0
    if m <= floor:
        m = 1.0
    return (-m, m)


def heatmap_metadata(*, kind: str, placement: Placement, mpp: float, provenance: dict,
                     slide_path=None, **extra) -> dict:
    """The ``layer.metadata["xhisto"]`` dict other widgets and exports rely on."""
    if kind not in ("heatmap", "probability"):
        raise ValueError(f"kind must be 'heatmap' or 'probability', got {kind!r}")
    meta = {"kind": kind, "placement": placement.to_dict(), "mpp": float(mpp),
            "provenance": dict(provenance),
            "slide_path": None if slide_path is None else str(slide_path)}
    meta.update(extra)
    return meta


def heatmap_layer_data(values, placement: Placement, *, mpp: float, provenance: dict,
                       name: str, slide_path=None, opacity: float = 0.6,
                       display_limit: float | None = None) -> tuple:
    """A napari ``LayerData`` tuple for a signed attribution map over a slide of ``mpp`` µm/px.

    Parameters
    ----------
    values : array (H, W)
        The heatmap; stored as float32.
    placement : Placement
        Where ``values`` lies on level 0 (``Heatmap.placement``).
    mpp : float
        µm per level-0 pixel of the slide layer (its ``scale``).
    provenance : dict
        Model, method, parameters, region, normalisation (``Heatmap.provenance``).
    name : str
        Layer name.
    display_limit : float, optional
        ``symmetric_limits(values, percentile=DISPLAY_PERCENTILE)[1]`` when the caller has it
        already (computed off the GUI thread); else computed here.
    """
    data = np.asarray(values, dtype=np.float32)
    if data.ndim != 2:
        raise ValueError(f"a heatmap is a 2-D array, got shape {data.shape}")
    kwargs = {
        "name": name,
        **placement.layer_transform(mpp),
        "units": UNITS,
        "colormap": heatmap_colormap(),
        "contrast_limits": (symmetric_limits(data, percentile=DISPLAY_PERCENTILE)
                            if display_limit is None else (-display_limit, display_limit)),
        "opacity": float(opacity),
        "blending": "translucent",
        "interpolation2d": "nearest",
        "metadata": {"xhisto": heatmap_metadata(kind="heatmap", placement=placement, mpp=mpp,
                                                provenance=provenance, slide_path=slide_path)},
    }
    return (data, kwargs, "image")


def probability_layer_data(probs, placement: Placement, *, class_index: int, class_names,
                           mpp: float, provenance: dict, name: str, slide_path=None,
                           opacity: float = 0.8, tissue_mask=None) -> tuple:
    """A ``LayerData`` tuple for one class of a probability map ``(H', W', n_classes)``.

    Cells outside ``tissue_mask`` (no patch was run: glass, background) are NaN, which napari
    draws transparent; low probabilities are transparent through the colormap
    (:func:`probability_colormap`), so the map never hides the tissue it does not flag.
    """
    probs = np.array(probs, dtype=np.float32)
    if probs.ndim == 3:
        probs = probs[..., class_index]
    if probs.ndim != 2:
        raise ValueError(f"a probability map is (H, W) or (H, W, n_classes), got {probs.shape}")
    if tissue_mask is not None:
        mask = np.asarray(tissue_mask, bool)
        if mask.shape != probs.shape:
            raise ValueError(f"tissue mask {mask.shape} does not match the map {probs.shape}")
        probs[~mask] = np.nan
    meta = heatmap_metadata(kind="probability", placement=placement, mpp=mpp,
                            provenance=provenance, slide_path=slide_path,
                            class_name=str(list(class_names)[class_index]),
                            class_names=[str(c) for c in class_names])
    kwargs = {"name": name, **placement.layer_transform(mpp), "units": UNITS,
              "colormap": probability_colormap(),
              "contrast_limits": (0.0, 1.0), "opacity": float(opacity),
              "blending": "translucent", "interpolation2d": "nearest",
              "metadata": {"xhisto": meta}}
    return (probs, kwargs, "image")


def heatmap_colormap():
    """The relevance colormap: ``bwr`` with opacity rising from 0 at the centre to 1 at both ends.

    Near-zero relevance then shows the (grey) H&E underneath unchanged instead of a white veil,
    as in seed 000's figures; a napari ``Colormap`` named ``"xhisto-bwr"`` (see
    :mod:`napari_xhisto.colormaps`, shared with heatmap files opened again).
    """
    from napari.utils.colormaps import Colormap

    return Colormap(**heatmap_colormap_spec())


def probability_colormap():
    """Probability colormap (napari ``Colormap``): clear below p = 0.1, yellow to dark red."""
    from napari.utils.colormaps import Colormap

    return Colormap(**probability_colormap_spec())


def colormap_for(kind: str):
    return probability_colormap() if kind == "probability" else heatmap_colormap()


# ---- grey-scale H&E ------------------------------------------------------------------------

def luminance(level):
    """Grey-scale (uint8) version of an RGB(A) level ``(H, W, 3|4)``; lazy for dask/array-likes."""
    if isinstance(level, np.ndarray):
        rgb = level[..., :3].astype(np.float32)
        return np.clip(rgb @ np.asarray(LUMA, np.float32) + 0.5, 0, 255).astype(np.uint8)
    import dask.array as da

    arr = level if isinstance(level, da.Array) else da.from_array(level, chunks="auto")
    grey = arr[..., 0] * LUMA[0] + arr[..., 1] * LUMA[1] + arr[..., 2] * LUMA[2] + 0.5
    return da.clip(grey, 0, 255).astype(np.uint8)


# ---- world µm <-> level-0 pixels ------------------------------------------------------------

def world_to_level0(position, *, scale: Sequence[float], translate: Sequence[float]) -> tuple[float, float]:
    """Level-0 pixel coordinates (continuous, pixel ``i`` spans ``[i, i+1)``) of a world point.

    napari puts pixel centres at ``translate + i * scale``, so the pixel-edge coordinate of a
    world point ``p`` is ``(p - translate) / scale + 0.5``.
    """
    p = np.asarray(position, dtype=np.float64)[-2:]
    s = np.asarray(scale, dtype=np.float64)[-2:]
    t = np.asarray(translate, dtype=np.float64)[-2:]
    rc = (p - t) / s + 0.5
    return float(rc[0]), float(rc[1])


def region_centred_at(row: float, col: float, height: int, width: int, *,
                      slide_shape: tuple[int, int], snap: float = 1.0) -> Region:
    """A ``height`` x ``width`` region centred on ``(row, col)``, kept inside the slide.

    The corner is rounded to a multiple of ``snap`` level-0 pixels (the model's grid) so
    separate clicks land on one canvas. A region larger than the slide is cut to it.
    """
    snap = max(float(snap), 1.0)
    h, w = int(min(height, slide_shape[0])), int(min(width, slide_shape[1]))

    def corner(centre, size, limit):
        k = round((centre - size / 2) / snap)
        k = min(max(k, 0), math.floor((limit - size) / snap))
        return int(round(k * snap))

    return Region(corner(row, h, slide_shape[0]), corner(col, w, slide_shape[1]), h, w)


def view_region(center, zoom: float, canvas_size: Sequence[int], *, scale, translate,
                slide_shape: tuple[int, int]) -> Region:
    """The level-0 region the viewer shows: camera ``center`` (world), ``zoom`` (screen px per
    world unit) and canvas ``(height, width)`` in screen px; cut to the slide."""
    half = np.asarray(canvas_size, dtype=np.float64)[-2:] / (2 * float(zoom))
    c = np.asarray(center, dtype=np.float64)[-2:]
    r0, c0 = world_to_level0(c - half, scale=scale, translate=translate)
    r1, c1 = world_to_level0(c + half, scale=scale, translate=translate)
    r0, c0 = math.floor(r0 + 1e-9), math.floor(c0 + 1e-9)
    r1, c1 = math.ceil(r1 - 1e-9), math.ceil(c1 - 1e-9)
    return Region(r0, c0, max(r1 - r0, 1), max(c1 - c0, 1)).clip(*slide_shape)


# ---- viewer-side helpers (napari objects, no Qt) ---------------------------------------------

def is_annotation_layer(layer) -> bool:
    """Points and Shapes layers: cells and regions someone drew or imported (and ground truth)."""
    from napari.layers import Points, Shapes

    return isinstance(layer, Points | Shapes)


def annotation_floor(layers) -> int:
    """Index (0 = bottom) of the lowest annotation layer in ``layers``, or ``len(layers)``."""
    for k, layer in enumerate(layers):
        if is_annotation_layer(layer):
            return k
    return len(layers)


def insert_below_annotations(viewer, layer):
    """Insert ``layer`` just below the lowest Points/Shapes layer (on top when there is none).

    Heatmaps, probability maps and canvases then never hide the cells and regions a user drew,
    as in QuPath where annotations stay above image overlays. Returns ``layer``, selected.
    """
    viewer.layers.insert(annotation_floor(viewer.layers), layer)
    viewer.layers.selection.active = layer
    return layer


def add_below_annotations(viewer, data, kwargs: dict, kind: str = "image"):
    """Make a layer from napari ``LayerData`` parts and :func:`insert_below_annotations` it."""
    from napari.layers import Layer

    return insert_below_annotations(viewer, Layer.create(data, dict(kwargs), kind))


def units_of(layer) -> tuple[str, ...]:
    """A layer's units as strings (``("µm", "µm")`` for a slide of known µm/px)."""
    return tuple(str(getattr(u, "units", u)) if not isinstance(u, str) else u
                 for u in (tuple(layer.units) if layer is not None else UNITS))


def is_slide_layer(layer) -> bool:
    meta = layer.metadata
    return bool(getattr(layer, "rgb", False)) and (
        "xhisto_slide" in meta or "slide_path" in meta.get("xhisto", {}))


def show_scale_bar(viewer) -> None:
    """Switch napari's scale bar on (its unit follows the layers' units: µm on a slide)."""
    bar = viewer.canvas.overlays.scale_bar
    if not bar.visible:
        bar.visible = True


_DONE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def first_time(obj, tag: str) -> bool:
    """True the first time it is asked about ``(obj, tag)``; widgets get a napari proxy of the
    viewer, so the object behind it is the key (no attribute is set on napari's objects)."""
    obj = getattr(obj, "__wrapped__", obj)
    tags = _DONE.setdefault(obj, set())
    if tag in tags:
        return False
    tags.add(tag)
    return True


def watch_for_slides(viewer) -> None:
    """Switch the scale bar on now if a slide is open, and whenever one is added to ``viewer``.

    A reader cannot reach the viewer; the reader (through the current viewer), the sample data,
    the widgets and the demo call this instead (once per viewer; further calls do nothing).
    """
    if any(is_slide_layer(ly) for ly in viewer.layers):
        show_scale_bar(viewer)
    if not first_time(viewer.layers, "scale bar on slides"):
        return

    def on_inserted(event):
        if is_slide_layer(event.value):
            show_scale_bar(viewer)

    viewer.layers.events.inserted.connect(on_inserted)


def set_greyscale(viewer, slide_layer, on: bool):
    """Show ``slide_layer`` in grey (a lazy luminance layer just above it) or restore its colours.

    Returns the grey layer when switched on, ``None`` when off.
    """
    from napari.layers import Image

    grey_name = slide_layer.name + GREY_SUFFIX
    if not on:
        if grey_name in viewer.layers:
            viewer.layers.remove(grey_name)
        slide_layer.visible = True
        return None
    if grey_name in viewer.layers:
        return viewer.layers[grey_name]
    data = slide_layer.data
    levels = [luminance(level) for level in data] if slide_layer.multiscale else luminance(np.asarray(data))
    grey = Image(levels, multiscale=slide_layer.multiscale, name=grey_name,
                 scale=slide_layer.scale, translate=slide_layer.translate,
                 units=slide_layer.units, colormap="gray", contrast_limits=(0, 255),
                 metadata={"xhisto": {"kind": "greyscale", "of": slide_layer.name}})
    # right above the colour slide, under the heatmaps and annotations
    viewer.layers.insert(viewer.layers.index(slide_layer) + 1, grey)
    slide_layer.visible = False
    return grey
