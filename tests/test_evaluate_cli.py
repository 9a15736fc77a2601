"""``xhisto evaluate`` end to end: files in, JSON/CSV out, numbers equal to the metrics API."""

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from napari_xhisto.annotations import AnnotationSet, CellPoints, RegionShape, write_annotations
from napari_xhisto.cli import main
from napari_xhisto.export.heatmap_io import write_heatmap
from napari_xhisto.geometry import Placement
from napari_xhisto.metrics import cell_scores, pxap, region_mask
from napari_xhisto.metrics.report import truth_mask


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    placement = Placement(origin_row=400, origin_col=200, step_row=4, step_col=4)
    heat = rng.normal(0, 0.2, (120, 150)).astype(np.float32)
    heat[20:70, 30:90] += 1.0  # the "tumour area" lights up
    tumour = np.array([[400 + 4 * 20.5, 200 + 4 * 30.5], [400 + 4 * 69.5, 200 + 4 * 30.5],
                       [400 + 4 * 69.5, 200 + 4 * 89.5], [400 + 4 * 20.5, 200 + 4 * 89.5]])
    necrosis = np.array([[800.0, 300], [800, 500], [850, 500], [850, 300]])
    n = 400
    rows = rng.uniform(300, 400 + 4 * 120, n)  # some above the heatmap
    cols = rng.uniform(200, 200 + 4 * 150, n)
    inside = (rows > 400 + 4 * 21) & (rows < 400 + 4 * 69) & (cols > 200 + 4 * 31) & (cols < 200 + 4 * 89)
    classes = np.where(inside, "tumour", rng.choice(["stroma", "lymphocyte"], n))
    cells = CellPoints(rows, cols, classes, ids=np.array([f"c{i}" for i in range(n)]))
    regions = [RegionShape("tumour area", tumour), RegionShape("necrosis", necrosis)]
    heat_path = write_heatmap(tmp_path / "heat.ome.tif", heat, placement, mpp=0.5,
                              provenance={"method": "test"})
    ann_path = tmp_path / "cells.geojson"
    write_annotations(ann_path, AnnotationSet(cells, regions, {}))
    return heat_path, ann_path, heat.astype(np.float64), placement, cells, regions


def test_evaluate_writes_metrics_equal_to_api(files, tmp_path, capsys):
    heat_path, ann_path, heat, placement, cells, regions = files
    out, table = tmp_path / "m" / "metrics.json", tmp_path / "cells.csv"
    rc = main(["evaluate", "--heatmap", str(heat_path), "--cells", str(ann_path),
               "--radius-um", "4", "--out", str(out), "--csv", str(table), "--random-runs", "3"])
    assert rc == 0
    assert "cell AUC" in capsys.readouterr().out
    m = json.loads(out.read_text())
    scores = cell_scores(heat, cells, radius_um=4, mpp=0.5, placement=placement)
    ok = np.isfinite(scores)
    assert m["cells"]["n_off_heatmap"] == (~ok).sum() > 0
    assert m["roc"]["auc"] == pytest.approx(roc_auc_score(cells.classes[ok] == "tumour", scores[ok]))
    assert m["roc"]["auc"] > 0.9
    assert m["baselines"]["all_zero"] == 0.5 and m["baselines"]["all_one"] == 0.5
    nec = region_mask(regions[1], heat.shape, placement=placement)
    assert m["regions"][1]["cls"] == "necrosis"
    assert m["regions"][1]["mean"] == pytest.approx(heat[nec].mean(), rel=1e-6)
    truth = truth_mask(regions, heat.shape, placement=placement, classes=("tumour area",))
    assert m["localization"]["tumour area"]["pxap"] == pytest.approx(pxap(heat, truth).pxap)
    assert [p["percentile"] for p in m["localization"]["tumour area"]["at_percentiles"]] == [50, 75, 90]
    assert m["inputs"]["provenance"]["method"] == "test"
    assert sum(t["n_positive"] for t in m["per_tile"]) == m["roc"]["n_positive"]
    with open(table) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(cells.rows) and rows[0]["id"] == "c0"
    assert float(rows[np.flatnonzero(ok)[0]]["score"]) == pytest.approx(scores[ok][0], rel=1e-5)


