"""Temperature scaling in the product: fitted T, calibrated specs, the labelling rule, splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_xhisto.annotations import AnnotationSet, CellPoints, RegionShape
from napari_xhisto.errors import ModelError
from napari_xhisto.geometry import Placement
from napari_xhisto.metrics.calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
)
from napari_xhisto.metrics.calibration_study import (
    check_calibration_data,
    repeated_splits,
    stratified_split,
    temperature_report,
)
from napari_xhisto.metrics.patch_labels import label_patches, model_class_index
from napari_xhisto.models import ModelSpec, load_model, save_model
from napari_xhisto.models.calibrate import write_calibrated_spec


def _features(images) -> torch.Tensor:
    x = (torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    return torch.nn.functional.avg_pool2d(x, 4).flatten(1)


@pytest.fixture(scope="module")
def overconfident_logits():
    """Held-out logits of a tiny network trained to zero loss (no label smoothing, no decay)."""
    from napari_xhisto.synth import sample_patches

    train = sample_patches(200, patch_size=32, mpp=1.0, seed=1, field_size=256,
                           jpeg_quality=None)
    test = sample_patches(400, patch_size=32, mpp=1.0, seed=2, field_size=256,
                          jpeg_quality=None)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(192, 64), torch.nn.ReLU(),
                                  torch.nn.Linear(64, 2))
        x, y = _features(train.images), torch.from_numpy(np.asarray(train.labels)).long()
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(300):
            loss = torch.nn.functional.cross_entropy(net(x), y)  # label_smoothing=0
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            z = net(_features(test.images)).double().numpy()
    finally:
        torch.set_num_threads(old)
    return z, np.asarray(test.labels, np.int64), float(loss.detach())


def _lbfgs_temperature(logits, labels) -> float:
    """Reference: Guo et al.'s temperature_scaling.py (nn.Parameter T, init 1.5, LBFGS on the
    NLL of logits / T), run to convergence (strong Wolfe line search, float64)."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels)
    t = torch.nn.Parameter(torch.ones(1, dtype=torch.float64) * 1.5)
    opt = torch.optim.LBFGS([t], lr=1.0, max_iter=500, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / t, y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(t.detach())


def test_temperature_lowers_ece_of_an_overconfident_model(overconfident_logits):
    z, y, train_loss = overconfident_logits
    assert train_loss < 0.01  # memorised its training patches
    report = temperature_report(z, y, val_fraction=0.5, seed=0, n_bins=10)
    assert report["temperature"] > 1.5  # over-confident: logits shrink
    before, after = report["before"], report["after"]
    assert before["ece"] > 0.1
    assert after["ece"] < 0.5 * before["ece"]
    assert after["nll"] < before["nll"]
    assert after["accuracy"] == before["accuracy"]  # T > 0 never changes the argmax
    # the fitted T equals a reference LBFGS fit (the paper's code) on the same logits
    val, test = stratified_split(y, val_fraction=0.5, seed=0)
    ref = _lbfgs_temperature(z[val], y[val])
    assert report["temperature"] == pytest.approx(ref, rel=1e-4)
    assert fit_temperature(z[val], y[val]) == pytest.approx(ref, rel=1e-4)
    # the test-split ECE is the module's ECE of softmax(logits / T)
    assert after["ece"] == pytest.approx(expected_calibration_error(
        apply_temperature(z[test], report["temperature"]), y[test], n_bins=10), abs=1e-12)
    assert report["n_val"] + report["n_test"] == len(y)


def test_repeated_splits_give_per_bin_accuracy(overconfident_logits):
    z, y, _ = overconfident_logits
    study = repeated_splits(z, y, n_splits=6, seed=3, n_bins=10)
    assert study["before"]["accuracy"].shape == (6, 10)
    assert study["after"]["count"].shape == (6, 10)
    assert (study["after"]["count"].sum(1) == study["before"]["count"].sum(1)).all()
    assert np.mean(study["after"]["ece"]) < np.mean(study["before"]["ece"])
    # each split's numbers are those of a single report with that split's seed
    one = temperature_report(z, y, seed=int(study["split_seeds"][2]))
    assert study["temperatures"][2] == pytest.approx(one["temperature"])
    assert study["after"]["ece"][2] == pytest.approx(one["after"]["ece"])
    acc = np.array(one["after"]["bins"]["accuracy"], float)
    np.testing.assert_allclose(study["after"]["accuracy"][2], acc, equal_nan=True)
    again = repeated_splits(z, y, n_splits=6, seed=3, n_bins=10)
    np.testing.assert_array_equal(again["temperatures"], study["temperatures"])
    stopped = repeated_splits(z, y, n_splits=6, seed=3, progress=lambda d, t: d >= 2)
    assert len(stopped["temperatures"]) == 2


def test_split_is_stratified_and_seeded():
    y = np.array([0] * 30 + [1] * 10)
    v, t = stratified_split(y, val_fraction=0.5, seed=4)
    assert (np.bincount(y[v]) == [15, 5]).all() and (np.bincount(y[t]) == [15, 5]).all()
    assert set(v).isdisjoint(t)
    v2, _ = stratified_split(y, val_fraction=0.5, seed=4)
    np.testing.assert_array_equal(v, v2)


@pytest.mark.parametrize("labels, match", [
    ([1] * 20, "every labelled patch is of class 'tumour'"),
    ([0, 1] * 3, "only 6 labelled patches"),
])
def test_unusable_calibration_data(labels, match):
    z = np.random.default_rng(0).normal(size=(len(labels), 2))
    with pytest.raises(ValueError, match=match):
        check_calibration_data(z, labels, class_names=["non-tumour", "tumour"])


# ---- the spec's temperature ------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("tiny")
    spec = ModelSpec(architecture="xhisto_cnn_s", class_names=["non-tumour", "tumour"],
                     patch_size=32, mpp=1.0)
    from napari_xhisto.models import build_architecture

    module = build_architecture("xhisto_cnn_s", 2)
    return save_model(module, spec, folder / "tiny.json")


@pytest.mark.parametrize("where", ["same", "other"])
def test_calibrated_spec_applies_the_temperature(tiny_model, tmp_path, where):
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    base = load_model(tiny_model, device="cpu")
    logits = base.predict_logits(images)
    out = (tiny_model.parent / f"tiny-cal-{tmp_path.name}.yaml" if where == "same"
           else tmp_path / "deeper" / "cal.yaml")
    write_calibrated_spec(base.spec, out, 2.5, record={"ece_before": 0.2})
    text = out.read_text()
    assert "temperature: 2.5" in text
    # the same weights file, named relative beside it or absolute elsewhere
    assert ("weights: tiny.safetensors" in text) == (where == "same")
    cal = load_model(out, device="cpu")
    assert cal.spec.temperature == 2.5
    assert cal.spec.weights_path().resolve() == base.spec.weights_path().resolve()
    assert cal.spec.training["calibration"] == {"ece_before": 0.2}
    want = torch.softmax(torch.as_tensor(logits) / 2.5, 1).numpy()
    np.testing.assert_allclose(cal.predict_proba(images), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(base.predict_proba(images),
                               torch.softmax(torch.as_tensor(logits), 1).numpy(), atol=1e-6)
    np.testing.assert_array_equal(cal.predict_logits(images), logits)
    assert cal.provenance()["temperature"] == 2.5
    assert base.provenance()["temperature"] == 1.0


def test_predict_region_follows_the_temperature(tiny_model, tmp_path):
    from napari_xhisto.models import predict_region
    from napari_xhisto.progress import run_to_end

    class Flat:  # a tiny in-memory "slide"
        mpp = 1.0
        dimensions = (64, 64)

        def read_scaled(self, region, h, w):
            rng = np.random.default_rng(region.level0_row * 1000 + region.level0_col)
            return rng.integers(0, 200, (h, w, 3), dtype=np.uint8)

    base = load_model(tiny_model, device="cpu")
    out = write_calibrated_spec(base.spec, tmp_path / "cal.json", 0.5)
    p1 = run_to_end(predict_region(Flat(), None, base, tissue_threshold=0))
    p2 = run_to_end(predict_region(Flat(), None, load_model(out, device="cpu"),
                                   tissue_threshold=0))
    z = np.log(p1.probs)  # log-softmax differs from the logits by a constant per patch
    want = np.exp(z / 0.5) / np.exp(z / 0.5).sum(-1, keepdims=True)
    np.testing.assert_allclose(p2.probs, want, rtol=1e-4, atol=1e-6)
    assert p2.provenance["temperature"] == 0.5


def test_probability_explainer_follows_the_temperature(tiny_model, tmp_path):
    """The `probability` map of a calibrated model shows its calibrated p (an explicit
    `temperature` parameter still wins)."""
    from napari_xhisto.explain import explain_patches

    images = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    base = load_model(tiny_model, device="cpu")
    cal = load_model(write_calibrated_spec(base.spec, tmp_path / "cal.yaml", 3.0), device="cpu")
    for model in (base, cal):
        maps = explain_patches(model, images, "probability", target=1)
        np.testing.assert_allclose(maps[:, 0, 0], model.predict_proba(images)[:, 1], rtol=1e-5)
    raw = explain_patches(cal, images, "probability", target=1, temperature=1.0)
    np.testing.assert_allclose(raw[:, 0, 0], base.predict_proba(images)[:, 1], rtol=1e-5)


@pytest.mark.parametrize("value", [0, -1.0, "hot", True, float("nan"), None])
def test_bad_temperature_in_a_spec(tmp_path, value):
    d = {"architecture": "xhisto_cnn_s", "class_names": ["a", "b"], "temperature": value}
    with pytest.raises(ModelError, match="temperature") as err:
        ModelSpec.from_dict(d, source=tmp_path / "m.json")
    assert "\n" not in str(err.value)
    assert "m.json" in str(err.value)


def test_temperature_key_typo_and_default():
    with pytest.raises(ModelError, match="did you mean 'temperature'"):
        ModelSpec.from_dict({"architecture": "x", "class_names": ["a", "b"], "temprature": 2})
    spec = ModelSpec(architecture="x", class_names=["a", "b"])
    assert spec.temperature == 1.0 and "temperature" not in spec.to_dict()
    assert ModelSpec(architecture="x", class_names=["a", "b"], temperature=3).to_dict()[
        "temperature"] == 3.0
    with pytest.raises(ModelError, match="temperature"):
        ModelSpec(architecture="x", class_names=["a", "b"], temperature=0)


# ---- the labelling rule ----------------------------------------------------------------------

NAMES = ["non-tumour", "tumour"]
GRID = Placement(0.0, 0.0, 10.0, 10.0)  # patches of 10 x 10 level-0 px
ALL = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])


