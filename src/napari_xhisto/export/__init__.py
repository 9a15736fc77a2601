"""Exports: heatmaps as pyramidal OME-TIFF (in memory or tile by tile), colour-mapped RGB overlays
that OpenSlide opens, PNG snapshots, contours as QuPath GeoJSON, and self-contained HTML reports."""

from .contours import export_contours, heatmap_contours
from .heatmap_io import HeatmapFile, read_heatmap, write_heatmap
from .layer_reader import heatmap_file_layer_data, is_heatmap_file
from .layer_writer import write_heatmap_layer
from .report import build_report, write_report
from .rgb import colorize, write_rgb_overlay
from .snapshot import SnapshotLayout, render_snapshot, write_snapshot
from .tiled_writer import iter_write_heatmap_tiles, write_heatmap_tiles
from .tiles import ArrayTiles, HeatmapTileReader, full_slide_canvas

__all__ = [
    "ArrayTiles",
    "HeatmapFile",
    "HeatmapTileReader",
    "SnapshotLayout",
    "build_report",
    "colorize",
    "export_contours",
    "full_slide_canvas",
    "heatmap_contours",
    "heatmap_file_layer_data",
    "is_heatmap_file",
    "iter_write_heatmap_tiles",
    "read_heatmap",
    "render_snapshot",
    "write_heatmap",
    "write_heatmap_layer",
    "write_heatmap_tiles",
    "write_report",
    "write_rgb_overlay",
    "write_snapshot",
]