def test_evaluate_errors_are_one_line(files, tmp_path, capsys):
    heat_path, ann_path, *_ = files
    rc = main(["evaluate", "--heatmap", str(heat_path), "--radius-um", "4", "--out",
               str(tmp_path / "x.json")])
    assert rc == 1 and "give --cells" in capsys.readouterr().err
    rc = main(["evaluate", "--heatmap", str(heat_path), "--cells", str(ann_path), "--radius-um",
               "4", "--out", str(tmp_path / "x.json"), "--positive", "mitosis"])
    err = capsys.readouterr().err
    assert rc == 1 and "mitosis" in err and len(err.strip().splitlines()) == 1


def test_evaluate_compare_flags_sampling_bias(files, tmp_path):
    heat_path, ann_path, heat, placement, cells, regions = files
    nec = region_mask(regions[1], heat.shape, placement=placement)
    clean = heat.copy()
    clean[nec] = -0.5
    biased = heat.copy()
    biased[nec] = 0.7
    a = write_heatmap(tmp_path / "a.ome.tif", clean.astype(np.float32), placement, mpp=0.5)
    b = write_heatmap(tmp_path / "b.ome.tif", biased.astype(np.float32), placement, mpp=0.5)
    out = tmp_path / "cmp.json"
    assert main(["evaluate", "--heatmap", str(a), "--compare", str(b), "--regions", str(ann_path),
                 "--radius-um", "4", "--out", str(out)]) == 0
    cmp = json.loads(out.read_text())["comparison"]
    assert cmp["per_class"]["necrosis"]["mean_A"] == pytest.approx(-0.5, abs=1e-6)
    assert cmp["per_class"]["necrosis"]["mean_B"] == pytest.approx(0.7, abs=1e-6)
    assert len(cmp["flags"]) == 1 and cmp["flags"][0].startswith("necrosis: model B")


def test_evaluate_json_has_intervals_conventions_units_and_sweep(files, tmp_path):
    heat_path, ann_path, heat, placement, cells, regions = files
    out = tmp_path / "m.json"
    assert main(["evaluate", "--heatmap", str(heat_path), "--cells", str(ann_path),
                 "--radius-um", "4", "--out", str(out), "--random-runs", "2", "--bootstrap", "200",
                 "--radius-sweep", "2:6:2"]) == 0
    m = json.loads(out.read_text())
    ci = m["roc"]["ci"]
    assert ci["low"] < m["roc"]["auc"] < ci["high"] or ci["low"] == ci["high"] == m["roc"]["auc"]
    assert (ci["n_boot"], ci["level"], ci["seed"]) == (200, 0.95, 0)
    assert ci["n_positive"] == m["roc"]["n_positive"]
    assert m["conventions"]["cell_scores"]["map"] == "rectified"
    assert m["conventions"]["localization"]["map"] == "rectified"
    assert m["units"]["hausdorff"] == "level-0 px" and m["units"]["hausdorff_um"] == "µm"
    loc = m["localization"]["tumour area"]
    assert loc["threshold_step"] == 0.001 and len(loc["curve"]["thresholds"]) == 1000
    for key in ("dice", "iou", "tpr", "fpr", "fnr", "tnr"):
        assert len(loc["curve"][key]) == 1000
    row = loc["at_percentiles"][0]
    assert row["hausdorff_um"] == pytest.approx(row["hausdorff"] * 0.5)
    assert [s["radius_um"] for s in m["radius_sweep"]] == [2.0, 4.0, 6.0]
    mid = m["radius_sweep"][1]
    assert mid["auc"] == pytest.approx(m["roc"]["auc"])  # the sweep at 4 µm is the main ROC
    ok = np.isfinite(cell_scores(heat, cells, radius_um=6, mpp=0.5, placement=placement))
    s6 = cell_scores(heat, cells, radius_um=6, mpp=0.5, placement=placement)
    assert m["radius_sweep"][2]["auc"] == pytest.approx(
        roc_auc_score(cells.classes[ok] == "tumour", s6[ok]))


