"""Slide-level NIC: training on code grids, Grad-CAM on the lesion, placement, files, errors."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from nic_slide_helpers import planted_cohort, planted_grid

from napari_xhisto.errors import ModelError, XhistoError
from napari_xhisto.export.heatmap_io import read_heatmap, write_heatmap
from napari_xhisto.geometry import Placement
from napari_xhisto.metrics.localization import pxap
from napari_xhisto.nic.codes import write_codes
from napari_xhisto.nic.slide_explain import explain_slide, grid_placement, resample_to
from napari_xhisto.nic.slide_model import (
    SlideCNN,
    SlideModelSpec,
    dihedral,
    dihedral_inverse,
    load_slide_model,
    predict_grid,
    save_slide_model,
)
from napari_xhisto.nic.slide_train import (
    SlideTrainConfig,
    evaluate_slide_model,
    iter_train_slide_model,
    load_code_set,
    random_crop,
    roc_auc,
)
from napari_xhisto.progress import run_to_end

TOY = dict(rows=12, cols=12, strength=3.0)
# Measured on seeds 0, 1, 2 (12 x 12 grids, a 3 x 3 focus, 40 slides, 40 epochs): held-out
# accuracy 1.0 / 0.8 / 0.95, mean PxAP of the Grad-CAM maps 0.89 / 0.83 / 0.92 against a
# chance level (the focus's share of tissue) of 0.08. Floors with a margin:
ACCURACY_FLOOR = 0.75
PXAP_FLOOR = 0.5


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    grids, labels, _ = planted_cohort(40, seed=0, **TOY)
    cfg = SlideTrainConfig(epochs=40, width=16, hidden=16, batch_size=8, val_fraction=0, seed=0)
    model, history = run_to_end(iter_train_slide_model(grids, labels, cfg))
    return model, history


def test_slide_cnn_beats_chance_and_gradcam_peaks_on_the_lesion(trained):
    model, history = trained
    assert history["train_loss"][-1] < history["train_loss"][0]
    grids, labels, masks = planted_cohort(20, seed=10, **TOY)
    result = evaluate_slide_model(model, grids, labels)
    assert result["accuracy"] >= ACCURACY_FLOOR
    assert result["auc"] > 0.9
    scores, chance = [], []
    for g, m, y in zip(grids, masks, labels):
        if y:
            heat = explain_slide(model, g)
            assert heat.values.shape == g.shape
            assert np.isnan(heat.values[~g.tissue]).all()  # off tissue: no value
            assert np.nanmax(heat.values) == pytest.approx(1.0)  # global-max normalised
            scores.append(pxap(heat.values, m).pxap)
            chance.append(m.sum() / g.tissue.sum())
    assert np.mean(scores) > PXAP_FLOOR > 4 * np.mean(chance)


def test_model_file_round_trip_gives_the_same_predictions(trained, tmp_path):
    model, _ = trained
    spec_path = save_slide_model(tmp_path / "m", model)
    assert (tmp_path / "m" / "model.safetensors").exists()
    back = load_slide_model(tmp_path / "m")
    g, _ = planted_grid(np.random.default_rng(5), lesion=3, **TOY)
    assert predict_grid(back, g) == pytest.approx(predict_grid(model, g), abs=1e-6)
    with pytest.raises(ModelError, match="already holds a slide model"):
        save_slide_model(tmp_path / "m", model)
    spec_path.write_text(spec_path.read_text().replace("nic-slide-cnn", "other"))
    with pytest.raises(ModelError, match="not a slide-level model"):
        load_slide_model(tmp_path / "m")


def test_codes_of_another_size_are_refused(trained):
    model, _ = trained
    g, _ = planted_grid(np.random.default_rng(1), code_size=6, **TOY)
    with pytest.raises(ModelError, match="C = 6 codes per cell but the slide model reads C = 8"):
        predict_grid(model, g)


def test_dihedral_transforms_are_the_8_distinct_symmetries_and_invert():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    outs = {tuple(dihedral(x, k).flatten().tolist()) + tuple(dihedral(x, k).shape) for k in range(8)}
    assert len(outs) == 8
    for k in range(8):
        assert torch.equal(dihedral_inverse(dihedral(x, k), k), x)


def test_random_crop_keeps_small_grids_whole_and_centres_on_tissue():
    rng = np.random.default_rng(0)
    z = np.arange(2 * 5 * 6, dtype=np.float32).reshape(2, 5, 6) + 1
    crop = random_crop(z, np.ones((5, 6), bool), 8, rng)
    assert crop.shape == (2, 8, 8) and np.count_nonzero(crop) == z.size  # whole grid, padded
    big = np.ones((1, 40, 40), np.float32)
    tissue = np.zeros((40, 40), bool)
    tissue[30, 35] = True
    big[0, 30, 35] = 7
    assert (random_crop(big, tissue, 8, rng) == 7).sum() == 1  # the only tissue cell is inside


def test_roc_auc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 50)
    s = np.round(rng.random(50), 1)  # ties
    assert roc_auc(s, y) == pytest.approx(roc_auc_score(y, s))


def test_heatmap_placement_maps_a_cell_to_its_patch_on_the_slide(tmp_path):
    # cell (i, j) encodes level-0 rows origin + i*stride ... + patch
    g, _ = planted_grid(np.random.default_rng(0), rows=6, cols=7, stride=128, origin=(64, 32))
    pl = grid_placement(g)
    assert (pl.origin_row, pl.origin_col, pl.step_row) == (64, 32, 128)
    values = np.zeros(g.shape, np.float32)
    values[2, 3] = 1
    # level-0 pixels of cell (2, 3): rows 64+256 .. 64+384, cols 32+384 .. 32+512
    target = Placement(0, 0, 1, 1)
    full = resample_to(values, pl, target, (64 + 6 * 128, 32 + 7 * 128))
    rows, cols = np.nonzero(full == 1)
    assert (rows.min(), rows.max() + 1) == (64 + 256, 64 + 384)
    assert (cols.min(), cols.max() + 1) == (32 + 384, 32 + 512)
    assert np.isnan(full[:64]).all()  # above the grid: no value
    # napari layer transform puts the cell centre on the patch centre, as the codes layer does
    scale, translate = g.world_transform()
    t = pl.layer_transform(g.mpp)
    assert t["scale"] == pytest.approx(scale) and t["translate"] == pytest.approx(translate)
    # and the file written as a patch heatmap keeps that placement
    write_heatmap(tmp_path / "h.ome.tif", values, pl, mpp=g.mpp, provenance={"method": "grad-cam"})
    back = read_heatmap(tmp_path / "h.ome.tif")
    assert back.placement == pl and np.array_equal(back.values, values)


def test_patch_larger_than_stride_centres_cells_on_their_patch():
    g, _ = planted_grid(np.random.default_rng(0), rows=4, cols=4, stride=64)
    g.patch = 128
    pl = grid_placement(g)
    scale, translate = g.world_transform()
    t = pl.layer_transform(g.mpp)
    assert t["translate"] == pytest.approx(translate) and t["scale"] == pytest.approx(scale)


def _write_set(tmp_path, grids, labels, *, names=None, drop_label=None):
    codes = tmp_path / "codes"
    codes.mkdir()
    names = names or [f"slide_{i:04d}" for i in range(len(grids))]
    for n, g in zip(names, grids):
        write_codes(codes / f"{n}.nic.zarr", g)
    with open(tmp_path / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["slide", "label"])
        for n, y in zip(names, labels):
            if n != drop_label:
                w.writerow([f"{n}.svs", int(y)])
    return codes, tmp_path / "labels.csv"


def test_code_set_reads_codes_and_labels_from_files(tmp_path):
    grids, labels, _ = planted_cohort(4, seed=0, rows=6, cols=6)
    codes, csv_path = _write_set(tmp_path, grids, labels)
    data = load_code_set(codes, csv_path)
    assert data.keys == [f"slide_{i:04d}" for i in range(4)]
    assert data.labels.tolist() == labels.tolist()
    assert np.allclose(np.asarray(data.grids[1].codes), grids[1].codes)


def test_labels_missing_a_slide_is_a_clear_error(tmp_path):
    grids, labels, _ = planted_cohort(4, seed=0, rows=6, cols=6)
    codes, csv_path = _write_set(tmp_path, grids, labels, drop_label="slide_0002")
    with pytest.raises(XhistoError, match=r"no label for 1 compressed slide\(s\), e.g. slide_0002"):
        load_code_set(codes, csv_path)
    (codes / "slide_0002.nic.zarr").rename(tmp_path / "aside.nic.zarr")
    with open(csv_path, "a") as fh:
        fh.write("slide_0009.svs,1\n")
    with pytest.raises(XhistoError, match="have no codes in .*slide_0009"):
        load_code_set(codes, csv_path)


def test_codes_of_different_sizes_or_encoders_are_a_clear_error(tmp_path):
    rng = np.random.default_rng(0)
    a, _ = planted_grid(rng, rows=6, cols=6, code_size=8)
    b, _ = planted_grid(rng, rows=6, cols=6, code_size=4, lesion=2)
    codes, csv_path = _write_set(tmp_path, [a, b], [0, 1])
    with pytest.raises(XhistoError, match="codes differ in size: slide_0000 has C = 8, slide_0001 has C = 4"):
        load_code_set(codes, csv_path)
    c, _ = planted_grid(rng, rows=6, cols=6, lesion=2, sha="enc-b")
    with pytest.raises(XhistoError, match="compressed by different encoders"):
        run_to_end(iter_train_slide_model([a, c], [0, 1], SlideTrainConfig(epochs=1)))


def test_bad_labels_file_is_a_clear_error(tmp_path):
    from napari_xhisto.synth.cohort import read_labels

    p = tmp_path / "labels.csv"
    p.write_text("slide,diagnosis\na.svs,1\n")
    with pytest.raises(XhistoError, match="needs the columns 'slide' and 'label'"):
        read_labels(p)
    p.write_text("slide,label\na.svs,yes\n")
    with pytest.raises(XhistoError, match="line 2: label 'yes' is not 0 or 1"):
        read_labels(p)
    with pytest.raises(XhistoError, match="labels file not found"):
        read_labels(tmp_path / "nope.csv")


def test_untrained_model_spec_defaults_build():
    m = SlideCNN(SlideModelSpec(code_size=5))
    assert m(torch.zeros(2, 5, 9, 11)).shape == (2, 1)


def test_slide_heatmap_is_scored_against_the_lesion_mask_on_its_grid():
    from napari_xhisto.explain.tiling import Heatmap
    from napari_xhisto.nic.slide_explain import evaluate_against_mask
    from napari_xhisto.synth.cohort import LesionMask

    g, _ = planted_grid(np.random.default_rng(0), rows=8, cols=8, stride=128)
    g.tissue[:] = True
    values = np.zeros((8, 8), np.float32)
    values[2:5, 3:6] = 1.0
    heat = Heatmap(values, grid_placement(g), {})
    truth = np.zeros((64, 64), bool)  # 16 level-0 px per mask pixel: 8 per cell
    truth[16:40, 24:48] = True
    exact = evaluate_against_mask(heat, LesionMask(truth, Placement(0, 0, 16, 16), 0.5),
                                  percentiles=(50,))
    assert exact["pxap"] == pytest.approx(1.0)
    assert exact["chance_pxap"] == pytest.approx(truth.mean())
    row = exact["at_percentiles"][0]
    assert row["dice"] == pytest.approx(1.0) and row["hausdorff"] == 0.0
    assert row["weak_hit_rate"] == 1.0
    shifted = np.roll(values, 3, axis=1)  # the map three cells (384 px) to the right
    off = evaluate_against_mask(Heatmap(shifted, grid_placement(g), {}),
                                LesionMask(truth, Placement(0, 0, 16, 16), 0.5), percentiles=(50,))
    assert off["pxap"] < 0.3
    assert off["at_percentiles"][0]["hausdorff"] == pytest.approx(3 * 128)


def test_a_strided_layer_is_placed_on_the_cells_it_is_centred_on():
    g, _ = planted_grid(np.random.default_rng(0), rows=9, cols=12, lesion=3, origin=(100, 40))
    model = SlideCNN(SlideModelSpec(code_size=8, width=4, hidden=4, strides=[1, 2, 1, 2])).eval()
    heat = explain_slide(model, g, layer="blocks.1")
    assert heat.values.shape == (5, 6)
    pl = heat.placement
    # map pixel i is centred on cell 2 i: level-0 centre origin + 2 i * 128 + 64
    centre = pl.origin_row + (3 + 0.5) * pl.step_row
    assert pl.step_row == 256 and centre == pytest.approx(100 + 6 * 128 + 64)
