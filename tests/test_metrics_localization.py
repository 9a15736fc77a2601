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
    for k in (0, 13, 50, 99):
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
