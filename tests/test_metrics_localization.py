"""PxAP and localisation scores against hand-computed cases, scipy and scikit-image."""

import numpy as np
import pytest
from scipy.spatial.distance import directed_hausdorff
from skimage.metrics import hausdorff_distance as sk_hausdorff

from napari_xhisto.metrics import (
    THRESHOLDS,
    confusion_over_thresholds,
    dice_iou,
    hausdorff_distance,
    localization_at_percentiles,
    pxap,
    weak_localization,
)


def test_pxap_hand_computed_two_maps():
    # Map 1 (min 0, max 1): positives 1.0, 0.3; negatives 0.6, 0.0
    # Map 2 (2..6 -> 0, 0.25, 0.75, 1): positives 0.75; negatives 1.0, 0.25, 0.0
    m1 = np.array([[1.0, 0.3], [0.6, 0.0]])
    g1 = np.array([[1, 1], [0, 0]], bool)
    m2 = np.array([[5.0, 6.0], [3.0, 2.0]])
    g2 = np.array([[1, 0], [0, 0]], bool)
    # Pooled positives {1, 0.3, 0.75}, negatives {0.6, 0, 1, 0.25, 0}. Thresholds high -> low:
    #   t=1.0: tp 1 fp 1 -> P 1/2, R 1/3
    #   t=0.75: tp 2 fp 1 -> P 2/3, R 2/3
    #   t=0.6: tp 2 fp 2 (no recall gain)
    #   t=0.3: tp 3 fp 2 -> P 3/5, R 1
    expected = 0.5 * (1 / 3) + (2 / 3) * (1 / 3) + (3 / 5) * (1 / 3)
    res = pxap([m1, m2], [g1, g2])
    assert res.pxap == pytest.approx(expected, abs=1e-12)
    k = np.flatnonzero(np.isclose(THRESHOLDS, 0.5))[0]  # at 0.5: tp 2 (1, .75), fp 2 (.6, 1)
    assert len(THRESHOLDS) == 1000 and res.step == 0.001  # the WSOL evaluator's reference grid
    assert res.precision[k] == pytest.approx(0.5) and res.recall[k] == pytest.approx(2 / 3)
    assert res.recall[0] == 1.0


def test_pxap_perfect_and_inverted():
    heat = np.linspace(0, 1, 100).reshape(10, 10)
    assert pxap(heat, heat > 0.5).pxap == pytest.approx(1.0)
    assert pxap(-heat, heat > 0.9).pxap < 0.2
    with pytest.raises(ValueError, match="ground-truth"):
        pxap(heat, np.zeros((10, 10), bool))
    with pytest.raises(ValueError, match="shape"):
        pxap(heat, np.zeros((3, 3), bool))


def test_confusion_over_thresholds_counts_directly():
    rng = np.random.default_rng(0)
    maps = [rng.random((12, 9)) for _ in range(3)]
    masks = [rng.random((12, 9)) > 0.6 for _ in range(3)]
    c = confusion_over_thresholds(maps, masks)
    norm = [(m - m.min()) / (m.max() - m.min()) for m in maps]
    for k in (0, 13, 500, 999):
        t = THRESHOLDS[k]
        tp = sum(np.sum((n >= t) & g) for n, g in zip(norm, masks))
        fp = sum(np.sum((n >= t) & ~g) for n, g in zip(norm, masks))
        assert (c["tp"][k], c["fp"][k]) == (tp, fp)
        assert c["tp"][k] + c["fn"][k] == sum(g.sum() for g in masks)
        assert c["curve"]["iou"][k] == pytest.approx(tp / (sum(g.sum() for g in masks) + fp))
    assert c["mean_rates"]["tpr"] == pytest.approx(np.mean(np.array(c["tp"]) / sum(g.sum() for g in masks)))


def test_dice_iou_direct():
    a = np.zeros((6, 6), bool)
    a[1:4, 1:4] = True
    b = np.zeros((6, 6), bool)
    b[2:5, 2:5] = True
    dice, iou = dice_iou(a, b)
    assert iou == pytest.approx(4 / 14) and dice == pytest.approx(8 / 18)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hausdorff_matches_scipy_and_skimage(seed):
    rng = np.random.default_rng(seed)
    a = rng.random((40, 30)) > 0.97
    b = rng.random((40, 30)) > 0.95
    pa, pb = np.argwhere(a), np.argwhere(b)
    ref = max(directed_hausdorff(pa, pb)[0], directed_hausdorff(pb, pa)[0])
    assert hausdorff_distance(a, b) == pytest.approx(ref)
    assert hausdorff_distance(a, b) == pytest.approx(sk_hausdorff(a, b))
    scaled = max(directed_hausdorff(pa * [2, 3], pb * [2, 3])[0],
                 directed_hausdorff(pb * [2, 3], pa * [2, 3])[0])
    assert hausdorff_distance(a, b, spacing=(2, 3)) == pytest.approx(scaled)
    assert hausdorff_distance(a, np.zeros_like(a)) == np.inf


