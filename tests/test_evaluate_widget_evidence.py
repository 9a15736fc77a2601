"""The Evaluate widget shows the evidence the engine computes: every AUC with its 95% interval
and n, paired differences with DeLong's p, the radius sweep and the localisation-vs-threshold
curves of every heatmap, the conventions in captions, and files that carry them."""

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from test_evaluate_widget import MPP, PLACEMENT, _add, _on_area, _scene

from napari_xhisto.metrics import cell_scores, confusion_over_thresholds, pxap
from napari_xhisto.metrics.report import truth_mask

pytestmark = pytest.mark.viewer

C0, C1 = (31, 119, 180), (255, 127, 14)  # matplotlib's first two cycle colours


def _has_colour(image: np.ndarray, rgb, min_pixels: int = 30) -> bool:
    close = np.abs(image[..., :3].astype(int) - np.array(rgb)).sum(axis=-1) < 40
    return int(close.sum()) >= min_pixels


@pytest.fixture
def evaluated(make_napari_viewer):
    from napari_xhisto._widgets.evaluate import EvaluateWidget

    viewer = make_napari_viewer()
    heat, cells, regions = _scene(seed=4)
    rng = np.random.default_rng(9)
    heat_b = (0.05 * heat + rng.normal(0, 0.6, heat.shape)).astype(np.float32)  # a noisier map
    _add(viewer, heat, cells, regions, heat_b=heat_b)
    widget = EvaluateWidget(viewer)
    widget.heatmap_box.setCurrentText("heat A")
    widget.set_checked(widget.compare_list, ["heat B"])
    widget.random_spin.setValue(0)
    widget.boot_spin.setValue(200)
    result = widget.evaluate()
    return widget, result, heat, heat_b, cells, regions


def test_aucs_with_intervals_and_the_paired_difference(evaluated, tmp_path):
    widget, result, heat, heat_b, cells, _ = evaluated
    on = _on_area(heat, cells)
    sa = cell_scores(heat, cells, radius_um=8.0, mpp=MPP, placement=PLACEMENT)
    sb = cell_scores(heat_b, cells, radius_um=8.0, mpp=MPP, placement=PLACEMENT)
    ok = on & np.isfinite(sa) & np.isfinite(sb)
    y = cells.classes[ok] == "tumour"
    auc_a, auc_b = roc_auc_score(y, sa[ok]), roc_auc_score(y, sb[ok])
    rows = [[widget.auc_table.item(i, j).text() for j in range(2)] for i in range(2)]
    assert [r[0] for r in rows] == ["heat A", "heat B"]
    for row, m, auc in zip(rows, (result, result["compared"]["heat B"]), (auc_a, auc_b)):
        ci = m["roc"]["ci"]
        assert row[1] == (f"{auc:.4g} [{ci['low']:.3f}, {ci['high']:.3f}]\n"
                          f"n = {int(y.sum())} + / {int((~y).sum())} −")
        assert ci["low"] < ci["high"]
    assert widget.diff_table.rowCount() == 1
    diff = [widget.diff_table.item(0, j).text() for j in range(2)]
    c = result["auc_comparisons"][0]
    assert c["difference"] == pytest.approx(auc_b - auc_a, abs=1e-12)
    assert c["low"] < c["difference"] < c["high"] < 0  # B is worse, and the interval says so
    assert diff[0] == "heat B\n− heat A"
    assert diff[1] == (f"{auc_b - auc_a:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]\n"
                       f"p = {c['delong_p']:.2g} (DeLong)")
    assert c["delong_p"] < 0.05
    caption = widget.auc_caption.text()
    assert "rectified" in caption and "95%" in caption and "200 resamples" in caption
    assert "DeLong" in caption and "8 µm disc" in caption
    # the ROC plot: one curve per heatmap, the legend with the intervals
    image = widget.controller.outcome.images["roc"]
    assert _has_colour(image, C0) and _has_colour(image, C1)

    # files carry the intervals and the conventions
    with open(widget.export_csv(tmp_path / "m.csv")) as fh:
        table = list(csv.DictReader(fh))
    aucs = [r for r in table if r["table"] == "auc" and r["name"] == "heatmap"]
    assert [r["heatmap"] for r in aucs] == ["heat A", "heat B"]
    assert float(aucs[0]["low"]) == pytest.approx(result["roc"]["ci"]["low"])
    assert float(aucs[1]["high"]) == pytest.approx(result["compared"]["heat B"]["roc"]["ci"]["high"])
    (d,) = [r for r in table if r["table"] == "auc_difference"]
    assert float(d["difference"]) == pytest.approx(c["difference"])
    assert float(d["delong_p"]) == pytest.approx(c["delong_p"])
    conv = {r["name"]: r["map"] for r in table if r["table"] == "convention"}
    assert conv["cell_scores"] == "rectified" and conv["localization"] == "rectified"
    assert sum(r["table"] == "radius_sweep" for r in table) == 24
    # JSON: xhisto evaluate's multi-heatmap form, which the HTML report reads
    js = json.loads(widget.export_json(tmp_path / "m.json").read_text())
    assert js["labels"] == ["heat A", "heat B"]
    assert js["heatmaps"]["heat A"]["roc"]["ci"]["n_boot"] == 200
    assert js["heatmaps"]["heat B"]["roc"]["ci"]["level"] == 0.95
    assert "scores" not in js["heatmaps"]["heat B"]["cells"]
    assert js["auc_comparisons"][0]["delong_p"] == pytest.approx(c["delong_p"])
    assert js["heatmaps"]["heat A"]["conventions"]["cell_scores"]["map"] == "rectified"
    assert js["explained_area"]["n_cells_on_area"] == int(on.sum())
    from napari_xhisto.export.report import write_report

    html = write_report(tmp_path / "r.html", metrics=js).read_text()
    assert "heat B" in html and "DeLong" in html


