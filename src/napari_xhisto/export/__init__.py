"""Exports: heatmaps as pyramidal OME-TIFF (in memory or tile by tile), colour-mapped RGB overlays
that OpenSlide opens, PNG snapshots, contours as QuPath GeoJSON, and self-contained HTML reports."""

from .heatmap_io import HeatmapFile, read_heatmap, write_heatmap
from .rgb import colorize, write_rgb_overlay
from .tiled_writer import iter_write_heatmap_tiles, write_heatmap_tiles
from .tiles import ArrayTiles, HeatmapTileReader, full_slide_canvas

__all__ = [
    "ArrayTiles",
    "HeatmapFile",
    "HeatmapTileReader",
    "colorize",
    "full_slide_canvas",
    "iter_write_heatmap_tiles",
    "read_heatmap",
    "write_heatmap",
    "write_heatmap_tiles",
    "write_rgb_overlay",
]