def _cells(points):
    rows, cols, cls = zip(*points)
    return AnnotationSet(CellPoints(rows, cols, cls), [], {})


def test_cells_rule_majority_ties_and_minimum():
    ann = _cells([
        (1, 1, "tumour"), (2, 2, "Tumor"), (3, 3, "stroma"),          # (0,0): 2 of 3 tumour
        (1, 11, "tumour"), (2, 12, "lymphocyte"),                      # (0,1): tie -> tumour
        (11, 1, "stroma"), (12, 2, "other"), (13, 3, "tumour"),       # (1,0): 1 of 3 tumour
        (11, 11, "stroma"), (12, 12, "Ignore*"),                       # (1,1): 1 voting cell
    ])
    lab = label_patches(ann, GRID, (2, 2), ALL, NAMES, "tumour", min_cells=2)
    assert lab.rule == "cells"
    assert lab.labels.tolist() == [1, 1, 0, -1]
    assert lab.n_evidence.tolist() == [3, 2, 3, 1]
    assert lab.skipped == {"fewer than 2 cells": 1}
    lab = label_patches(ann, GRID, (2, 2), ALL, NAMES, "tumour", min_cells=1)
    assert lab.labels.tolist() == [1, 1, 0, 0]


def test_cells_rule_with_three_classes_skips_ties_and_unknown_classes():
    names = ["stroma", "tumour", "lymphocyte"]
    ann = _cells([(1, 1, "stroma"), (2, 2, "lymphocyte"), (3, 3, "Mitosis"),
                  (11, 11, "tumour"), (12, 12, "tumour"), (13, 13, "stroma")])
    lab = label_patches(ann, GRID, (2, 2), ALL, names, "tumour", min_cells=1)
    assert lab.labels.tolist() == [-1, -1, -1, 1]
    assert lab.unmapped == ["Mitosis"]
    assert lab.skipped == {"no annotated cell": 2, "tie between classes": 1}


