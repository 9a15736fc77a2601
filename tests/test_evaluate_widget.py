"""The Evaluate widget in a real viewer: its numbers equal the metrics API; rows select layers."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from napari_xhisto.annotations import CellPoints, RegionShape
from napari_xhisto.geometry import Placement
from napari_xhisto.metrics import (
    cell_roc,
    cell_scores,
    centre_bias_profile,
    compare_region_relevance,
    pxap,
    region_relevance,
)
from napari_xhisto.metrics.report import truth_mask

pytestmark = pytest.mark.viewer

MPP = 0.5
PLACEMENT = Placement(origin_row=64, origin_col=32, step_row=4, step_col=4)


def _scene(seed=0):
    rng = np.random.default_rng(seed)
    heat = rng.normal(0, 0.3, (96, 128)).astype(np.float32)
    heat[10:50, 20:80] += 1.0
    n = 600
    rows = rng.uniform(64, 64 + 4 * 96, n)
    cols = rng.uniform(32, 32 + 4 * 128, n)
    fr, fc = (rows - 64 - 1.5) / 4, (cols - 32 - 1.5) / 4
    tumour = (fr > 10) & (fr < 50) & (fc > 20) & (fc < 80) & (rng.random(n) < 0.9)
    classes = np.where(tumour, "tumour", rng.choice(["stroma", "lymphocyte"], n))
    cells = CellPoints(rows, cols, classes)
    regions = [
        RegionShape("necrosis", np.array([[300.0, 300], [300, 420], [380, 420], [380, 300]])),
        RegionShape("tumour area", np.array([[104.0, 112], [104, 352], [264, 352], [264, 112]])),
    ]
    return heat, cells, regions


def _on_area(heat, cells):
    """The cells the widget scores: their centre on a finite pixel of the explained area."""
    from napari_xhisto._widgets.evaluate.layerdata import on_explained

    return on_explained(heat, PLACEMENT, cells.rows, cells.cols)


def _add(viewer, heat, cells, regions, *, heat_b=None):
    from napari_xhisto._widgets.layers import heatmap_layer_data
    from napari_xhisto.annotations import regions_to_shapes_data

    data, kw, _ = heatmap_layer_data(heat, PLACEMENT, mpp=MPP, provenance={}, name="heat A")
    viewer.add_image(data, **kw)
    if heat_b is not None:
        data, kw, _ = heatmap_layer_data(heat_b, PLACEMENT, mpp=MPP, provenance={}, name="heat B")
        viewer.add_image(data, **kw)
    # points in µm at scale 1, as the annotation widgets make them
    viewer.add_points(np.stack([cells.rows, cells.cols], 1) * MPP, name="cells",
                      features={"class": cells.classes}, units="µm")
    shapes_data, shape_types, features, _ = regions_to_shapes_data(regions, MPP)
    viewer.add_shapes(shapes_data, shape_type=shape_types, features=features, name="regions",
                      units="µm")


def _add_annotations(viewer, cells, regions):
    from napari_xhisto.annotations import regions_to_shapes_data

    viewer.add_points(np.stack([cells.rows, cells.cols], 1) * MPP, name="cells",
                      features={"class": cells.classes}, units="µm")
    shapes_data, shape_types, features, _ = regions_to_shapes_data(regions, MPP)
    viewer.add_shapes(shapes_data, shape_type=shape_types, features=features, name="regions",
                      units="µm")


def test_widget_auc_equals_metrics_and_rows_select(make_napari_viewer, tmp_path):
    from napari_xhisto._widgets.evaluate import EvaluateWidget

    viewer = make_napari_viewer()
    heat, cells, regions = _scene()
    heat[57:80, 64:100] = -0.3  # model A: necrosis counts against tumour
    heat_b = heat.copy()
    heat_b[55:80, 64:100] = 0.8  # model B lights it up
    _add(viewer, heat, cells, regions, heat_b=heat_b)
    widget = EvaluateWidget(viewer)
    assert widget.heatmap_box.currentText() == "heat B"  # the newest heatmap
    widget.heatmap_box.setCurrentText("heat A")
    widget.set_checked(widget.compare_list, ["heat B"])
    assert widget._checked_names(widget.points_list) == ["cells"]  # has a "class" feature
    assert widget._checked_names(widget.shapes_list) == ["regions"]
    widget.radius_spin.setValue(3.0)
    widget.random_spin.setValue(3)
    widget.patch_spin.setValue(16 * 4 * MPP)  # 16 heatmap px of 4 level-0 px, in µm
    assert widget.positive_box.currentText() == "tumour"
    assert widget.localize_box.currentText() == "tumour area"
    result = widget.evaluate()

    scores = cell_scores(heat, cells, radius_um=3.0, mpp=MPP, placement=PLACEMENT)
    direct = cell_roc(scores, cells.classes, positive="tumour")
    assert result["roc"]["auc"] == pytest.approx(direct.auc, abs=1e-9)
    ok = np.isfinite(scores)
    assert result["roc"]["auc"] == pytest.approx(roc_auc_score(cells.classes[ok] == "tumour", scores[ok]))
    ci = result["roc"]["ci"]
    assert widget.auc_table.item(0, 1).text() == (
        f"{direct.auc:.4g} [{ci['low']:.3f}, {ci['high']:.3f}]\n"
        f"n = {direct.n_positive} + / {direct.n_negative} −")
    assert widget.auc_table.rowCount() == 5  # A, B, then A's three baselines
    assert [widget.auc_table.item(i, 0).text() for i in range(2)] == ["heat A", "heat B"]
    assert ci["low"] < direct.auc < ci["high"]

    expected = region_relevance(heat, regions, placement=PLACEMENT)
    assert [g["mean"] for g in result["regions"]] == pytest.approx([e.mean for e in expected])
    assert widget.region_table.rowCount() == 2
    truth = truth_mask(regions, heat.shape, placement=PLACEMENT, classes=("tumour area",))
    assert result["localization"]["tumour area"]["pxap"] == pytest.approx(pxap(heat, truth).pxap)
    assert widget.loc_table.rowCount() == 6  # 50/75/90th percentiles of A and of B
    assert widget.loc_table.item(0, 1).text() == f"{pxap(heat, truth).pxap:.4g}"
    assert widget.loc_table.item(3, 1).text() == f"{pxap(heat_b, truth).pxap:.4g}"
    assert [widget.loc_table.item(k, 2).text() for k in range(3)] == ["50", "75", "90"]

    cmp = compare_region_relevance(heat, heat_b, regions, placement_a=PLACEMENT, placement_b=PLACEMENT)
    assert [r.mean for r in widget.comparison.b] == pytest.approx([r.mean for r in cmp.b])
    assert any(f.startswith("necrosis") for f in widget.comparison.flags)
    assert "necrosis" in widget.bias_label.text()
    patches = heat[:96, :128].reshape(6, 16, 8, 16).swapaxes(1, 2).reshape(-1, 16, 16)
    assert widget.profile.concentration == pytest.approx(centre_bias_profile(patches).concentration)

    # clicking the worst tile row selects exactly that tile's cells
    widget.tile_table.cellClicked.emit(0, 0)
    t = widget.controller.tile_rows()[0]
    inside = ((cells.rows >= t["row0"]) & (cells.rows < t["row0"] + t["size"])
              & (cells.cols >= t["col0"]) & (cells.cols < t["col0"] + t["size"]))
    assert viewer.layers["cells"].selected_data == set(np.flatnonzero(inside).tolist())
    assert viewer.layers.selection.active is viewer.layers["cells"]
    widget.region_table.cellClicked.emit(1, 0)
    assert viewer.layers["regions"].selected_data == {1}

    # exports read back
    js = json.loads(widget.export_json(tmp_path / "m.json").read_text())
    assert js["heatmaps"]["heat A"]["roc"]["auc"] == pytest.approx(direct.auc)  # A and B
    text = widget.export_csv(tmp_path / "m.csv").read_text().splitlines()
    assert text[0].startswith("table,") and sum(line.startswith("region,") for line in text) == 2
    pngs = widget.save_plots(tmp_path / "plots")
    assert len(pngs) == 5
    assert all(p.stat().st_size > 1000 and p.read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_heatmap_file_layer_one_layer_per_class(make_napari_viewer, tmp_path):
    """A heatmap file re-opened as a lazy multiscale layer is offered and scored; cells come
    from one layer per class, the class only in the metadata (as the Annotate widget keeps them)."""
    from napari_xhisto._widgets.evaluate import EvaluateWidget
    from napari_xhisto.export import write_heatmap
    from napari_xhisto.export.layer_reader import heatmap_file_layer_data

    viewer = make_napari_viewer()
    heat, cells, _ = _scene(seed=1)
    path = write_heatmap(tmp_path / "h.ome.tif", heat, PLACEMENT, mpp=MPP, provenance={})
    ((data, kwargs, _),) = heatmap_file_layer_data(path)
    viewer.add_image(data, **kwargs)
    viewer.add_image(np.zeros((8, 8)), name="not a heatmap")
    order = []
    for name in ("tumour", "stroma", "lymphocyte"):
        m = np.flatnonzero(cells.classes == name)
        order.append(m)
        viewer.add_points(np.stack([cells.rows[m], cells.cols[m]], 1) * MPP, name=f"cells: {name}",
                          metadata={"xhisto": {"kind": "cells", "class": name}}, units="µm")
    widget = EvaluateWidget(viewer)
    assert [widget.heatmap_box.itemText(i) for i in range(widget.heatmap_box.count())] == ["h"]
    assert len(widget._checked_names(widget.points_list)) == 3
    assert [widget.positive_box.itemText(i) for i in range(widget.positive_box.count())] == [
        "tumour", "stroma", "lymphocyte"]
    widget.random_spin.setValue(0)
    result = widget.evaluate()
    direct = cell_roc(cell_scores(heat, cells, radius_um=8.0, mpp=MPP, placement=PLACEMENT),
                      cells.classes)
    assert result["roc"]["auc"] == pytest.approx(direct.auc, abs=1e-6)
    widget.tile_table.cellClicked.emit(0, 0)
    t = widget.controller.tile_rows()[0]
    for name, m in zip(("tumour", "stroma", "lymphocyte"), order):
        r, c = cells.rows[m], cells.cols[m]
        inside = ((r >= t["row0"]) & (r < t["row0"] + t["size"]) & (c >= t["col0"])
                  & (c < t["col0"] + t["size"]))
        assert viewer.layers[f"cells: {name}"].selected_data == set(np.flatnonzero(inside).tolist())


def test_bias_tab_finds_class_correlated_artefact(make_napari_viewer):
    """Tumour patches (per a probability layer) carry a 3x3 square at their top-left corner."""
    from napari_xhisto._widgets.evaluate import EvaluateWidget
    from napari_xhisto._widgets.layers import heatmap_layer_data, probability_layer_data

    viewer = make_napari_viewer()
    rng = np.random.default_rng(4)
    size = 16
    heat = rng.normal(0, 0.2, (96, 128)).astype(np.float32)
    probs = np.where(rng.random((6, 8)) < 0.5, 0.9, 0.1).astype(np.float32)
    for i, j in zip(*np.nonzero(probs > 0.5)):
        heat[i * size + 0:i * size + 3, j * size + 0:j * size + 3] = 2.0
    data, kw, _ = heatmap_layer_data(heat, PLACEMENT, mpp=MPP, provenance={}, name="heat")
    viewer.add_image(data, **kw)
    prob_place = Placement(PLACEMENT.origin_row, PLACEMENT.origin_col, 4 * size, 4 * size)
    data, kw, _ = probability_layer_data(probs, prob_place, class_index=1,
                                         class_names=["non-tumour", "tumour"], mpp=MPP,
                                         provenance={}, name="p(tumour)")
    viewer.add_image(data, **kw)
    _, cells, regions = _scene()
    viewer.add_points(np.stack([cells.rows, cells.cols], 1) * MPP, name="cells",
                      features={"class": cells.classes}, units="µm")
    widget = EvaluateWidget(viewer)
    assert widget.prob_box.currentText() == "p(tumour)"
    widget.heatmap_box.setCurrentText("heat")
    widget.patch_spin.setValue(size * 4 * MPP)
    widget.random_spin.setValue(0)
    result = widget.evaluate()
    assert widget.class_means["tumour"]["count"] == int((probs > 0.5).sum())
    assert widget.class_means["not tumour"]["count"] == int((probs <= 0.5).sum())
    on_slide = widget.hotspots["tumour"]
    spot = on_slide.spot
    assert (spot.row, spot.col, spot.size, spot.sign) == (0, 0, 3, "positive")
    assert spot.flag() is not None
    # on the slide: a 3 x 3 heatmap px (12 x 12 level-0 px) box at the corner of each tumour patch
    i, j = np.nonzero(probs > 0.5)
    expected = np.stack([PLACEMENT.origin_row + 4 * size * i, PLACEMENT.origin_col + 4 * size * j,
                         np.full(len(i), 12.0), np.full(len(i), 12.0)], 1)
    order = np.lexsort((on_slide.boxes[:, 1], on_slide.boxes[:, 0]))
    np.testing.assert_allclose(on_slide.boxes[order], expected)
    # the hotspot row speaks slide µm and, clicked, draws the boxes and centres the view there
    row = widget.controller.hotspot_names().index("tumour")
    r, c, h, w = on_slide.boxes[on_slide.strongest]
    assert widget.hotspot_table.item(row, 1).text() == f"{(c + w / 2) * MPP:.0f}, {(r + h / 2) * MPP:.0f}"
    widget.hotspot_table.cellClicked.emit(row, 0)
    layer = viewer.layers["bias hotspots"]
    assert len(layer.data) == min(len(i), 16) and set(layer.shape_type) == {"rectangle"}
    corners = {tuple(np.round(d.min(0), 6)) for d in layer.data}
    assert corners <= {tuple(np.round(e, 6)) for e in expected[:, :2] * MPP}
    assert (round(r * MPP, 6), round(c * MPP, 6)) in corners  # the strongest is drawn
    np.testing.assert_allclose(viewer.scene.camera.center[-2:], ((r + h / 2) * MPP, (c + w / 2) * MPP))
    assert tuple(layer.units) == tuple(viewer.layers["heat"].units)
    assert "tumour: " in widget.bias_label.text() and "µm" in widget.bias_label.text()
    assert widget.hotspots["not tumour"].spot.flag() is None
    assert result["bias"]["classes"]["tumour"]["hotspot"]["enrichment"] == pytest.approx(spot.enrichment)


def test_evaluate_button_runs_in_a_worker(make_napari_viewer, qtbot):
    from napari_xhisto._widgets.evaluate import EvaluateWidget

    viewer = make_napari_viewer()
    heat, cells, regions = _scene(seed=2)
    _add(viewer, heat, cells, regions)
    widget = EvaluateWidget(viewer)
    widget.random_spin.setValue(2)
    widget.run_button.click()
    qtbot.waitUntil(lambda: widget.result is not None and widget.run_button.isEnabled(), timeout=60000)
    direct = cell_roc(cell_scores(heat, cells, radius_um=8.0, mpp=MPP, placement=PLACEMENT),
                      cells.classes)
    assert widget.result["roc"]["auc"] == pytest.approx(direct.auc, abs=1e-9)
    assert len(widget.result["baselines"]["random_aucs"]) == 2
    assert widget.region_table.rowCount() == len(regions)


def test_canvas_layer_scores_only_explained_area(make_napari_viewer):
    """A slide-wide canvas holds 0 outside pasted regions: those cells must be left out."""
    from napari_xhisto._widgets.canvases import CanvasLayers, CanvasPlan
    from napari_xhisto._widgets.evaluate import EvaluateWidget

    viewer = make_napari_viewer()
    heat, cells, _ = _scene(seed=3)
    part = heat[:48, :64]  # only the top-left quarter was explained
    region = [PLACEMENT.origin_row, PLACEMENT.origin_col, 48 * 4, 64 * 4]
    plan = CanvasPlan(("test",), "canvas", (2000, 2000), 4.0, MPP, None, {})
    CanvasLayers(viewer).paste(plan, SimpleNamespace(values=part, placement=PLACEMENT,
                                                     provenance={"region": region}), opacity=0.6)
    viewer.add_points(np.stack([cells.rows, cells.cols], 1) * MPP, name="cells",
                      features={"class": cells.classes}, units="µm")
    widget = EvaluateWidget(viewer)
    widget.random_spin.setValue(0)
    result = widget.evaluate()
    scores = cell_scores(part, cells, radius_um=8.0, mpp=MPP, placement=PLACEMENT)
    on = _on_area(part, cells)  # the cells whose pixel lies on the explained quarter
    scores[~on] = np.nan  # (the disc integral also scores discs that only reach into it)
    assert result["cells"]["n"] == result["explained_area"]["n_cells_on_area"] == int(on.sum())
    assert result["explained_area"]["n_cells_checked"] == len(cells.rows)
    assert result["cells"]["n_off_heatmap"] == 0
    assert result["roc"]["auc"] == pytest.approx(cell_roc(scores, cells.classes).auc, abs=1e-9)
    # only the explained box of the slide-wide canvas was read, not the whole 500 x 500 canvas
    assert widget.controller.outcome.values.shape == part.shape
    assert result["explained_area"]["placement"] == PLACEMENT.to_dict()
    assert f"{int(on.sum())} of {len(cells.rows)} cells" in widget.summary.text()


def test_only_heatmap_layers_offered_and_the_newest_chosen(make_napari_viewer):
    from napari_xhisto._widgets.evaluate import EvaluateWidget
    from napari_xhisto._widgets.layers import heatmap_layer_data, probability_layer_data

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64, 3), np.uint8), rgb=True, name="slide",
                     metadata={"xhisto": {"slide_path": "s.svs", "mpp": MPP}})
    viewer.add_image(np.zeros((8, 8)), name="plain image")
    heat, cells, regions = _scene(seed=5)
    data, kw, _ = heatmap_layer_data(heat, PLACEMENT, mpp=MPP, provenance={}, name="first")
    viewer.add_image(data, **kw)
    data, kw, _ = probability_layer_data(np.full((6, 8, 2), 0.5), PLACEMENT, class_index=1,
                                         class_names=["other", "tumour"], mpp=MPP, provenance={},
                                         name="p(tumour)")
    viewer.add_image(data, **kw)
    widget = EvaluateWidget(viewer)

    def items(box):
        return [box.itemText(i) for i in range(box.count())]

    assert items(widget.heatmap_box) == ["p(tumour)", "first"]  # newest first, no slide/plain
    assert widget.heatmap_box.currentText() == "p(tumour)"
    assert items(widget.prob_box) == ["(none)", "p(tumour)"]
    assert [widget.compare_list.item(i).text() for i in range(widget.compare_list.count())] == [
        "first"]  # every heatmap but the one chosen
    viewer.layers.move(viewer.layers.index("first"), len(viewer.layers))  # order is not age
    data, kw, _ = heatmap_layer_data(heat, PLACEMENT, mpp=MPP, provenance={}, name="second")
    viewer.add_image(data, **kw)
    assert items(widget.heatmap_box) == ["second", "p(tumour)", "first"]
    assert widget.heatmap_box.currentText() == "second"  # a new heatmap becomes the choice
    viewer.layers.remove("second")
    assert widget.heatmap_box.currentText() in ("p(tumour)", "first")


def test_classes_are_drop_downs_from_layers_and_model(make_napari_viewer):
    from napari_xhisto._widgets.evaluate import EvaluateWidget
    from napari_xhisto._widgets.layers import heatmap_layer_data

    viewer = make_napari_viewer()
    heat, cells, regions = _scene(seed=6)
    prov = {"target_class": "stroma", "model": {"class_names": ["stroma", "mitosis"]}}
    data, kw, _ = heatmap_layer_data(heat, PLACEMENT, mpp=MPP, provenance=prov, name="heat")
    viewer.add_image(data, **kw)
    widget = EvaluateWidget(viewer)
    assert widget.positive_box.count() == 2  # no cells yet: the model's classes
    _add_annotations(viewer, cells, regions)
    positives = [widget.positive_box.itemText(i) for i in range(widget.positive_box.count())]
    assert sorted(positives[:3]) == ["lymphocyte", "stroma", "tumour"] and positives[3] == "mitosis"
    assert widget.positive_box.currentText() == "stroma"  # the heatmap's target class
    locs = [widget.localize_box.itemText(i) for i in range(widget.localize_box.count())]
    assert locs == ["(none)", "necrosis", "tumour area"]
    assert widget.localize_box.currentText() == "tumour area"
    assert "µm" in widget.radius_spin.suffix() and widget.radius_spin.toolTip()
    widget.positive_box.setCurrentText("lymphocyte")
    widget.random_spin.setValue(0)
    result = widget.evaluate()
    assert result["parameters"]["positive"] == ["lymphocyte"]
    scores = cell_scores(heat, cells, radius_um=8.0, mpp=MPP, placement=PLACEMENT)
    scores[~_on_area(heat, cells)] = np.nan  # the widget scores the cells on the explained area
    assert result["roc"]["auc"] == pytest.approx(cell_roc(scores, cells.classes,
                                                          positive="lymphocyte").auc, abs=1e-9)


def test_cancel_stops_the_worker_and_keeps_the_last_result(make_napari_viewer, qtbot):
    from napari_xhisto._widgets.evaluate import EvaluateWidget

    viewer = make_napari_viewer()
    heat, cells, regions = _scene(seed=7)
    _add(viewer, heat, cells, regions)
    widget = EvaluateWidget(viewer)
    widget.random_spin.setValue(0)
    first = widget.evaluate()
    widget.random_spin.setValue(1000)  # long enough to be cancelled on the way
    widget.run_button.click()
    assert widget.worker is not None and widget.cancel_button.isEnabled()
    assert not widget.run_button.isEnabled()
    qtbot.waitUntil(lambda: widget.progress.maximum() > 1 and widget.progress.value() > 0,
                    timeout=60000)
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60000)
    assert widget.result is first  # no result delivered after Cancel
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()
    assert widget.summary.text().startswith("cancelled")


def test_minimum_size_fits_a_narrow_dock(make_napari_viewer):
    from napari_xhisto._widgets.evaluate import EvaluateWidget

    viewer = make_napari_viewer()
    heat, cells, regions = _scene(seed=8)
    _add(viewer, heat, cells, regions)
    widget = EvaluateWidget(viewer)
    widget.random_spin.setValue(0)
    widget.evaluate()
    assert widget.minimumSizeHint().width() <= 400
    assert widget.scroll.widget().minimumSizeHint().width() <= 400  # nothing cut off either
    assert widget.minimumSizeHint().height() <= 400  # tall content scrolls


def test_annotate_class_map_is_used_when_scoring(make_napari_viewer, tmp_path):
    """QuPath names ("Tumor", "Immune cells") imported in Annotate are scored under the roles of
    its class map: the default suggestion makes "Tumor" the positives; a role changed in the
    mapping drop-down changes what Evaluate scores."""
    from napari_xhisto._widgets.annotate import AnnotateWidget
    from napari_xhisto._widgets.evaluate import EvaluateWidget
    from napari_xhisto._widgets.layers import heatmap_layer_data

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((600, 700), dtype=np.uint8), scale=(MPP, MPP), name="slide",
                     units=("µm", "µm"), metadata={"xhisto": {"slide_path": str(tmp_path / "s.svs"),
                                                              "mpp": MPP}})
    heat, cells, regions = _scene(seed=11)
    qupath = {"tumour": "Tumor", "stroma": "Stroma", "lymphocyte": "Immune cells"}
    names = np.array([qupath[c] for c in cells.classes])
    features = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [c, r]},
                 "properties": {"objectType": "detection", "classification": str(k)}}
                for r, c, k in zip(cells.rows, cells.cols, names)]
    ring = regions[1].exterior[:, ::-1].tolist()
    features.append({"type": "Feature", "geometry": {"type": "Polygon",
                                                     "coordinates": [ring + ring[:1]]},
                     "properties": {"objectType": "annotation", "classification": "Tumor"}})
    path = tmp_path / "q.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    annotate = AnnotateWidget(viewer, autosave=False, region_classes=())
    annotate.import_file(path)
    data, kw, _ = heatmap_layer_data(heat, PLACEMENT, mpp=MPP, provenance={}, name="heat")
    viewer.add_image(data, **kw)
    widget = EvaluateWidget(viewer)
    positives = [widget.positive_box.itemText(i) for i in range(widget.positive_box.count())]
    assert set(positives) >= {"tumour", "stroma", "lymphocyte"} and "Tumor" not in positives
    assert widget.positive_box.currentText() == "tumour"
    assert widget.localize_box.currentText() == "tumour area"  # the "Tumor" polygon
    widget.random_spin.setValue(0)
    result = widget.evaluate()
    scores = cell_scores(heat, cells, radius_um=8.0, mpp=MPP, placement=PLACEMENT)
    ok = np.isfinite(scores) & _on_area(heat, cells)
    assert result["roc"]["n_positive"] == int(((names == "Tumor") & ok).sum())
    assert result["roc"]["auc"] == pytest.approx(
        roc_auc_score(names[ok] == "Tumor", scores[ok]), abs=1e-9)
    assert "tumour area" in result["localization"]

    # the user maps "Immune cells" to "ignore" in Annotate: Evaluate leaves them out
    annotate.mapping_box("Immune cells", "cell").setCurrentText("ignore")
    result = widget.evaluate()
    keep = ok & (names != "Immune cells")
    assert result["cells"]["n"] == int(keep.sum())
    assert result["roc"]["auc"] == pytest.approx(
        roc_auc_score(names[keep] == "Tumor", scores[keep]), abs=1e-9)


def test_cells_of_one_class_show_why_there_is_no_auc_and_keep_the_regions(make_napari_viewer,
                                                                          tmp_path):
    # every cell on the area is stroma: no cell ROC (said under the AUC table), while the
    # regions, localisation and plots are filled as usual
    from napari_xhisto._widgets.evaluate import EvaluateWidget

    viewer = make_napari_viewer()
    heat, cells, regions = _scene()
    cells = CellPoints(cells.rows, cells.cols, np.full(len(cells.rows), "stroma"))
    _add(viewer, heat, cells, regions)
    widget = EvaluateWidget(viewer)
    widget.random_spin.setValue(2)
    result = widget.evaluate()
    assert "roc" not in result and widget.auc_table.rowCount() == 0
    assert widget.auc_caption.text().startswith("No cell AUC: a cell ROC needs scored cells of")
    assert widget.auc_caption.isVisibleTo(widget)
    expected = region_relevance(heat, regions, placement=PLACEMENT)
    assert [g["mean"] for g in result["regions"]] == pytest.approx([e.mean for e in expected])
    assert widget.region_table.rowCount() == 2 and widget.loc_table.rowCount() == 3
    truth = truth_mask(regions, heat.shape, placement=PLACEMENT, classes=("tumour area",))
    assert widget.loc_table.item(0, 1).text() == f"{pxap(heat, truth).pxap:.4g}"
    pngs = widget.save_plots(tmp_path / "plots")
    assert pngs and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    from napari_xhisto._widgets.evaluate.plots import roc_figure

    assert roc_figure(result).axes[0].get_title() == (
        "no cell ROC: the cells scored are all of one group")
