"""``xhisto export``: each kind writes a file that reads back with what was exported."""

import json

import numpy as np
import openslide
import pytest
from matplotlib.image import imread
from test_export_rgb import write_test_svs  # tests/ is on sys.path (rootdir conftest)

from napari_xhisto.annotations import read_annotations
from napari_xhisto.cli import main
from napari_xhisto.export import read_heatmap, write_heatmap
from napari_xhisto.geometry import Placement


@pytest.fixture
def files(tmp_path):
    slide = write_test_svs(tmp_path / "slide.svs", 900, 1300)
    rr, cc = np.mgrid[0:150, 0:200]
    disc = np.hypot(rr - 75, cc - 100)
    values = (disc < 40).astype(np.float32) - 1.5 * (disc < 15)  # ring +1, centre -0.5
    heat = write_heatmap(tmp_path / "heat.ome.tif", values, Placement(100, 200, 4, 4), mpp=0.5,
                         provenance={"model": "demo", "method": "gradient", "normalize": "global-max"})
    return tmp_path, slide, heat, values


def test_ome_tiff_float16_full_slide(files, capsys):
    tmp, slide, heat, values = files
    out = tmp / "canvas.ome.tif"
    assert main(["export", "ome-tiff", str(heat), "--out", str(out), "--slide", str(slide),
                 "--full-slide", "--float16"]) == 0
    back = read_heatmap(out)
    assert back.provenance["stored_dtype"] == "float16" and back.provenance["method"] == "gradient"
    assert back.placement == Placement(0, 0, 4, 4)
    assert back.values.shape == (225, 325)  # ceil(900 / 4), ceil(1300 / 4)
    np.testing.assert_array_equal(back.values[25:175, 50:250], values)
    assert np.isnan(back.values[:25]).all()
    # refused without --overwrite, with one clear line
    assert main(["export", "ome-tiff", str(heat), "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err


def test_rgb_png_contours_report(files):
    tmp, slide, heat, values = files
    svs = tmp / "over.svs"
    assert main(["export", "rgb", str(heat), "--out", str(svs), "--slide", str(slide), "--full-slide",
                 "--blend", "--compression", "zlib"]) == 0
    with openslide.OpenSlide(svs) as osr:
        assert osr.dimensions == (1300, 900)
        centre = np.asarray(osr.read_region((200 + 4 * 100, 100 + 4 * 75), 0, (1, 1)))[0, 0, :3]
        ring = np.asarray(osr.read_region((200 + 4 * 125, 100 + 4 * 75), 0, (1, 1)))[0, 0, :3]
    assert int(centre[2]) - int(centre[0]) > 40  # -0.5 in the middle: blue side of bwr
    assert int(ring[0]) - int(ring[2]) > 100  # +1 on the ring: full red

    png = tmp / "snap.png"
    assert main(["export", "png", str(heat), "--out", str(png), "--slide", str(slide),
                 "--max-size", "400"]) == 0
    img = imread(png)
    assert max(img.shape[:2]) >= 400 and img.shape[2] in (3, 4)

    geo = tmp / "c.geojson"
    assert main(["export", "contours", str(heat), "--out", str(geo), "--threshold", "0.25",
                 "--class", "tumour area"]) == 0
    regions = read_annotations(geo).regions
    assert len(regions) == 1 and len(regions[0].holes) == 1
    ext = regions[0].exterior
    # a disc of radius 40 map px = 160 level-0 px around level-0 (100 + 4 * 75.5, 200 + 4 * 100.5)
    radius = np.hypot(ext[:, 0] - 402, ext[:, 1] - 602)
    assert 150 < radius.min() and radius.max() < 170

    metrics = tmp / "m.json"
    metrics.write_text(json.dumps({"roc": {"auc": 0.8125, "n_positive": 3, "n_negative": 4,
                                           "fpr": [0, 0.5, 1], "tpr": [0, 0.9, 1]}}))
    report = tmp / "r.html"
    assert main(["export", "report", "--heatmap", str(heat), "--slide", str(slide), "--metrics",
                 str(metrics), "--cells", str(geo), "--out", str(report)]) == 0
    text = report.read_text()
    assert "0.8125" in text and text.count("data:image/png;base64,") == 2
    assert "slide.svs" in text and "tumour area" in text


def test_snapshots_of_large_regions_read_a_coarse_level(tmp_path):
    from napari_xhisto.commands.export import _display_level
    from napari_xhisto.export.tiles import HeatmapTileReader
    from napari_xhisto.geometry import Region

    path = write_heatmap(tmp_path / "h.ome.tif", np.zeros((1200, 700), np.float32), Placement(0, 0, 4, 4),
                         mpp=0.5)
    with HeatmapTileReader(path) as source:
        assert source.levels == 3
        whole = Region(0, 0, 4800, 2800)
        assert _display_level(source, whole, 600) == 1  # 8 level-0 px per picture px = 2 map px
        assert _display_level(source, whole, 4800 // 4) == 0
        assert _display_level(source, whole, 50) == 2  # never past the coarsest level
        assert _display_level(source, Region(0, 0, 400, 400), 1200) == 0


def test_report_computes_metrics_from_cells_when_asked(files):
    from napari_xhisto.annotations import AnnotationSet, CellPoints, write_annotations
    from napari_xhisto.metrics.report import evaluate_heatmap

    tmp, slide, heat, values = files
    rng = np.random.default_rng(3)
    rows, cols = rng.uniform(100, 700, 80), rng.uniform(200, 1000, 80)
    inside = np.hypot((rows - 100) / 4 - 75, (cols - 200) / 4 - 100) < 40
    classes = np.where(inside & (rng.random(80) < 0.9), "tumour", "stroma")
    cells_path = write_annotations(tmp / "cells.geojson", AnnotationSet(CellPoints(rows, cols, classes), [], {}))
    report = tmp / "r.html"
    assert main(["export", "report", "--heatmap", str(heat), "--cells", str(cells_path), "--radius-um", "3",
                 "--out", str(report)]) == 0
    back = read_heatmap(heat)
    expected = evaluate_heatmap(back.values, placement=back.placement, mpp=0.5,
                                cells=read_annotations(cells_path).cells, regions=[], radius_um=3)
    text = report.read_text()
    assert f"<td>{expected['roc']['auc']:.4g}</td>" in text
    assert text.count("data:image/png;base64,") == 2  # snapshot + ROC curve
