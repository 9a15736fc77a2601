"""napari sample data: a synthetic H&E slide with its ground-truth cells and regions.

The slide (about 8192 px, Aperio SVS) is written once per (seed, size) into a user cache folder
(``$XHISTO_CACHE_DIR``, else ``$XDG_CACHE_HOME/napari-xhisto``, else ``~/.cache/napari-xhisto``)
and reused. ``$XHISTO_SAMPLE_SIZE`` overrides the size (tests use a small one).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

DEFAULT_SIZE = 8192
DEFAULT_SEED = 0
POINT_SIZE_UM = 8.0


def cache_dir() -> Path:
    """Folder where sample slides are kept."""
    env = os.environ.get("XHISTO_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "napari-xhisto"


def cached_synthetic_slide(*, size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED) -> tuple[Path,
                                                                                           Path]:
    """Paths (slide, ground-truth GeoJSON) of the cached sample, writing them if missing."""
    from napari_xhisto.synth.writer import write_slide

    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"synthetic-he-seed{seed}-{size}px"
    slide, geojson = folder / f"{stem}.svs", folder / f"{stem}.geojson"
    if slide.exists() and geojson.exists():
        return slide, geojson
    # write beside, then rename: a half-written file is never taken for a cached one
    with tempfile.TemporaryDirectory(dir=folder, prefix=".writing-") as tmp:
        tmp_slide, tmp_geojson = write_slide(Path(tmp) / f"{stem}.svs", size=size, seed=seed)
        os.replace(tmp_geojson, geojson)
        os.replace(tmp_slide, slide)
    return slide, geojson


def _rgba(rgb) -> list[float]:
    return [c / 255 for c in rgb] + [1.0]


def ground_truth_layer_data(geojson, mpp: float, *, slide_path=None) -> list[tuple]:
    """Points (cells, coloured by class) and Shapes (region outlines) layer data, in µm."""
    import numpy as np

    from napari_xhisto.annotations import (
        cells_to_points_data,
        read_annotations,
        regions_to_shapes_data,
    )

    gt = read_annotations(geojson)
    colors = gt.complete_colors()
    layers = []
    data, features = cells_to_points_data(gt.cells, mpp)
    face = np.array([_rgba(colors[c]) for c in features["class"]]).reshape(-1, 4)
    meta = {"kind": "ground truth", "mpp": float(mpp), "source": str(geojson),
            "slide_path": None if slide_path is None else str(slide_path)}
    layers.append((data, {
        "name": "ground truth cells", "features": features, "face_color": face,
        "border_color": face, "size": POINT_SIZE_UM, "units": "µm", "opacity": 0.8,
        "metadata": {"xhisto": dict(meta, kind="ground truth cells")}}, "points"))
    if gt.regions:
        sdata, types, sfeatures, holes = regions_to_shapes_data(gt.regions, mpp)
        edge = np.array([_rgba(colors[c]) for c in sfeatures["class"]])
        layers.append((sdata, {
            "name": "ground truth regions", "shape_type": types, "features": sfeatures,
            "edge_color": edge, "face_color": [0, 0, 0, 0], "edge_width": 4.0,
            "units": "µm", "metadata": {"xhisto": dict(meta, kind="ground truth regions",
                                                       holes=holes)}}, "shapes"))
    return layers


def _slide_layers(path) -> list[tuple]:
    try:
        from napari_xhisto._reader import slide_layer_data
    except ImportError:  # pragma: no cover - the reader is part of the package
        slide_layer_data = None
    if slide_layer_data is not None:
        return slide_layer_data(path)
    import tifffile  # pragma: no cover

    with tifffile.TiffFile(path) as tf:  # pragma: no cover
        levels = [lv.asarray() for lv in tf.series[0].levels]
    return [(levels, {"rgb": True, "multiscale": True}, "image")]  # pragma: no cover


def synthetic_slide(size: int | None = None, seed: int = DEFAULT_SEED) -> list[tuple]:
    """Synthetic H&E slide (with ground truth cells and regions), for napari's sample menu.

    Returns
    -------
    list of LayerData
        The slide as a multiscale image layer at its µm/px scale, then the ground-truth cells
        (Points with a ``class`` and ``id`` feature, coloured by class) and regions (Shapes).
    """
    size = int(size or os.environ.get("XHISTO_SAMPLE_SIZE", DEFAULT_SIZE))
    slide, geojson = cached_synthetic_slide(size=size, seed=seed)
    layers = _slide_layers(slide)
    mpp = None
    for _, kwargs, kind in layers:
        if kind == "image":
            mpp = kwargs.get("metadata", {}).get("xhisto", {}).get("mpp")
            kwargs.setdefault("name", f"synthetic H&E (seed {seed})")
    return layers + ground_truth_layer_data(geojson, mpp or 0.5, slide_path=slide)
