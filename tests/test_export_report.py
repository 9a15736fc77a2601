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
    prov = {"model": "demo", "method": "lrp-epsilon-plus", "normalize": "global-max", "target": 1}
    return values, placement, AnnotationSet(cells, regions, {}), prov


def test_report_embeds_snapshots_metrics_and_counts(tmp_path, scene):
    from napari_xhisto.metrics import centre_bias_profile
    from napari_xhisto.metrics.report import evaluate_heatmap, jsonable

    values, placement, ann, prov = scene
    metrics = jsonable(evaluate_heatmap(values, placement=placement, mpp=0.5, cells=ann.cells,
                                        regions=ann.regions, radius_um=4.0, n_random=3))
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
    assert len(parser.images) == 3  # snapshot, ROC, centre-bias profile
    first = _decode_png(parser.images[0])
    assert first.shape[:2] == snap.size
    for src in parser.images[1:]:
        assert _decode_png(src).shape[0] > 100
    cells = [c.strip() for c in parser.cells]
    assert f"{metrics['roc']['auc']:.4g}" in cells
    assert "lrp-epsilon-plus" in cells and "global-max" in cells and "slide.svs" in cells
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