def test_weak_localization_boxes():
    truth = np.zeros((20, 20), bool)
    truth[2:6, 2:6] = True
    truth[12:18, 10:16] = True
    pred = np.zeros((20, 20), bool)
    pred[2:6, 3:7] = True  # IoU 12/20 = 0.6 with the first box
    pred[12:14, 10:12] = True  # IoU 4/36 with the second
    w = weak_localization(pred, truth)
    assert (w["hits"], w["n_true"], w["n_predicted"]) == (1, 2, 2)
    assert weak_localization(pred, truth, iou_threshold=0.7)["hits"] == 0


def test_localization_at_percentiles_thresholds_and_area():
    rng = np.random.default_rng(3)
    heat = rng.random((50, 50))
    truth = np.zeros((50, 50), bool)
    truth[10:30, 10:30] = True
    heat[truth] += 1.0
    out = localization_at_percentiles(heat, truth, percentiles=(50, 75, 90))
    for row in out:
        pred = heat > np.percentile(heat, row["percentile"])
        assert row["map_fraction"] == pytest.approx(pred.mean())
        assert (row["dice"], row["iou"]) == pytest.approx(dice_iou(pred, truth))
        assert row["hausdorff"] == pytest.approx(sk_hausdorff(pred, truth))
    assert out[2]["map_fraction"] == pytest.approx(0.1, abs=0.001)
    assert out[2]["to_truth"] == pytest.approx(250 / 400, abs=0.01)


# ---- the WSOL evaluator's PxAP (Choe et al. 2020, MaskEvaluator), re-derived from its formula ----

def wsol_pxap(scoremaps, gt_masks, interval):
    """MaskEvaluator's accumulate/compute written out: min-max scaled maps (normalize_scoremap),
    np.histogram over np.arange(0, 1, interval) + [1, 2, 3], reversed cumulative sums, AP over
    thresholds where something is predicted. Returned as a fraction (the evaluator prints %)."""
    thresholds = list(np.arange(0, 1, interval))
    edges = np.append(thresholds, [1.0, 2.0, 3.0])
    true_hist = np.zeros(len(thresholds) + 2)
    false_hist = np.zeros(len(thresholds) + 2)
    for cam, gt in zip(scoremaps, gt_masks):
        cam = cam.astype(np.float64).copy()
        if np.isnan(cam).any() or cam.min() == cam.max():
            cam = np.zeros_like(cam)
        else:
            cam -= cam.min()
            cam /= cam.max()
        true_hist += np.histogram(cam[gt == 1], bins=edges)[0]
        false_hist += np.histogram(cam[gt == 0], bins=edges)[0]
    tp = true_hist[::-1].cumsum()
    fn = true_hist.sum() - tp
    fp = false_hist[::-1].cumsum()
    nonzero = (tp + fp) != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    return (precision[1:] * np.diff(recall))[nonzero[1:]].sum()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pxap_equals_wsol_evaluator_at_reference_and_coarse_grid(seed):
    rng = np.random.default_rng(seed)
    shapes = [(40, 37), (23, 51), (64, 64)]  # maps of different shapes in one set
    maps, masks = [], []
    for shape in shapes:
        truth = np.zeros(shape, bool)
        truth[5:18, 7:25] = True
        heat = rng.gamma(1.5, 1.0, shape) + 2.0 * truth * rng.random(shape)
        heat[0, 0] = heat.max()  # exact max: a score of 1.0 lands in the [1, 2) bin
        heat[1, :3] = np.round(heat[1, :3] * 1000) / 1000  # a few scores on threshold edges
        maps.append(heat)
        masks.append(truth)
    for step in (0.001, 0.01):
        ours = pxap(maps, masks, step=step, convention="signed")
        assert ours.pxap == pytest.approx(wsol_pxap(maps, masks, step), abs=1e-12)
        assert len(ours.thresholds) == len(np.arange(0, 1, step))
    fine, coarse = pxap(maps, masks).pxap, pxap(maps, masks, step=0.01).pxap
    assert fine != coarse  # the grid matters
    # unsigned maps: the rectified default changes nothing
    assert pxap(maps, masks).pxap == pytest.approx(wsol_pxap(maps, masks, 0.001), abs=1e-12)


def test_bin_edges_match_numpy_histogram_exactly():
    from napari_xhisto.metrics.threshold_sweep import _bin_index

    thr = np.arange(0, 1, 0.001)
    edges = np.append(thr, [1.0, 2.0, 3.0])
    rng = np.random.default_rng(5)
    v = np.concatenate([rng.random(20000), thr, np.nextafter(thr, -1)[1:], [1.0, 0.0]])
    v = np.clip(v, 0, 1)
    ours = np.bincount(_bin_index(v, edges, 0.001), minlength=edges.size - 1)
    np.testing.assert_array_equal(ours, np.histogram(v, bins=edges)[0])


