"""napari reader: a whole-slide image as one lazy multiscale RGB layer at its µm scale.

``get_reader`` decides from the extension and a few header bytes (no numpy, no torch), so napari
quickly moves on to other readers for files that are not slides. The layer's metadata carries the
open ``Slide`` (``metadata["xhisto_slide"]``) so the widgets read through the same tile cache.

A reader cannot reach the viewer: :func:`slide_layer_data` asks napari's current viewer (when
napari is running) to switch its scale bar on as soon as a slide layer lands; the widgets and the
demo do the same for their viewer. The layer's units are µm (pixels when µm/px is unknown), so
napari's scale bar reads µm.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .slide.detect import looks_like_slide, slide_suffix

# Extensions that only ever hold slides: a broken file of this kind gets our clear error message
# instead of napari's "no reader found".
VENDOR_SUFFIXES = {".svs", ".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".vmu", ".svslide"}


def _single_path(path) -> str | None:
    if isinstance(path, list | tuple):
        if len(path) != 1:
            return None
        path = path[0]
    if not isinstance(path, str | os.PathLike):
        return None
    return os.fspath(path)


def get_reader(path):
    """Return :func:`read_slide` if ``path`` is a whole-slide image, else None.

    Parameters
    ----------
    path : str or list of str
        What napari was asked to open (one file).

    Returns
    -------
    callable or None
    """
    path = _single_path(path)
    if path is None:
        return None
    if path.lower().endswith((".tif", ".tiff")) and Path(path).is_file():
        from .export.layer_reader import is_heatmap_file

        if is_heatmap_file(path):  # our heatmap / probability files open as heatmap layers
            return read_heatmap
    if slide_suffix(path) in VENDOR_SUFFIXES and Path(path).is_file():
        return read_slide
    return read_slide if looks_like_slide(path) else None


def read_slide(path) -> list[tuple]:
    """napari reader function: layer data for one slide (or each slide in a list)."""
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    return [layer for p in paths for layer in slide_layer_data(p)]


def read_heatmap(path) -> list[tuple]:
    """napari reader function: a heatmap file written by napari-xhisto, placed on its slide."""
    from .export.layer_reader import heatmap_file_layer_data

    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    return [layer for p in paths for layer in heatmap_file_layer_data(p)]


def slide_layer_data(path, *, mpp: float | None = None, data: str = "tiles") -> list[tuple]:
    """One multiscale RGB image layer for the slide at ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The slide file.
    mpp : float, optional
        µm per level-0 pixel, overriding the file's metadata.
    data : {"tiles", "dask"}
        Layer data: ``"tiles"`` (default) gives napari ``slide.level_arrays()``, which read exactly
        the visible tiles through the slide's bounded cache; ``"dask"`` gives ``slide.pyramid()``,
        which napari also keeps in its own dask cache (up to 25% of RAM by default), so memory
        grows while panning (see bench/results/first_frame.json).

    Returns
    -------
    list of (data, kwargs, "image")
        ``data`` is the slide's pyramid, finest level first; ``kwargs["scale"]`` is (mpp, mpp) with units µm,
        or (1, 1) in pixels when µm/px is unknown (``metadata["xhisto"]["scale_note"]`` says so).

    Raises
    ------
    napari_xhisto.errors.SlideError
        When the file cannot be opened, naming the file and the cause.
    """
    from .slide import open_slide

    if data not in ("tiles", "dask"):
        raise ValueError(f"data must be 'tiles' or 'dask', got {data!r}")
    slide = open_slide(path, mpp=mpp)
    known = slide.mpp is not None
    step = float(slide.mpp) if known else 1.0
    unit = "µm" if known else "pixel"
    xhisto = {
        "slide_path": slide.path,
        "mpp": slide.mpp,
        "mpp_source": slide.mpp_source,
        "backend": slide.backend,
        "vendor": slide.vendor,
        "level_dimensions": slide.level_dimensions,
        "level_downsamples": slide.level_downsamples,
        "synthetic_levels": slide.synthetic_level_count,
        "properties": slide.properties,
    }
    if not known:
        xhisto["scale_note"] = ("µm per pixel unknown (no metadata): layer scale is 1 and units "
                                "are pixels; reopen with an mpp override to measure in µm")
    # a colour-mapped overlay of a region (written by export.rgb) records its offset on the slide
    from .export.layer_reader import overlay_translate

    kwargs = {
        "name": Path(slide.path).name,
        "rgb": True,
        "multiscale": True,
        "scale": (step, step),
        "translate": overlay_translate(slide.properties, step),
        "units": (unit, unit),
        "contrast_limits": (0, 255),
        "metadata": {"xhisto": xhisto, "xhisto_slide": slide},
    }
    levels = slide.level_arrays() if data == "tiles" else slide.pyramid()
    show_scale_bar_in_current_viewer()
    return [(levels, kwargs, "image")]


def show_scale_bar_in_current_viewer() -> None:
    """Have napari's current viewer (if napari runs) show its scale bar once a slide is added.

    Headless callers (the CLI) never import napari, and nothing happens for them.
    """
    napari = sys.modules.get("napari")
    if napari is None:
        return
    try:
        viewer = napari.current_viewer()
    except Exception:  # noqa: BLE001 - no Qt application, no viewer: nothing to switch on
        return
    if viewer is not None:
        from ._widgets.layers import watch_for_slides

        watch_for_slides(viewer)