def test_regions_rule_centre_conflicts_and_ignore():
    def square(r0, c0, r1, c1):
        return np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]], float)

    regions = [RegionShape("tumour area", square(0, 0, 10, 20)),     # (0,0), (0,1)
               RegionShape("stroma", square(0, 12, 20, 20)),         # (0,1) conflict, (1,1)
               RegionShape("Ignore*", square(12, 0, 20, 8))]         # (1,0) ignored
    ann = AnnotationSet(CellPoints.empty(), regions, {})
    lab = label_patches(ann, GRID, (2, 2), ALL, NAMES, "tumour")
    assert lab.rule == "regions"
    assert lab.labels.tolist() == [1, -1, -1, 0]
    assert lab.skipped == {"regions of different classes": 1, "ignored region": 1}
    with pytest.raises(ValueError, match="no cell points"):
        label_patches(ann, GRID, (2, 2), ALL, NAMES, "tumour", rule="cells")


def test_model_class_index_by_name_and_role():
    assert model_class_index("TUMOUR", NAMES, "tumour") == 1
    assert model_class_index("necrosis", NAMES, "tumour", kind="region") == 0
    assert model_class_index("Immune cells", ["tumour", "lymphocyte", "stroma"], "tumour") == 1
    assert model_class_index("Mitosis", ["tumour", "lymphocyte", "stroma"], "tumour") == -1
