"""`evaluate_heatmap` runs its map-wide passes (finite share, regions, localisation) beside the
cell scores and rasterises each region once: the numbers equal the functions called alone."""

import numpy as np
import pytest

from napari_xhisto.annotations import CellPoints, RegionShape
from napari_xhisto.metrics import cell_roc, cell_scores, region_relevance
from napari_xhisto.metrics.report import evaluate_heatmap, truth_mask
from napari_xhisto.metrics.threshold_sweep import pxap_from_histograms, threshold_histograms


@pytest.mark.parametrize("with_regions", [True, False])
def test_parallel_passes_equal_the_functions_alone(with_regions):
    rng = np.random.default_rng(4)
    heat = rng.standard_normal((300, 400)).astype(np.float32)
    heat[:, :200] += 1.0
    heat[250:, 350:] = np.nan  # never computed
    n = 500
    rows, cols = rng.uniform(0, 300, n), rng.uniform(0, 400, n)
    cells = CellPoints(rows, cols, np.where(cols < 200, "tumour", "stroma"))
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    regions = [RegionShape("tumour area", np.stack([150 + 80 * np.sin(t), 100 + 60 * np.cos(t)], 1)),
               RegionShape("necrosis", np.array([[20.0, 250], [20, 380], [120, 380], [120, 250]]))]
    out = evaluate_heatmap(heat, mpp=0.5, cells=cells, regions=regions if with_regions else (),
                           radius_um=3.0, n_random=1, n_boot=100)
    assert out["heatmap"]["finite_fraction"] == pytest.approx(np.isfinite(heat).mean(), abs=1e-12)
    scores = cell_scores(heat, cells, radius_um=3.0, mpp=0.5)
    assert out["roc"]["auc"] == pytest.approx(cell_roc(scores, cells.classes).auc, abs=1e-12)
    if not with_regions:
        assert "regions" not in out and "localization" not in out
        return
    alone = [r.to_dict() for r in region_relevance(heat, regions)]
    for got, want in zip(out["regions"], alone):
        for key, value in want.items():
            assert got[key] == pytest.approx(value, nan_ok=True), key
    truth = truth_mask(regions, heat.shape, classes=("tumour area",))
    pos, neg, thr = threshold_histograms(heat, truth)
    want_pxap = pxap_from_histograms(pos, neg, thr).pxap
    assert out["localization"]["tumour area"]["pxap"] == pytest.approx(want_pxap, abs=1e-12)


def test_cells_of_one_group_only_skip_the_roc_and_keep_the_regions():
    # an area annotated with stroma cells only (no tumour cell): the cell ROC cannot be
    # computed, which is said, and the regions and localisation are still scored
    rng = np.random.default_rng(5)
    heat = rng.standard_normal((200, 200)).astype(np.float32)
    heat[50:150, 50:150] += 2.0
    cells = CellPoints(rng.uniform(0, 200, 40), rng.uniform(0, 200, 40), np.full(40, "stroma"))
    square = RegionShape("tumour area", np.array([[50.0, 50], [50, 150], [150, 150], [150, 50]]))
    steps = []
    from napari_xhisto.metrics.report import iter_evaluate_heatmap

    gen = iter_evaluate_heatmap(heat, mpp=0.5, cells=cells, regions=[square], radius_um=3.0,
                                n_random=3, n_boot=50, radius_sweep=[2.0, 4.0])
    try:
        while True:
            steps.append(next(gen))
    except StopIteration as stop:
        out = stop.value
    assert "roc" not in out and "baselines" not in out and "radius_sweep" not in out
    assert "0 positive (tumour) and 40 negative (all other classes)" in out["cells"]["roc_skipped"]
    assert out["cells"]["n"] == 40 and len(out["regions"]) == 1
    truth = truth_mask([square], heat.shape, classes=("tumour area",))
    pos, neg, thr = threshold_histograms(heat, truth)
    assert out["localization"]["tumour area"]["pxap"] == pytest.approx(
        pxap_from_histograms(pos, neg, thr).pxap, abs=1e-12)
    assert steps[-1][0] == steps[-1][1] and all(a[0] <= b[0] for a, b in zip(steps, steps[1:]))
    with pytest.raises(ValueError, match="0 positive"):  # the function alone still refuses
        cell_roc(np.ones(40), cells.classes)
