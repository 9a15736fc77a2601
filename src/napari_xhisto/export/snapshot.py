"""PNG snapshots of a region: heatmap over grey-scale H&E, colour legend, scale bar in µm, title.

Pure matplotlib on the Agg canvas (no display, no napari). The image axes are placed so that
one output pixel is one screen pixel, and :class:`SnapshotLayout` tells where everything landed
in the PNG, so callers (the report, tests) can find the picture, the legend and the scale bar.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import XhistoError
from ..geometry import Region
from .rgb import grey_scale
from .tiled_writer import check_writable

_LEFT, _RIGHT, _TOP, _BOTTOM = 20, 110, 60, 20  # margins in px: legend right, title on top


@dataclass
class SnapshotLayout:
    """Where things are in a snapshot PNG (pixel boxes are ``(row0, col0, row1, col1)``)."""

    size: tuple[int, int]
    image_box: tuple[int, int, int, int]
    legend_box: tuple[int, int, int, int]
    scale_bar_box: tuple[int, int, int, int]
    scale_bar_um: float
    level0_per_pixel: float
    vmax: float
    title: str
    region: Region
    png: bytes = field(default=b"", repr=False)


def nice_length(target: float) -> float:
    """The largest 1, 2 or 5 x 10^k not above ``target`` (scale-bar lengths)."""
    if target <= 0:
        raise XhistoError("a scale bar needs a positive length")
    k = math.floor(math.log10(target))
    for m in (5, 2, 1):
        if m * 10**k <= target:
            return float(m * 10**k)
    return float(10**k)


def target_name(provenance: dict) -> str | None:
    """The target class by NAME: ``target_class`` (the explainers record it), else the
    ``target`` index looked up in the model's class names, else ``"class <index>"``."""
    name = provenance.get("target_class") or provenance.get("class_name")
    if name not in (None, ""):
        return str(name)
    target = provenance.get("target")
    if target is None or target == "":
        return None
    if isinstance(target, int | np.integer) or (isinstance(target, str) and target.isdigit()):
        model = provenance.get("model")
        names = (model.get("class_names") if isinstance(model, dict) else None) \
            or provenance.get("class_names")
        index = int(target)
        if names and 0 <= index < len(names):
            return str(names[index])
        return f"class {index}"
    return str(target)


def provenance_title(provenance: dict) -> str:
    """One line naming model, method, target class and normalisation (what a reader needs to
    trust it); the target is named, never given as an index."""
    parts = []
    for key, label in (("model", "model"), ("method", "method"), ("target", "target"),
                       ("normalize", "normalisation"), ("normalisation", "normalisation")):
        value = target_name(provenance) if key == "target" else provenance.get(key)
        if isinstance(value, dict):  # a model's full provenance: name it, not its file paths
            value = value.get("model") or value.get("architecture") or value.get("name")
        if value not in (None, ""):
            parts.append(f"{label}: {value}")
    return " | ".join(parts) or "heatmap"


def sample_on_grid(source, region: Region, out_shape: tuple[int, int], *, chunk_rows: int = 64) -> np.ndarray:
    """Heatmap values at the centres of an ``out_shape`` grid over ``region`` (nearest, NaN outside).

    Reads the heatmap in bands of output rows so a large region never loads its whole window.
    """
    p = source.placement
    oh, ow = out_shape
    rows = region.level0_row + (np.arange(oh) + 0.5) * region.height / oh
    cols = region.level0_col + (np.arange(ow) + 0.5) * region.width / ow
    ii = np.floor((rows - p.origin_row) / p.step_row).astype(np.int64)
    jj = np.floor((cols - p.origin_col) / p.step_col).astype(np.int64)
    out = np.empty(out_shape, np.float32)
    for start in range(0, oh, chunk_rows):
        bi = ii[start:start + chunk_rows]
        window = source.read(int(bi[0]), int(jj[0]), int(bi[-1] - bi[0] + 1), int(jj[-1] - jj[0] + 1))
        out[start:start + len(bi)] = window[np.ix_(bi - bi[0], jj - jj[0])]
    return out


