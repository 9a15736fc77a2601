"""HTML report: one file that parses as HTML, embeds its images, and shows the metrics it was given."""

import base64
import io
from html.parser import HTMLParser

import numpy as np
import pytest
from matplotlib.image import imread

from napari_xhisto.annotations import AnnotationSet, CellPoints, RegionShape
from napari_xhisto.errors import XhistoError
from napari_xhisto.export.report import write_report
from napari_xhisto.export.snapshot import render_snapshot
from napari_xhisto.export.tiles import ArrayTiles
from napari_xhisto.geometry import Placement, Region


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.images, self.cells, self.headings, self.external = [], [], [], [], []
        self._in_cell = self._in_heading = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag not in ("img", "meta", "br"):
            self.stack.append(tag)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag in ("link", "script") or (tag == "img" and not attrs["src"].startswith("data:")):
            self.external.append(tag)
        self._in_cell = tag in ("td", "th")
        self._in_heading = tag in ("h2", "h3")

    def handle_endtag(self, tag):
        if tag in ("img", "meta", "br"):  # void elements written as <x/>
            return
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"
        self._in_cell = self._in_heading = False

    def handle_data(self, data):
        if self._in_cell:
            self.cells.append(data)
        if self._in_heading:
            self.headings.append(data)


def _decode_png(src):
    assert src.startswith("data:image/png;base64,")
    raw = base64.b64decode(src.split(",", 1)[1])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return imread(io.BytesIO(raw))


@pytest.fixture
def scene():
    rng = np.random.default_rng(0)
    values = rng.normal(scale=0.1, size=(100, 100)).astype(np.float32)
    values[20:60, 20:60] += 1.0
    placement = Placement(0, 0, 2, 2)
    rows = np.concatenate([rng.uniform(50, 110, 30), rng.uniform(130, 190, 30)])
    cols = np.concatenate([rng.uniform(50, 110, 30), rng.uniform(130, 190, 30)])
    classes = np.array(["tumour"] * 30 + ["stroma"] * 25 + ["lymphocyte"] * 5)
    cells = CellPoints(rows, cols, classes)
    square = np.array([[40, 40], [40, 120], [120, 120], [120, 40]], float)
    regions = [RegionShape("tumour area", square), RegionShape("necrosis", square + 70)]
    prov = {"model": "demo", "method": "lrp-epsilon-plus", "normalize": "global-max", "target": 1,
            "target_class": "tumour"}
    return values, placement, AnnotationSet(cells, regions, {}), prov


def test_report_embeds_snapshots_metrics_and_counts(tmp_path, scene):
    from napari_xhisto.metrics import centre_bias_profile
    from napari_xhisto.metrics.report import evaluate_heatmap, jsonable

    values, placement, ann, prov = scene
    metrics = jsonable(evaluate_heatmap(values, placement=placement, mpp=0.5, cells=ann.cells,
                                        regions=ann.regions, radius_um=4.0, n_random=3,
                                        n_boot=100))
    metrics["cells"].pop("scores", None)
    rng = np.random.default_rng(1)
    metrics["centre_bias"] = centre_bias_profile(rng.random((5, 32, 32))).to_dict()
    source = ArrayTiles(values, placement, mpp=0.5, provenance=prov)
    snap = render_snapshot(Region(0, 0, 200, 200), source, mpp=0.5)
    slide = {"file": "slide.svs", "µm per pixel": 0.5, "level-0 size (rows x cols)": "200 x 200"}
    path = write_report(tmp_path / "r.html", slide=slide, heatmap=source,
                        snapshots=[("whole region", snap)], metrics=metrics, annotations=ann)
    text = path.read_text(encoding="utf-8")
    parser = _Collect()
    parser.feed(text)
    parser.close()
    assert parser.stack == []
    assert parser.external == []  # self-contained: no links, scripts or remote images
    assert len(parser.images) == 4  # snapshot, ROC, threshold curves, centre-bias profile
    first = _decode_png(parser.images[0])
    assert first.shape[:2] == snap.size
    for src in parser.images[1:]:
        assert _decode_png(src).shape[0] > 100
    cells = [c.strip() for c in parser.cells]
    assert f"{metrics['roc']['auc']:.4g}" in cells
    assert "lrp-epsilon-plus" in cells and "global-max" in cells and "slide.svs" in cells
    assert cells[cells.index("target") + 1] == "tumour (class 1)"  # the class by name
    ci = metrics["roc"]["ci"]
    assert any(c.startswith(f"[{ci['low']:.3f}, {ci['high']:.3f}] (95% bootstrap") for c in cells)
    # annotation counts per class, as given
    joined = "|".join(cells)
    assert "cells|tumour|30" in joined and "cells|stroma|25" in joined and "regions|necrosis|1" in joined
    assert f"{metrics['localization']['tumour area']['pxap']:.4g}" in cells
    assert {"Slide", "Model and method", "Snapshots", "Metrics", "Annotations",
            "Cell-level ROC", "Centre bias"} <= set(parser.headings)


