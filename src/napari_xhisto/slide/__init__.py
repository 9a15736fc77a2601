"""Whole-slide images: ``open_slide`` -> ``Slide`` (levels, µm/px, cached parallel tile reads,
``read_region`` / ``read_scaled`` in level-0 pixels, lazy dask pyramid for napari).

numpy, dask, tifffile/imagecodecs and openslide only: no torch, no napari. Names are imported on
first use, so ``napari_xhisto.slide.detect`` (the napari reader's cheap check) loads nothing heavy.
"""

from importlib import import_module

_EXPORTS = {
    "Level": ".core", "Slide": ".core", "shared_tile_cache": ".core", "TileCache": ".cache",
    "looks_like_slide": ".detect", "open_slide": ".opening", "damaged_pattern": ".damage",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