def test_radius_sweep_plot_and_table(evaluated):
    widget, result, heat, heat_b, cells, _ = evaluated
    sweep = result["radius_sweep"]
    assert [e["radius_um"] for e in sweep] == list(range(1, 13))
    on = _on_area(heat, cells)
    s3 = cell_scores(heat, cells, radius_um=3.0, mpp=MPP, placement=PLACEMENT)
    ok = on & np.isfinite(s3)
    assert sweep[2]["auc"] == pytest.approx(roc_auc_score(cells.classes[ok] == "tumour", s3[ok]))
    assert sweep[7]["auc"] == pytest.approx(result["roc"]["auc"])  # 8 µm: the main radius
    assert widget.radius_table.rowCount() == 12 and widget.radius_table.columnCount() == 3
    headers = [widget.radius_table.horizontalHeaderItem(j).text() for j in range(3)]
    assert headers == ["radius µm", "heat A", "heat B"]
    assert widget.radius_table.item(2, 0).text() == "3"
    assert widget.radius_table.item(2, 1).text() == (
        f"{sweep[2]['auc']:.4g}\n[{sweep[2]['low']:.3f}, {sweep[2]['high']:.3f}]")
    b3 = result["compared"]["heat B"]["radius_sweep"][2]
    assert widget.radius_table.item(2, 2).text().startswith(f"{b3['auc']:.4g}\n[")
    from napari_xhisto._widgets.evaluate.plots import radius_figure

    fig = radius_figure(result)
    ax = fig.axes[0]
    curves = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert [line.get_label() for line in curves] == ["heat A", "heat B"]
    assert len(ax.collections) == 2  # one interval band per heatmap
    assert ax.get_xlabel() == "cell neighbourhood radius (µm)"
    image = widget.controller.outcome.images["radius"]
    assert _has_colour(image, C0) and _has_colour(image, C1)
    assert not widget.radius_plot.pixmap.isNull()
    assert "bootstrap intervals" in widget.radius_caption.text()


def test_localisation_curves_of_every_heatmap_against_the_threshold(evaluated):
    widget, result, heat, heat_b, cells, regions = evaluated
    truth = truth_mask(regions, heat.shape, placement=PLACEMENT, classes=("tumour area",))
    for m, values in ((result, heat), (result["compared"]["heat B"], heat_b)):
        curve = m["localization"]["tumour area"]["curve"]
        ref = confusion_over_thresholds(np.maximum(values, 0), truth)  # rectified, 0.001 grid
        assert len(curve["thresholds"]) == 1000
        np.testing.assert_allclose(curve["dice"], ref["curve"]["dice"], atol=1e-12)
        assert m["localization"]["tumour area"]["pxap"] == pytest.approx(pxap(values, truth).pxap)
    from napari_xhisto._widgets.evaluate.plots import localisation_figures

    figs = localisation_figures(result)
    dice_lines = [ln for ln in figs["dice"].axes[0].get_lines()]
    assert [ln.get_label() for ln in dice_lines] == ["heat A", "heat B"]
    rates = [ln.get_label() for ln in figs["rates"].axes[0].get_lines()]
    assert len(rates) == 8 and "heat B: FP rate" in rates and "heat A: TN rate" in rates
    legend = [t.get_text() for t in figs["rates"].axes[0].get_legend().get_texts()]
    assert legend == ["heat A", "heat B", "TP rate", "FP rate", "FN rate", "TN rate"]
    for fig in figs.values():
        assert fig.axes[0].get_xlabel() == "threshold (rectified map, min-max scaled to [0, 1])"
    for key in ("dice", "rates"):
        image = widget.controller.outcome.images[key]
        assert _has_colour(image, C0) and _has_colour(image, C1)
    assert not widget.loc_plot.pixmap.isNull() and not widget.rates_plot.pixmap.isNull()
    assert "rectified" in widget.loc_caption.text() and "0.001" in widget.loc_caption.text()
    assert widget.loc_caption.text().startswith("Region to outline: tumour area.")
    assert "min-max normalised" not in widget.loc_caption.text()


def test_no_sweep_when_unticked_and_bad_radii_say_what_to_do(evaluated):
    from napari_xhisto.errors import XhistoError

    widget, *_ = evaluated
    widget.sweep_box.setChecked(False)
    assert not widget.sweep_row.isEnabled()
    widget.set_checked(widget.compare_list, [])
    result = widget.evaluate()
    assert "radius_sweep" not in result and widget.radius_table.rowCount() == 0
    assert widget.radius_caption.text() == ""  # nothing to explain
    assert widget.diff_table.rowCount() == 0 and widget.auc_table.rowCount() == 4
    assert "DeLong" not in widget.auc_caption.text()
    widget.sweep_box.setChecked(True)
    widget.sweep_from.setValue(10)
    widget.sweep_to.setValue(2)
    with pytest.raises(XhistoError, match="swap them"):
        widget.evaluate()