def test_evaluate_several_heatmaps_compares_aucs(files, tmp_path, capsys):
    heat_path, ann_path, heat, placement, cells, regions = files
    rng = np.random.default_rng(1)
    blurred = (0.3 * heat + rng.normal(0, 0.4, heat.shape)).astype(np.float32)
    b_path = write_heatmap(tmp_path / "b.ome.tif", blurred, placement, mpp=0.5,
                           provenance={"method": "blurred"})
    out = tmp_path / "multi.json"
    table = tmp_path / "cells.csv"
    assert main(["evaluate", "--heatmap", str(heat_path), "--heatmap", str(b_path),
                 "--cells", str(ann_path), "--radius-um", "4", "--out", str(out),
                 "--random-runs", "1", "--bootstrap", "200", "--csv", str(table)]) == 0
    printed = capsys.readouterr().out
    assert "DeLong p" in printed
    m = json.loads(out.read_text())
    assert m["labels"] == ["test", "blurred"]
    c = m["auc_comparisons"][0]
    a_auc, b_auc = m["heatmaps"]["test"]["roc"]["auc"], m["heatmaps"]["blurred"]["roc"]["auc"]
    assert c["difference"] == pytest.approx(b_auc - a_auc)
    assert c["low"] <= c["difference"] <= c["high"] and 0 <= c["delong_p"] <= 1
    from napari_xhisto.metrics.uncertainty import delong_test

    sa = cell_scores(heat, cells, radius_um=4, mpp=0.5, placement=placement)
    sb = cell_scores(blurred.astype(np.float64), cells, radius_um=4, mpp=0.5, placement=placement)
    assert c["delong_p"] == pytest.approx(delong_test(sa, sb, cells.classes == "tumour")["p_value"])
    with open(table) as fh:
        header = next(csv.reader(fh))
    assert header[-2:] == ["score_test", "score_blurred"]


def test_evaluate_study_scale_puts_runs_on_one_scale(files, tmp_path):
    heat_path, ann_path, heat, placement, cells, regions = files
    store = tmp_path / "study.json"
    paths = []
    for k, peak in enumerate((2.0, 8.0)):  # two runs, normalised by their own global max
        prov = {"method": "lrp", "slide": "s.svs", "normalize": "global-max",
                "normalization_scale": peak, "target": 1, "target_class": "tumour"}
        paths.append(write_heatmap(tmp_path / f"r{k}.ome.tif", heat.astype(np.float32), placement,
                                   mpp=0.5, provenance=prov))
    for k, p in enumerate(paths):
        out = tmp_path / f"s{k}.json"
        assert main(["evaluate", "--heatmap", str(p), "--regions", str(ann_path), "--radius-um",
                     "4", "--out", str(out), "--study-scale", str(store)]) == 0
    first = json.loads((tmp_path / "s0.json").read_text())
    second = json.loads((tmp_path / "s1.json").read_text())
    assert second["study_scale"]["study_max"] == 8.0 and second["study_scale"]["raised_max"]
    assert first["study_scale"]["factor_applied"] == 1.0  # alone in the store at the time
    # raw relevance = stored x run peak; divided by the study max 8: run 2 keeps its values
    assert second["regions"][1]["mean"] == pytest.approx(heat[region_mask(
        regions[1], heat.shape, placement=placement)].mean(), rel=1e-5)
    assert second["inputs"]["target"] == "tumour (class 1)"
    again = tmp_path / "s0-again.json"  # run 1 again, now on the study's scale: x 2 / 8
    assert main(["evaluate", "--heatmap", str(paths[0]), "--regions", str(ann_path),
                 "--radius-um", "4", "--out", str(again), "--study-scale", str(store)]) == 0
    again = json.loads(again.read_text())
    assert again["regions"][1]["mean"] == pytest.approx(0.25 * second["regions"][1]["mean"],
                                                        rel=1e-5)
    stored = json.loads(store.read_text())
    (entry,) = stored["entries"].values()
    assert [r["peak"] for r in entry["runs"]] == [2.0, 8.0, 2.0] and entry["max"] == 8.0
    bad = write_heatmap(tmp_path / "pp.ome.tif", heat.astype(np.float32), placement, mpp=0.5,
                        provenance={"normalize": "per-patch"})
    assert main(["evaluate", "--heatmap", str(bad), "--regions", str(ann_path), "--radius-um",
                 "4", "--out", str(tmp_path / "x.json"), "--study-scale", str(store)]) == 1


