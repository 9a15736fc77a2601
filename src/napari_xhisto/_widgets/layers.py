"""Heatmap and probability layers placed exactly on a slide, and the helpers around them.

Everything here is reusable by other widgets: layer data tuples with provenance, symmetric
contrast limits, a slide-wide sparse canvas that keeps separate clicks comparable, the grey-scale
H&E toggle, a colour legend image, and conversions between napari world µm and level-0 pixels.
Only the last section touches a viewer; the rest is plain numpy and testable without a display.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from ..geometry import Placement, Region, split_index_2d, squeeze_2d

HEATMAP_COLORMAP = "bwr"  # red = evidence for the class, blue = against (seed 000)
DISPLAY_PERCENTILE = 99.5  # contrast limits of a new heatmap layer: +-this percentile of |R|
PROBABILITY_COLORMAP = "magma"
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
                           opacity: float = 0.6) -> tuple:
    """A ``LayerData`` tuple for one class of a probability map ``(H', W', n_classes)``."""
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim == 3:
        probs = probs[..., class_index]
    if probs.ndim != 2:
        raise ValueError(f"a probability map is (H, W) or (H, W, n_classes), got {probs.shape}")
    meta = heatmap_metadata(kind="probability", placement=placement, mpp=mpp,
                            provenance=provenance, slide_path=slide_path,
                            class_name=str(list(class_names)[class_index]),
                            class_names=[str(c) for c in class_names])
    kwargs = {"name": name, **placement.layer_transform(mpp), "units": UNITS,
              "colormap": PROBABILITY_COLORMAP,
              "contrast_limits": (0.0, 1.0), "opacity": float(opacity),
              "blending": "translucent", "interpolation2d": "nearest",
              "metadata": {"xhisto": meta}}
    return (probs, kwargs, "image")


def heatmap_colormap(name: str = HEATMAP_COLORMAP):
    """``name`` (diverging) with opacity rising from 0 at the centre to 1 at both ends.

    Near-zero relevance then shows the (grey) H&E underneath unchanged instead of a white veil,
    as in seed 000's figures; returned as a napari ``Colormap`` named ``"xhisto-" + name`` (so
    napari's own ``name`` stays as it is).
    """
    from napari.utils.colormaps import Colormap, ensure_colormap

    base = ensure_colormap(name)
    x = np.linspace(0.0, 1.0, 65)
    colors = base.map(x).copy()
    colors[:, 3] = np.clip(np.abs(x - 0.5) * 2 / 0.35, 0.0, 1.0)  # full opacity from |v| = 35 %
    return Colormap(colors=colors, controls=x, name=f"xhisto-{name}", display_name=f"{name} (clear centre)")


# ---- a slide-wide canvas per method ---------------------------------------------------------

class SparseCanvas:
    """Heatmaps of separate clicks pasted on one slide-wide grid, stored tile by tile.

    The grid has ``step`` level-0 pixels per canvas pixel (the heatmaps' resolution), so memory
    grows with the explained area only. Raw values are kept; the canvas shows them divided by
    the largest ``|value|`` over everything pasted so far (seed 000: normalise by the global
    maximum over all computed heatmaps, so tiles stay comparable). Later pastes overwrite
    earlier ones where they overlap.

    ``levels()`` gives a multiscale list of lazy array-likes for a napari image layer.
    """

    def __init__(self, slide_shape: tuple[int, int], *, step: float = 1.0, tile: int = 512):
        self.step = float(step)
        self.tile = int(tile)
        self.shape = (max(1, math.ceil(slide_shape[0] / self.step)),
                      max(1, math.ceil(slide_shape[1] / self.step)))
        self._tiles: dict[tuple[int, int], np.ndarray] = {}
        self.scale_value = 0.0  # largest |raw| pasted so far
        self.display_peak = 0.0  # largest display limit (raw) of the pastes, set by the widget
        self.pastes: list[dict] = []  # placement + provenance of every paste, in order

    @property
    def placement(self) -> Placement:
        return Placement(0.0, 0.0, self.step, self.step)

    def offset_of(self, placement: Placement) -> tuple[int, int]:
        """Canvas pixel of ``placement``'s origin; ``ValueError`` when the grids differ."""
        if not (math.isclose(placement.step_row, self.step) and math.isclose(placement.step_col, self.step)):
            raise ValueError(f"heatmap step {placement.step_row} differs from the canvas step {self.step}")
        r, c = round(placement.origin_row / self.step), round(placement.origin_col / self.step)
        # within half a level-0 pixel of the grid (corners rounded to whole pixels)
        if (abs(placement.origin_row - r * self.step) > 0.5 + 1e-6
                or abs(placement.origin_col - c * self.step) > 0.5 + 1e-6):
            raise ValueError(f"heatmap origin ({placement.origin_row}, {placement.origin_col}) is not on "
                             f"the canvas grid (multiples of {self.step} px)")
        return int(round(r)), int(round(c))

    def paste(self, values, placement: Placement, *, provenance: dict | None = None,
              peak: float | None = None) -> None:
        """Write ``values`` (raw, unnormalised) where ``placement`` puts them.

        ``peak`` is the largest |relevance| behind them (e.g. over the patch maps before
        stitching); default the largest |value| pasted.
        """
        values = np.asarray(values, dtype=np.float32)
        r0, c0 = self.offset_of(placement)
        # cut to the canvas
        top, left = max(r0, 0), max(c0, 0)
        bottom = min(r0 + values.shape[0], self.shape[0])
        right = min(c0 + values.shape[1], self.shape[1])
        if bottom <= top or right <= left:
            return
        values = values[top - r0:bottom - r0, left - c0:right - c0]
        t = self.tile
        for tr in range(top // t, (bottom - 1) // t + 1):
            for tc in range(left // t, (right - 1) // t + 1):
                tile = self._tiles.get((tr, tc))
                if tile is None:
                    tile = self._tiles[(tr, tc)] = np.zeros((t, t), np.float32)
                ar0, ac0 = max(top, tr * t), max(left, tc * t)
                ar1, ac1 = min(bottom, (tr + 1) * t), min(right, (tc + 1) * t)
                tile[ar0 - tr * t:ar1 - tr * t, ac0 - tc * t:ac1 - tc * t] = \
                    values[ar0 - top:ar1 - top, ac0 - left:ac1 - left]
        if peak is None:
            finite = values[np.isfinite(values)]
            peak = float(np.abs(finite).max()) if finite.size else 0.0
        self.scale_value = max(self.scale_value, float(peak))
        self.pastes.append({"placement": placement.to_dict(), "provenance": dict(provenance or {})})

    def read(self, rows: slice, cols: slice, *, normalised: bool = True) -> np.ndarray:
        """Canvas pixels ``[rows, cols]`` (zero where nothing was pasted)."""
        r0, r1, _ = rows.indices(self.shape[0])
        c0, c1, _ = cols.indices(self.shape[1])
        out = np.zeros((max(r1 - r0, 0), max(c1 - c0, 0)), np.float32)
        t = self.tile
        for (tr, tc), tile in self._tiles.items():
            ar0, ac0 = max(r0, tr * t), max(c0, tc * t)
            ar1, ac1 = min(r1, (tr + 1) * t), min(c1, (tc + 1) * t)
            if ar1 > ar0 and ac1 > ac0:
                out[ar0 - r0:ar1 - r0, ac0 - c0:ac1 - c0] = \
                    tile[ar0 - tr * t:ar1 - tr * t, ac0 - tc * t:ac1 - tc * t]
        if normalised and self.scale_value > 0:
            out /= self.scale_value
        return out

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self._tiles.values())

    def levels(self, *, coarsest: int = 1024) -> list:
        """Lazy views ``[level0, level1, ...]``, each half the previous, down to ``coarsest`` px."""
        out = [_CanvasLevel(self, 1)]
        f = 1
        while max(self.shape) / f > coarsest:
            f *= 2
            out.append(_CanvasLevel(self, f))
        return out


class _CanvasLevel:
    """A read-only array-like view of a :class:`SparseCanvas` subsampled by ``factor``."""

    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, canvas: SparseCanvas, factor: int):
        self.canvas, self.factor = canvas, int(factor)
        self.shape = tuple(math.ceil(s / self.factor) for s in canvas.shape)

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        f = self.factor
        (r0, r1, rs), (c0, c1, cs), squeeze = split_index_2d(key, self.shape)
        # nearest-neighbour subsampling keeps signs and extremes of the full-resolution map
        block = self.canvas.read(slice(r0 * f, r1 * f), slice(c0 * f, c1 * f))[::f * rs, ::f * cs]
        block = block[:max(0, len(range(r0, r1, rs))), :max(0, len(range(c0, c1, cs)))]
        return squeeze_2d(block, squeeze)

    def __array__(self, dtype=None, copy=None):
        arr = self[:, :]
        return arr if dtype is None else arr.astype(dtype)


# ---- grey-scale H&E and legend --------------------------------------------------------------

def luminance(level):
    """Grey-scale (uint8) version of an RGB(A) level ``(H, W, 3|4)``; lazy for dask/array-likes."""
    if isinstance(level, np.ndarray):
        rgb = level[..., :3].astype(np.float32)
        return np.clip(rgb @ np.asarray(LUMA, np.float32) + 0.5, 0, 255).astype(np.uint8)
    import dask.array as da

    arr = level if isinstance(level, da.Array) else da.from_array(level, chunks="auto")
    grey = arr[..., 0] * LUMA[0] + arr[..., 1] * LUMA[1] + arr[..., 2] * LUMA[2] + 0.5
    return da.clip(grey, 0, 255).astype(np.uint8)


def legend_rgba(vmin: float, vmax: float, *, colormap: str = HEATMAP_COLORMAP, label: str = "",
                width: int = 260, height: int = 70) -> np.ndarray:
    """A horizontal colour bar with its value scale, as an ``(height, width, 4)`` uint8 image."""
    return _legend(float(vmin), float(vmax), colormap, label, int(width), int(height)).copy()


_LEGEND_LOCK = threading.Lock()


@lru_cache(maxsize=32)
def _legend(vmin, vmax, colormap, label, width, height) -> np.ndarray:
    # 20-50 ms per figure: cached; widgets draw it in a worker thread, one at a time (the lock)
    # since matplotlib's font cache and colormap registry are shared
    with _LEGEND_LOCK:
        return _draw_legend(vmin, vmax, colormap, label, width, height)


def _draw_legend(vmin, vmax, colormap, label, width, height) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes([0.05, 0.55, 0.9, 0.3])
    mappable = ScalarMappable(norm=Normalize(vmin=vmin, vmax=vmax), cmap=colormap)
    bar = fig.colorbar(mappable, cax=ax, orientation="horizontal")
    bar.ax.tick_params(labelsize=7)
    ticks = [vmin, (vmin + vmax) / 2, vmax]
    bar.set_ticks(ticks)
    bar.set_ticklabels([f"{t:.3g}" for t in ticks])
    if label:
        ax.set_title(label, fontsize=7, pad=2)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


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

def set_greyscale(viewer, slide_layer, on: bool):
    """Show ``slide_layer`` in grey (a lazy luminance layer just above it) or restore its colours.

    Returns the grey layer when switched on, ``None`` when off.
    """
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
    grey = viewer.add_image(levels, multiscale=slide_layer.multiscale, name=grey_name,
                            scale=slide_layer.scale, translate=slide_layer.translate,
                            units=slide_layer.units,
                            colormap="gray", contrast_limits=(0, 255),
                            metadata={"xhisto": {"kind": "greyscale", "of": slide_layer.name}})
    # right above the colour slide, under the heatmaps
    viewer.layers.move(viewer.layers.index(grey), viewer.layers.index(slide_layer) + 1)
    slide_layer.visible = False
    return grey