def test_report_escapes_text_and_keeps_existing_files(tmp_path):
    source = ArrayTiles(np.zeros((4, 4), np.float32), Placement(),
                        provenance={"method": "<script>alert(1)</script>"})
    path = write_report(tmp_path / "r.html", heatmap=source, title="a & b")
    text = path.read_text()
    assert "<script>" not in text and "&lt;script&gt;" in text and "a &amp; b" in text
    with pytest.raises(XhistoError, match="already exists"):
        write_report(path, heatmap=source)


def test_report_of_several_heatmaps_shows_comparisons_and_figures(tmp_path, scene):
    from napari_xhisto.metrics import evaluate_heatmaps
    from napari_xhisto.metrics.report import jsonable

    values, placement, ann, prov = scene
    rng = np.random.default_rng(2)
    noisy = values + rng.normal(0, 0.8, values.shape).astype(np.float32)
    metrics = jsonable(evaluate_heatmaps(
        {"lrp": (values, placement), "noisy": (noisy, placement)}, cells=ann.cells,
        regions=ann.regions, mpp=0.5, radius_um=4.0, n_random=0, n_boot=100,
        radius_sweep=[2, 4, 6]))
    for m in metrics["heatmaps"].values():
        m["cells"].pop("scores", None)
    path = write_report(tmp_path / "multi.html", metrics=metrics)
    parser = _Collect()
    parser.feed(path.read_text(encoding="utf-8"))
    assert {"Heatmaps", "AUC differences (same cells)", "AUC against disc radius",
            "Localisation against threshold", "lrp", "noisy"} <= set(parser.headings)
    cells = [c.strip() for c in parser.cells]
    c = metrics["auc_comparisons"][0]
    assert "noisy - lrp" in cells and f"{c['difference']:.4g}" in cells
    assert len(parser.images) == 2 + 2  # sweep + threshold figures, one ROC per heatmap
    assert all(_decode_png(src).shape[0] > 100 for src in parser.images)


def test_figure_functions_draw_the_given_numbers():
    from matplotlib.figure import Figure

    from napari_xhisto.export.figures import (
        draw_radius_sweep,
        radius_sweep_figure,
        threshold_curves_figure,
    )

    sweeps = {"lrp": [{"radius_um": 1.0, "auc": 0.8, "low": 0.7, "high": 0.9, "level": 0.95},
                      {"radius_um": 2.0, "auc": 0.85, "low": 0.8, "high": 0.9, "level": 0.95}],
              "gradcam": [{"radius_um": 1.0, "auc": 0.9, "low": 0.85, "high": 0.95},
                          {"radius_um": 2.0, "auc": None, "error": "no cells"}]}
    ax = Figure().add_subplot(1, 1, 1)
    draw_radius_sweep(ax, sweeps)
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    np.testing.assert_allclose(lines["lrp"].get_xydata(), [[1, 0.8], [2, 0.85]])
    np.testing.assert_allclose(lines["gradcam"].get_xydata(), [[1, 0.9]])
    thr = np.arange(0, 1, 0.25).tolist()
    curve = {"thresholds": thr, "dice": [0.2, 0.5, None, 0.1], "tpr": [1, 0.8, 0.5, 0.1],
             "fpr": [1, 0.3, 0.1, 0.0], "fnr": [0, 0.2, 0.5, 0.9], "tnr": [0, 0.7, 0.9, 1.0]}
    fig = threshold_curves_figure({"a": curve}, region_class="tumour area")
    dice_ax, rate_ax = fig.axes
    np.testing.assert_allclose(dice_ax.get_lines()[0].get_ydata(), [0.2, 0.5, np.nan, 0.1])
    assert [ln.get_label() for ln in rate_ax.get_lines()] == [
        "a: TP rate", "a: FP rate", "a: FN rate", "a: TN rate"]
    assert radius_sweep_figure(sweeps).axes[0].get_xlabel() == "disc radius (µm)"


def test_report_and_figures_docstring_examples():
    import doctest

    import napari_xhisto.export.figures as figures
    import napari_xhisto.export.report as report

    for module in (report, figures):
        assert doctest.testmod(module).failed == 0


def test_report_says_why_there_is_no_cell_roc(tmp_path):
    from napari_xhisto.metrics.report import evaluate_heatmap

    heat = np.random.default_rng(1).random((64, 64)).astype(np.float32)
    cells = CellPoints(np.full(5, 10.0), np.arange(5) * 10.0, np.full(5, "stroma"))
    metrics = evaluate_heatmap(heat, mpp=0.5, cells=cells, radius_um=2.0, n_random=0)
    path = write_report(tmp_path / "r.html", heatmap=ArrayTiles(heat, Placement()),
                        metrics=metrics)
    text = path.read_text()
    assert "Cell-level ROC</h3><p>Not computed: a cell ROC needs scored cells of both groups" in text