def test_large_maps_skip_the_percentile_table_and_say_so(files):
    from napari_xhisto.metrics.report import evaluate_heatmap

    heat_path, ann_path, heat, placement, cells, regions = files
    out = evaluate_heatmap(heat.astype(np.float32), placement=placement, mpp=0.5, regions=regions,
                           radius_um=4, max_percentile_pixels=100)
    loc = out["localization"]["tumour area"]
    assert loc["at_percentiles"] == [] and "crop the heatmap" in loc["at_percentiles_skipped"]
    truth = truth_mask(regions, heat.shape, placement=placement, classes=("tumour area",))
    assert loc["pxap"] == pytest.approx(pxap(heat, truth).pxap)  # the sweep runs at any size


def _qupath_cells(tmp_path, heat_path):
    """A QuPath-style file: cells classed "Tumor" / "Stroma" / "Immune cells" (QuPath's
    standard names), a "Tumor" annotation polygon, as QuPath exports them."""
    rng = np.random.default_rng(1)
    n = 300
    rows, cols = rng.uniform(420, 860, n), rng.uniform(220, 780, n)
    inside = (rows > 400 + 4 * 21) & (rows < 400 + 4 * 69) & (cols > 200 + 4 * 31) & (cols < 200 + 4 * 89)
    names = np.where(inside, "Tumor", rng.choice(["Stroma", "Immune cells"], n))
    features = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [c, r]},
                 "properties": {"objectType": "detection",
                                "classification": {"name": str(k), "color": [200, 0, 0]}}}
                for r, c, k in zip(rows, cols, names)]
    ring = [[200 + 4 * 30.5, 400 + 4 * 20.5], [200 + 4 * 89.5, 400 + 4 * 20.5],
            [200 + 4 * 89.5, 400 + 4 * 69.5], [200 + 4 * 30.5, 400 + 4 * 69.5],
            [200 + 4 * 30.5, 400 + 4 * 20.5]]
    features.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                     "properties": {"objectType": "annotation",
                                    "classification": {"name": "Tumor", "color": [200, 0, 0]}}})
    path = tmp_path / "qupath.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path, rows, cols, names


