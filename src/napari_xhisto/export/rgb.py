"""Colour-mapped RGB overlays as Aperio-style SVS files, for viewers that cannot apply colormaps.

Values go through a diverging colormap centred at zero with symmetric limits ``[-vmax, vmax]``,
optionally blended over the grey-scale slide. The file lies on the slide's level-0 pixel grid
(one RGB pixel per level-0 pixel): a full-slide canvas has the slide's dimensions, so it opens
in OpenSlide (and QuPath, ASAP ...) lined up with the slide; a region records its level-0
offset in the Aperio description (``XhistoOriginRow`` / ``XhistoOriginCol``, read by OpenSlide
as ``aperio.XhistoOriginRow`` ...). Written tile by tile, like the float heatmaps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from pathlib import Path

import numpy as np

from ..errors import XhistoError
from ..progress import run_to_end
from .tiled_writer import check_writable, iter_stream_pyramid, level_shapes

APERIO_HEADER = "Aperio Image Library v12.0.15"
_GREY = np.array([0.299, 0.587, 0.114], np.float32)


def colormap_lut(cmap: str = "bwr") -> np.ndarray:
    """The 256-entry RGB table (uint8) of a matplotlib colormap; index 127.5 is value zero."""
    from matplotlib import colormaps

    try:
        cm = colormaps[cmap]
    except KeyError:
        raise XhistoError(f"unknown colormap {cmap!r}; try 'bwr', 'RdBu_r', 'coolwarm' or 'seismic'") from None
    return np.round(cm(np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


def colorize(values: np.ndarray, *, vmax: float, cmap: str = "bwr",
             lut: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Map values to RGB with limits ``[-vmax, vmax]`` (zero in the middle of the colormap).

    Returns
    -------
    rgb : ndarray (..., 3) uint8
    finite : ndarray (...) bool
        Where the map has a value (NaN pixels get the colour of zero and ``False`` here).
    """
    if not vmax or not np.isfinite(vmax) or vmax <= 0:
        raise XhistoError(f"colour limits need a positive vmax, got {vmax!r}")
    lut = colormap_lut(cmap) if lut is None else lut
    values = np.asarray(values, np.float32)
    finite = np.isfinite(values)
    scaled = np.where(finite, values, 0.0) / np.float32(vmax)
    index = np.clip(np.rint((np.clip(scaled, -1, 1) + 1) * 127.5), 0, 255).astype(np.uint8)
    return lut[index], finite


