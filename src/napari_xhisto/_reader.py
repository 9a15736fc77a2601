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

import logging
import os
import sys
import threading
from pathlib import Path

from .slide.detect import looks_like_slide, quiet_tifffile, slide_file_problem, slide_suffix

log = logging.getLogger(__name__)

# Extensions that only ever hold slides: their first IFD may be a thumbnail or a striped page, so
# only the header is checked before offering read_slide (which then says what is wrong, if
# anything); other TIFFs must look like a tiled RGB pyramid.
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

    None also when the cheap check (a few header bytes, see
    :func:`~napari_xhisto.slide.detect.slide_file_problem`) already knows the file is unusable
    (empty, not a TIFF, its first directory past the end ...), so napari can offer it to another
    plugin; the reason is logged. A file that passes and still cannot be read gets one clear
    message from :func:`read_slide`.

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
    if path.rstrip("/\\").lower().endswith(".nic.zarr"):
        return get_codes_reader(path)
    if path.lower().endswith((".tif", ".tiff")) and Path(path).is_file():
        from .export.layer_reader import is_heatmap_file

        with quiet_tifffile():  # a broken TIFF gets our message (or another reader), not tifffile's
            heatmap = is_heatmap_file(path)
        if heatmap:  # our heatmap / probability files open as heatmap layers
            return read_heatmap
    if slide_suffix(path) in VENDOR_SUFFIXES and Path(path).is_file():
        problem = slide_file_problem(path)
        if problem is not None:
            log.warning("napari-xhisto does not read %s: %s", path, problem)
            return None
        return read_slide
    return read_slide if looks_like_slide(path) else None


def read_slide(path) -> list[tuple]:
    """napari reader function: layer data for one slide (or each slide in a list).

    Raises
    ------
    napari_xhisto.errors.SlideError
        One line naming the file and what is wrong (truncated, not a slide, no tile decodes).

    Each layer's slide reports damaged tiles as they are found while viewing: the first one in a
    napari notification naming the tile, all of them in
    ``layer.metadata["xhisto"]["damaged_tiles"]`` (the tiles are drawn as yellow/black stripes).
    """
    from .errors import SlideError, XhistoError

    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    layers = []
    for p in paths:
        try:
            data = slide_layer_data(p)
        except XhistoError:
            raise
        except Exception as exc:  # noqa: BLE001 - one clear line, whatever failed underneath
            raise SlideError(f"{p}: cannot be opened as a slide ({type(exc).__name__}: {exc})"
                             ) from exc
        for layer in data:
            _watch_damage(layer[1].get("metadata", {}))
        layers += data
    return layers


def damage_message(path, entry: dict) -> str:
    """The notification text for a damaged tile (an entry of ``Slide.damaged_tiles``)."""
    top, left, h, w = entry["level0_region"]
    return (f"{Path(path).name}: tile ({entry['tile_row']}, {entry['tile_col']}) of level "
            f"{entry['level']} (level-0 rows {top}-{top + h}, cols {left}-{left + w}) is damaged "
            f"({entry['error']}); it is drawn as yellow/black stripes and left out (NaN) of "
            "probability maps and heatmaps. Further damaged tiles are listed in the layer's "
            "metadata['xhisto']['damaged_tiles']; copy the slide again.")


def _watch_damage(metadata: dict) -> None:
    """List the slide's damaged tiles in the layer metadata as they are found, and notify once."""
    slide = metadata.get("xhisto_slide")
    info = metadata.get("xhisto")
    if slide is None or info is None or not hasattr(slide, "on_tile_error"):
        return
    listed = info.setdefault("damaged_tiles", [])
    lock = threading.Lock()
    notified = []

    def on_damage(slide, level, tile_row, tile_col, exc=None):
        with lock:
            known = {(d["level"], d["tile_row"], d["tile_col"]) for d in listed}
            new = [d for d in slide.damaged_tiles
                   if (d["level"], d["tile_row"], d["tile_col"]) not in known]
            listed.extend(new)
            first = listed[0] if listed and not notified else None
            if first is not None:
                notified.append(True)
        if first is not None:
            try:
                from napari.utils.notifications import show_warning

                show_warning(damage_message(slide.path, first))
            except Exception:  # noqa: BLE001 - a notification must never break reading
                log.exception("could not show the damaged-tile notification")

    slide.on_tile_error.append(on_damage)
    if slide.damaged_tiles:  # found while opening (a probe tile)
        on_damage(slide, *(slide.damaged_tiles[0][k] for k in ("level", "tile_row", "tile_col")))


def get_codes_reader(path):
    """Return :func:`read_codes_layer` for a compressed slide (``*.nic.zarr`` from
    ``xhisto compress``), else None. Never imports torch."""
    path = _single_path(path)
    if path is None:
        return None
    from .nic.codes import is_codes_store

    return read_codes_layer if is_codes_store(path) else None


def read_codes_layer(path) -> list[tuple]:
    """napari reader function: a compressed slide as an RGB layer (first 3 principal components
    of its codes, read lazily), placed on its slide in µm."""
    from .nic.codes import codes_layer_data

    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    return [layer for p in paths for layer in codes_layer_data(p)]


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