def test_signed_maps_rectified_by_default_and_nan_ignored():
    # strong negative evidence outside the truth: rectified, it is "off" at every threshold > 0
    truth = np.zeros((20, 20), bool)
    truth[5:10, 5:10] = True
    heat = np.where(truth, 1.0, -3.0)
    heat[15:, :] = 0.2  # weak positive evidence elsewhere
    rect = confusion_over_thresholds(heat, truth)
    signed = confusion_over_thresholds(heat, truth, convention="signed")
    k = np.searchsorted(np.arange(0, 1, 0.001), 0.5)
    assert rect["fp"][k] == 0 and rect["tp"][k] == truth.sum()
    assert signed["fp"][k] == 100  # min-max scaled raw map: 0.2 -> 0.8 counts as on
    assert rect["mean_rates"]["fpr"] < signed["mean_rates"]["fpr"]
    # NaN pixels are neither positive nor negative (the evaluator's ignore mask)
    with_nan = heat.copy()
    with_nan[0, :] = np.nan
    c = confusion_over_thresholds(with_nan, truth)
    assert c["n_negative_pixels"] == (~truth).sum() - 20
    assert c["n_positive_pixels"] == truth.sum()
    ref = wsol_pxap([np.maximum(heat[1:], 0)], [truth[1:]], 0.001)
    assert pxap(with_nan, truth).pxap == pytest.approx(ref, abs=1e-12)


def test_threshold_histograms_blockwise_equal_whole():
    from napari_xhisto.metrics.threshold_sweep import threshold_histograms

    rng = np.random.default_rng(7)
    heat = rng.normal(size=(97, 41)).astype(np.float32)
    heat[3:9, 4] = np.nan
    truth = rng.random((97, 41)) > 0.7
    whole = threshold_histograms(heat, truth, block_pixels=10**9)
    blocks = threshold_histograms(heat, truth, block_pixels=100)
    np.testing.assert_array_equal(whole[0], blocks[0])
    np.testing.assert_array_equal(whole[1], blocks[1])


def test_percentile_localization_is_rectified_and_gives_microns():
    truth = np.zeros((30, 30), bool)
    truth[10:20, 10:20] = True
    heat = np.where(truth, 1.0, -1.0)
    heat[0:3, 0:3] = 0.5
    rows = localization_at_percentiles(heat, truth, percentiles=(50,), spacing=(4, 4), mpp=0.25)
    assert rows[0]["threshold"] == 0.0  # rectified values: more than half are 0
    pred = heat > 0
    assert (rows[0]["dice"], rows[0]["iou"]) == pytest.approx(dice_iou(pred, truth))
    assert rows[0]["hausdorff"] == pytest.approx(4 * sk_hausdorff(pred, truth))
    assert rows[0]["hausdorff_um"] == pytest.approx(rows[0]["hausdorff"] * 0.25)
    assert rows[0]["hausdorff_unit"] == "level-0 px"
    signed = localization_at_percentiles(heat, truth, percentiles=(50,), convention="signed")
    assert signed[0]["threshold"] == -1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("convention", ["rectified", "signed", "absolute"])
def test_threshold_histograms_equal_numpy_histogram_on_edge_values(dtype, convention):
    # values on and next to every threshold edge (in the map's own precision), NaN pixels,
    # ties at the min and max: the bins equal np.histogram of the float64 scaled map
    from napari_xhisto.metrics.conventions import apply_convention
    from napari_xhisto.metrics.threshold_sweep import threshold_histograms

    rng = np.random.default_rng(13)
    lo, hi = -0.7, 2.9
    thr = np.arange(0, 1, 0.001)
    on_edges = (lo + thr * (hi - lo)).astype(dtype)
    vals = np.concatenate([on_edges, np.nextafter(on_edges, dtype(-9)),
                           np.nextafter(on_edges, dtype(9)),
                           rng.uniform(lo, hi, 9000).astype(dtype), [lo, hi, hi, np.nan]])
    vals = vals.astype(dtype)
    heat = np.concatenate([vals, np.full(12800 - vals.size, np.nan, dtype)]).reshape(80, 160)
    truth = rng.random(heat.shape) < 0.3
    pos, neg, got_thr = threshold_histograms(heat, truth, convention=convention,
                                             block_pixels=2000)
    v = apply_convention(heat.astype(np.float64), convention)
    ok = np.isfinite(v)
    v = (v - v[ok].min()) / (v[ok].max() - v[ok].min())
    edges = np.append(thr, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(pos, np.histogram(v[ok & truth], bins=edges)[0])
    np.testing.assert_array_equal(neg, np.histogram(v[ok & ~truth], bins=edges)[0])
    np.testing.assert_array_equal(got_thr, thr)