def grey_scale(rgb: np.ndarray) -> np.ndarray:
    """Luminance of an RGB image, as a 3-channel uint8 grey image."""
    grey = np.asarray(rgb, np.float32)[..., :3] @ _GREY
    return np.repeat(np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def blend(rgb: np.ndarray, finite: np.ndarray, background: np.ndarray | None, alpha: float) -> np.ndarray:
    """``alpha`` x colour + (1 - alpha) x background where the map has values, background elsewhere.

    Without a background, colours are kept as they are and NaN pixels turn white.
    """
    if background is None:
        out = rgb.copy()
        out[~finite] = 255
        return out
    mixed = np.rint(alpha * rgb.astype(np.float32) + (1 - alpha) * background.astype(np.float32))
    return np.where(finite[..., None], mixed.astype(np.uint8), background)


def symmetric_limit(source, *, tile: int = 1024) -> float:
    """max |value| of a heatmap source, read tile by tile (1.0 for an all-NaN or all-zero map)."""
    values = getattr(source, "values", None)
    if isinstance(values, np.ndarray):
        m = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 0.0
    else:
        m = 0.0
        h, w = source.shape
        for r in range(0, h, tile):
            for c in range(0, w, tile):
                block = source.read(r, c, min(tile, h - r), min(tile, w - c))
                if np.isfinite(block).any():
                    m = max(m, float(np.nanmax(np.abs(block))))
    return m if m > 0 else 1.0


def _downsample2_rgb(block: np.ndarray) -> np.ndarray:
    """2x2 mean of an RGB block (rounded half up); odd edges average the pixels they have."""
    h, w = block.shape[:2]
    if h % 2 or w % 2:
        block = np.pad(block, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    # four strided views summed in uint16: several times faster than a mean over reshaped axes
    total = block[0::2, 0::2].astype(np.uint16)
    total += block[1::2, 0::2]
    total += block[0::2, 1::2]
    total += block[1::2, 1::2]
    return ((total + 2) // 4).astype(np.uint8)


def overlay_geometry(source, *, slide_shape=None, full_slide: bool = False):
    """Origin and size (level-0 px) of the RGB overlay of ``source``.

    A full-slide overlay starts at (0, 0) with the slide's size; a region overlay starts at the
    heatmap's (floored) level-0 origin and covers the heatmap's extent.
    """
    p = source.placement
    if full_slide:
        if slide_shape is None:
            raise XhistoError("a full-slide overlay needs the slide (its level-0 size)")
        return (0, 0), (int(slide_shape[0]), int(slide_shape[1]))
    r0, c0 = math.floor(p.origin_row), math.floor(p.origin_col)
    r1 = math.ceil(p.origin_row + source.shape[0] * p.step_row)
    c1 = math.ceil(p.origin_col + source.shape[1] * p.step_col)
    return (r0, c0), (r1 - r0, c1 - c0)


def overlay_tile_source(source, origin, *, vmax: float, cmap: str = "bwr", slide=None,
                        alpha: float = 0.6) -> Callable[[int, int, int, int], np.ndarray]:
    """``tile(row, col, h, w)`` -> RGB uint8 of the overlay whose pixel (0, 0) is level-0 ``origin``."""
    p = source.placement
    lut = colormap_lut(cmap)

    def tile(row, col, height, width):
        rows = origin[0] + row + np.arange(height) + 0.5  # level-0 pixel centres
        cols = origin[1] + col + np.arange(width) + 0.5
        ii = np.floor((rows - p.origin_row) / p.step_row).astype(np.int64)
        jj = np.floor((cols - p.origin_col) / p.step_col).astype(np.int64)
        window = source.read(int(ii[0]), int(jj[0]), int(ii[-1] - ii[0] + 1), int(jj[-1] - jj[0] + 1))
        values = window[np.ix_(ii - ii[0], jj - jj[0])]
        rgb, finite = colorize(values, vmax=vmax, lut=lut)
        background = None
        if slide is not None:
            background = grey_scale(slide.read_region(origin[0] + row, origin[1] + col, height, width))
        return blend(rgb, finite, background, alpha)

    return tile


def _description(width, height, tile, *, mpp, extra: dict, level_size=None, compression="jpeg") -> str:
    codec = "JPEG/RGB Q=90" if compression == "jpeg" else f"{compression.upper()}/RGB"
    text = f"{APERIO_HEADER}\r\n{width}x{height} [0,0 {width}x{height}] ({tile}x{tile})"
    if level_size is not None:
        text += f" -> {level_size[1]}x{level_size[0]}"
    text += f" {codec}"
    if level_size is None:
        if mpp:
            text += f"|AppMag = {10.0 / mpp:g}|MPP = {mpp:.6f}"
        for key, value in extra.items():
            text += f"|{key} = {str(value).replace('|', '/')}"
    return text


def iter_write_rgb_overlay(
    path,
    source,
    *,
    mpp: float | None,
    slide=None,
    full_slide: bool = False,
    blend_slide: bool = False,
    vmax: float | None = None,
    cmap: str = "bwr",
    alpha: float = 0.6,
    compression: str = "jpeg",
    tile: int = 256,
    min_level_size: int = 1024,
    overwrite: bool = False,
) -> Generator[tuple[int, int], None, Path]:
    """Generator form of :func:`write_rgb_overlay` (yields ``(done, total)`` tiles)."""
    if compression not in ("jpeg", "zlib", "lzw", "none"):
        raise XhistoError(f"compression must be jpeg, zlib, lzw or none, got {compression!r}")
    if blend_slide and slide is None:
        raise XhistoError("blending over the slide needs the slide")
    path = check_writable(path, overwrite=overwrite)
    slide_shape = tuple(slide.dimensions) if slide is not None else None
    origin, shape = overlay_geometry(source, slide_shape=slide_shape, full_slide=full_slide)
    vmax = float(vmax) if vmax else symmetric_limit(source)
    prov = getattr(source, "provenance", {}) or {}
    extra = {"XhistoOriginRow": origin[0], "XhistoOriginCol": origin[1], "XhistoVmax": f"{vmax:.6g}",
             "XhistoColormap": cmap, "XhistoCanvas": "slide" if full_slide else "region",
             "XhistoAlpha": alpha if blend_slide else 1.0}
    for key in ("model", "method", "normalize", "target"):
        if key in prov:
            extra[f"Xhisto{key.capitalize()}"] = prov[key]
    shapes = [(h, w, 3) for h, w in level_shapes(shape, min_level_size)]
    codec = None if compression == "none" else compression
    common = {"photometric": "rgb", "compression": codec, "metadata": None, "dtype": np.uint8}
    if compression == "jpeg":
        common["compressionargs"] = {"level": 90}
    width, height = shape[1], shape[0]
    options = [{**common, "description": _description(width, height, tile, mpp=mpp, extra=extra,
                                                       compression=compression)}]
    options += [{**common, "description": _description(width, height, tile, mpp=mpp, extra=extra,
                                                       level_size=s[:2], compression=compression)}
                for s in shapes[1:]]
    f = max(1.0, max(shape) / 1024)
    thumb_shape = (max(1, round(shape[0] / f)), max(1, round(shape[1] / f)))
    thumbnail = {"shape": thumb_shape,
                 "options": {**common, "description": f"{APERIO_HEADER}\r\n{width}x{height} -> "
                                                      f"{thumb_shape[1]}x{thumb_shape[0]} - "}}
    tile_source = overlay_tile_source(source, origin, vmax=vmax, cmap=cmap,
                                      slide=slide if blend_slide else None, alpha=alpha)
    return (yield from iter_stream_pyramid(
        path, shapes, tile_source, dtype=np.uint8, level_options=options,
        tiff_options={"bigtiff": max(shape) > 30000}, downsample=_downsample2_rgb, tile=tile,
        thumbnail=thumbnail))


def write_rgb_overlay(path, source, *, mpp: float | None, slide=None, full_slide: bool = False,
                      blend_slide: bool = False, vmax: float | None = None, cmap: str = "bwr",
                      alpha: float = 0.6, compression: str = "jpeg", tile: int = 256,
                      min_level_size: int = 1024, overwrite: bool = False, on_progress=None) -> Path:
    """Write a colour-mapped RGB pyramid of a heatmap that OpenSlide and tifffile open.

    Parameters
    ----------
    path : str or Path
        Output ``.svs`` (Aperio layout: tiled level 0, thumbnail, tiled coarser levels).
    source : ArrayTiles or HeatmapTileReader
        The heatmap (``shape``, ``placement``, ``read(row, col, h, w)``, ``provenance``).
    mpp : float or None
        The slide's µm per level-0 pixel (written as Aperio ``MPP``).
    slide : optional
        The slide (``dimensions``, ``read_region``): needed for ``full_slide`` and ``blend_slide``.
    full_slide : bool
        Cover the whole slide (same level-0 size) instead of the heatmap's own region.
    blend_slide : bool
        Blend the colours over the grey-scale slide (``alpha`` x colour).
    vmax : float, optional
        Symmetric colour limit; default: max |value| of the map.
    cmap : str
        A diverging matplotlib colormap (value 0 maps to its centre).
    compression : {"jpeg", "zlib", "lzw", "none"}
        JPEG is small and what Aperio writes; the others keep colours exact.
    min_level_size : int
        Coarser levels (2x each) are added until no side exceeds this.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
    """
    gen = iter_write_rgb_overlay(path, source, mpp=mpp, slide=slide, full_slide=full_slide,
                                 blend_slide=blend_slide, vmax=vmax, cmap=cmap, alpha=alpha,
                                 compression=compression, tile=tile, min_level_size=min_level_size,
                                 overwrite=overwrite)
    return run_to_end(gen, on_progress=on_progress)


def read_overlay_info(description: str) -> dict:
    """The ``Xhisto*`` keys (and MPP) of an overlay's Aperio description, as strings."""
    info = {}
    for part in description.split("|")[1:]:
        if " = " in part:
            key, value = part.split(" = ", 1)
            info[key.strip()] = value.strip()
    return info
