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