def _background(slide, region: Region, out_shape) -> np.ndarray:
    if slide is None:
        return np.full((*out_shape, 3), 255, np.uint8)
    if hasattr(slide, "read_scaled"):
        rgb = slide.read_scaled(region, out_shape[0], out_shape[1])
    else:  # any object with read_region at level 0 (small regions only)
        full = slide.read_region(region.level0_row, region.level0_col, region.height, region.width)
        ri = (np.arange(out_shape[0]) * region.height // out_shape[0])
        ci = (np.arange(out_shape[1]) * region.width // out_shape[1])
        rgb = full[np.ix_(ri, ci)]
    return grey_scale(rgb)


def render_snapshot(region: Region, source, *, mpp: float | None, slide=None, provenance: dict | None = None,
                    vmax: float | None = None, cmap: str = "bwr", alpha: float = 0.6, max_size: int = 1024,
                    title: str | None = None, label: str | None = None) -> SnapshotLayout:
    """Draw a snapshot of ``region`` and return its PNG bytes with the layout.

    Parameters
    ----------
    region : Region
        Level-0 pixels to show.
    source : ArrayTiles or HeatmapTileReader
        The heatmap (``placement``, ``read``); see :mod:`napari_xhisto.export.tiles`.
    mpp : float or None
        µm per level-0 pixel (the scale bar is omitted when unknown).
    slide : optional
        The slide (``read_scaled`` or ``read_region``); shown in grey scale under the heatmap.
    provenance : dict, optional
        Model, method, normalisation ... for the title (defaults to the source's provenance).
    vmax : float, optional
        Symmetric colour limit; default max |value| over the region.
    max_size : int
        Longest side of the picture in pixels (the region is shrunk to fit, never enlarged).
    title : str, optional
        Default: model, method, target and normalisation from the provenance.
    label : str, optional
        Legend label; default "probability" for probability maps, else "relevance".
    """
    # a bare Figure renders with Agg and never touches pyplot's global backend (napari uses Qt)
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    prov = dict(getattr(source, "provenance", {}) or {}) if provenance is None else dict(provenance)
    shrink = max(1.0, max(region.height, region.width) / max_size)
    oh, ow = max(1, round(region.height / shrink)), max(1, round(region.width / shrink))
    values = sample_on_grid(source, region, (oh, ow))
    if vmax is None:
        finite = values[np.isfinite(values)]
        vmax = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
    background = _background(slide, region, (oh, ow))
    title = title or provenance_title(prov)
    label = label or ("probability" if prov.get("kind") == "probability" else "relevance")

    width, height = ow + _LEFT + _RIGHT, oh + _TOP + _BOTTOM
    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
    ax = fig.add_axes((_LEFT / width, _BOTTOM / height, ow / width, oh / height))
    ax.imshow(background, interpolation="nearest", aspect="auto")
    shown = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=-vmax, vmax=vmax, alpha=alpha,
                      interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    cax = fig.add_axes(((_LEFT + ow + 12) / width, _BOTTOM / height, 16 / width, oh / height))
    bar = fig.colorbar(shown, cax=cax)
    bar.solids.set_alpha(1.0)
    bar.set_label(f"{label} ({prov.get('normalize', 'raw')})", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    fig.text(0.5, 1 - 12 / height, title, ha="center", va="top", fontsize=9, wrap=True)
    fig.text(0.5, 1 - 34 / height, f"region r{region.level0_row} c{region.level0_col} "
             f"{region.height}x{region.width} px" + (f", {mpp:g} µm/px" if mpp else ""),
             ha="center", va="top", fontsize=7, color="0.3")

    bar_um, bar_px, bar_box = 0.0, 0.0, (0, 0, 0, 0)
    if mpp:
        um_per_px = mpp * shrink
        bar_um = nice_length(0.25 * ow * um_per_px)
        bar_px = bar_um / um_per_px
        thick = max(3.0, round(oh * 0.012))
        x0, y1 = 0.04 * ow, oh - 0.05 * oh
        ax.add_patch(Rectangle((x0 - 0.5, y1 - thick - 0.5), bar_px, thick, facecolor="black",
                               edgecolor="white", linewidth=0.8))
        unit = f"{bar_um / 1000:g} mm" if bar_um >= 1000 else f"{bar_um:g} µm"
        ax.text(x0 + bar_px / 2, y1 - thick - 4, unit, ha="center", va="bottom", fontsize=8,
                color="black", bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 1})
        r0 = _TOP + int(round(y1 - thick))
        bar_box = (r0, _LEFT + int(round(x0)), r0 + int(thick), _LEFT + int(round(x0 + bar_px)))

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return SnapshotLayout(
        size=(height, width), image_box=(_TOP, _LEFT, _TOP + oh, _LEFT + ow),
        legend_box=(_TOP, _LEFT + ow + 12, _TOP + oh, _LEFT + ow + 28),
        scale_bar_box=bar_box, scale_bar_um=bar_um, level0_per_pixel=shrink, vmax=float(vmax),
        title=title, region=region, png=buffer.getvalue())


def write_snapshot(path, region: Region, source, *, overwrite: bool = False, **options) -> SnapshotLayout:
    """Render a snapshot (see :func:`render_snapshot`) and save it as PNG; returns its layout."""
    path = check_writable(path, overwrite=overwrite)
    if path.suffix.lower() != ".png":
        raise XhistoError(f"snapshots are PNG files: name it .png, not {path.name}")
    layout = render_snapshot(region, source, **options)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(layout.png)
    tmp.replace(Path(path))
    return layout