def test_evaluate_maps_qupath_class_names_to_roles(files, tmp_path, capsys):
    heat_path, _, heat, placement, *_ = files
    path, rows, cols, names = _qupath_cells(tmp_path, heat_path)
    out = tmp_path / "q.json"
    # no --positive, no --class-map: "Tumor" cells are the default positives (tumour)
    assert main(["evaluate", "--heatmap", str(heat_path), "--cells", str(path), "--radius-um",
                 "4", "--random-runs", "0", "--bootstrap", "50", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "Tumor -> tumour" in said and "Immune cells -> lymphocyte" in said
    m = json.loads(out.read_text())
    scored = CellPoints(rows, cols, names)
    scores = cell_scores(heat, scored, radius_um=4, mpp=0.5, placement=placement)
    ok = np.isfinite(scores)
    assert m["roc"]["n_positive"] == int(((names == "Tumor") & ok).sum()) > 20
    assert m["roc"]["auc"] == pytest.approx(roc_auc_score(names[ok] == "Tumor", scores[ok]))
    assert m["cells"]["classes"] == {"tumour": int((names == "Tumor").sum()),
                                     "stroma": int((names == "Stroma").sum()),
                                     "lymphocyte": int((names == "Immune cells").sum())}
    # the "Tumor" polygon is the default region to localise ("tumour area")
    assert "tumour area" in m["localization"]
    cmap = m["inputs"]["class_map"]
    assert cmap["cells"] == {"Tumor": "tumour", "Stroma": "stroma", "Immune cells": "lymphocyte"}
    assert cmap["regions"] == {"Tumor": "tumour area"} and m["inputs"]["class_map_file"] is None

    # a class map file: immune cells are the positives now, stroma left out of scoring
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"cells": {"Immune cells": "tumour", "Tumor": "other",
                                             "Stroma": "ignore"}}))
    out2 = tmp_path / "q2.json"
    assert main(["evaluate", "--heatmap", str(heat_path), "--cells", str(path), "--radius-um",
                 "4", "--random-runs", "0", "--bootstrap", "50", "--class-map", str(mapping),
                 "--out", str(out2)]) == 0
    m2 = json.loads(out2.read_text())
    keep = names != "Stroma"
    assert m2["cells"]["n"] == int(keep.sum())
    assert m2["roc"]["n_positive"] == int(((names == "Immune cells") & ok).sum())
    assert m2["roc"]["auc"] == pytest.approx(
        roc_auc_score(names[ok & keep] == "Immune cells", scores[ok & keep]))
    assert m2["inputs"]["class_map"]["cells"]["Stroma"] == "ignore"
    assert m2["inputs"]["class_map_file"] == str(mapping)


def test_evaluate_class_map_and_numbers_errors_are_one_line(files, tmp_path, capsys):
    heat_path, ann_path, *_ = files
    base = ["evaluate", "--heatmap", str(heat_path), "--cells", str(ann_path),
            "--out", str(tmp_path / "x.json")]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"cells": {"Tumor": "tumor"}}))
    for extra, words in ((["--radius-um", "4", "--class-map", str(bad)], "did you mean 'tumour'"),
                         (["--radius-um", "4", "--class-map", str(tmp_path / "no.json")],
                          "class map not found"),
                         (["--radius-um", "-2"], "--radius-um must be"),
                         (["--radius-um", "nan"], "--radius-um must be a finite number"),
                         (["--radius-um", "4", "--mpp", "0"], "--mpp must be"),
                         (["--radius-um", "4", "--bootstrap", "0"], "--bootstrap must be"),
                         (["--radius-um", "4", "--ci-level", "1.5"], "--ci-level must be"),
                         (["--radius-um", "4", "--threshold-step", "0"], "--threshold-step"),
                         (["--radius-um", "4", "--random-runs", "-1"], "--random-runs")):
        rc = main(base + extra)
        err = capsys.readouterr().err
        assert rc == 1 and words in err and len(err.strip().splitlines()) == 1, (extra, err)
    assert not (tmp_path / "x.json").exists()


def test_no_tumour_cell_on_the_heatmap_skips_the_auc_and_scores_the_regions(files, tmp_path,
                                                                             capsys):
    # the tumour cells all lie above the heatmap: the cell AUC is skipped with the reason,
    # the regions and localisation are still written (before, the whole run failed)
    heat_path, _, heat, placement, cells, regions = files
    off = np.where(cells.classes == "tumour", 100.0, cells.rows)
    path = tmp_path / "off.geojson"
    write_annotations(path, AnnotationSet(CellPoints(off, cells.cols, cells.classes), regions, {}))
    out = tmp_path / "m.json"
    assert main(["evaluate", "--heatmap", str(heat_path), "--cells", str(path), "--radius-um",
                 "4", "--out", str(out), "--random-runs", "2"]) == 0
    text = capsys.readouterr().out
    assert "no cell AUC: a cell ROC needs scored cells of both groups, got 0 positive (tumour)" in text
    m = json.loads(out.read_text())
    assert "roc" not in m and m["cells"]["roc_skipped"].startswith("a cell ROC needs")
    truth = truth_mask(regions, heat.shape, placement=placement, classes=("tumour area",))
    assert m["localization"]["tumour area"]["pxap"] == pytest.approx(pxap(heat, truth).pxap)
    assert len(m["regions"]) == 2
