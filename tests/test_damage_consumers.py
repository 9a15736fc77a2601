"""A damaged tile reaches every consumer as "no value": NaN cells in probability maps, NaN pixels
in heatmaps, listed in their provenance and in the written file, stripes and one notification in
the napari reader. CMU-1 with 4 kB of one tile's JPEG data bit-flipped, compared with the intact
file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_xhisto.geometry import Region
from napari_xhisto.slide import TileCache, open_slide
from napari_xhisto.slide.core import damaged_pattern

try:
    import conftest_slides as cs
except ImportError:  # tests collected as a package
    from . import conftest_slides as cs


@pytest.fixture(scope="module")
def damaged(tmp_path_factory, cmu1_path):
    tile = cs.largest_tile(cmu1_path)
    path = cs.flip_entropy_bits(cmu1_path, tmp_path_factory.mktemp("consumers") / "flip.svs",
                                *tile)
    top, left = tile[0] * 240, tile[1] * 240
    return path, tile, (top, left, 240, 240)


@pytest.fixture(scope="module")
def demo_model():
    from napari_xhisto.models import load_model

    return load_model("demo", device="cpu")


def _overlaps(box, top, left, h, w) -> bool:
    r, c, bh, bw = box
    return top < r + bh and top + h > r and left < c + bw and left + w > c


def test_probability_map_is_nan_on_the_damaged_tile(damaged, cmu1_path, demo_model):
    from napari_xhisto.models import predict_region
    from napari_xhisto.progress import run_to_end

    path, _, box = damaged
    region = Region(960, 720, 768, 768)
    with open_slide(path, cache=TileCache(64 * 2**20)) as slide:
        pmap = run_to_end(predict_region(slide, region, demo_model, batch_size=16))
    with open_slide(cmu1_path, cache=TileCache(64 * 2**20)) as slide:
        intact = run_to_end(predict_region(slide, region, demo_model, batch_size=16))
    plan_stride = pmap.provenance["stride_level0"]
    rows, cols = pmap.tissue_mask.shape
    expected = np.zeros((rows, cols), bool)
    for i in range(rows):
        for j in range(cols):
            expected[i, j] = _overlaps(box, region.level0_row + i * plan_stride,
                                       region.level0_col + j * plan_stride, plan_stride,
                                       plan_stride)
    assert expected.sum() == 9
    np.testing.assert_array_equal(pmap.damaged_mask, expected)
    assert np.isnan(pmap.probs[expected]).all()
    assert np.isnan(pmap.positive[expected]).all()
    # every other cell: exactly what the intact file gives
    np.testing.assert_allclose(pmap.probs[~expected], intact.probs[~expected], atol=1e-5)
    np.testing.assert_array_equal(pmap.tissue_mask[~expected], intact.tissue_mask[~expected])
    assert pmap.provenance["n_damaged_cells"] == 9
    (entry,) = pmap.provenance["damaged_tiles"]
    assert entry["level0_region"] == list(box)
    assert intact.damaged_mask is None and intact.provenance["damaged_tiles"] == []


def test_heatmap_is_nan_on_the_damaged_tile(damaged, cmu1_path, demo_model):
    from napari_xhisto.explain import explain_region
    from napari_xhisto.progress import run_to_end

    path, _, box = damaged
    region = Region(1000, 760, 520, 520)

    def explain(p):
        with open_slide(p, cache=TileCache(64 * 2**20)) as slide:
            return run_to_end(explain_region(slide, region, demo_model, "probability",
                                             overlap=0.25, normalize="none", batch_size=8))

    heat, intact = explain(path), explain(cmu1_path)
    pl = heat.placement
    h, w = heat.values.shape
    r0 = pl.origin_row + np.arange(h) * pl.step_row  # level-0 top of each heatmap pixel
    c0 = pl.origin_col + np.arange(w) * pl.step_col
    inside = (((r0 + pl.step_row > box[0]) & (r0 < box[0] + box[2]))[:, None]
              & ((c0 + pl.step_col > box[1]) & (c0 < box[1] + box[3]))[None, :])
    assert inside.any()
    assert np.isnan(heat.values[inside]).all()
    assert heat.provenance["n_damaged_patches"] > 0
    assert [d["level0_region"] for d in heat.provenance["damaged_tiles"]] == [list(box)]
    # a patch side (plus the step rounding) away from the tile, intact patches only: unchanged
    margin = 64 * pl.step_row + 2
    far = ~(((r0 + pl.step_row > box[0] - margin) & (r0 < box[0] + box[2] + margin))[:, None]
             & ((c0 + pl.step_col > box[1] - margin) & (c0 < box[1] + box[3] + margin))[None, :])
    assert far.sum() > 1000
    np.testing.assert_allclose(heat.values[far], intact.values[far], rtol=1e-5, atol=1e-7)
    assert np.isfinite(intact.values).all() and intact.provenance["n_damaged_patches"] == 0


def test_cli_predict_writes_nan_and_lists_the_tile(damaged, tmp_path, capsys):
    from napari_xhisto.cli import main
    from napari_xhisto.export.heatmap_io import read_heatmap

    path, tile, box = damaged
    out = tmp_path / "prob.ome.tif"
    assert main(["predict", str(path), "--region", "960,720,768,768", "--out", str(out),
                 "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["n_damaged_cells"] == 9
    assert "1 damaged tile(s)" in captured.err and "9 cell(s) left NaN" in captured.err
    heat = read_heatmap(out)
    (entry,) = heat.provenance["damaged_tiles"]
    assert (entry["tile_row"], entry["tile_col"]) == tuple(tile)
    step = heat.placement.step_row
    i = int((box[0] + 120 - heat.placement.origin_row) // step)
    j = int((box[1] + 120 - heat.placement.origin_col) // step)
    assert np.isnan(heat.values[i, j])  # the cell at the tile's centre
    assert np.isfinite(heat.values).sum() > 0


def test_reader_draws_stripes_lists_and_notifies_once(damaged, monkeypatch):
    import napari.utils.notifications as notifications

    from napari_xhisto._reader import get_reader

    path, (row, col), box = damaged
    shown = []
    monkeypatch.setattr(notifications, "show_warning", shown.append)
    reader = get_reader(str(path))
    (data, kwargs, _), = reader(str(path))
    slide = kwargs["metadata"]["xhisto_slide"]
    try:
        listed = kwargs["metadata"]["xhisto"]["damaged_tiles"]
        assert listed == []  # nothing read yet
        top, left = box[:2]
        block = data[0][top - 10:top + 250, left - 10:left + 250]  # what napari draws
        np.testing.assert_array_equal(block[10:250, 10:250], damaged_pattern(240, 240))
        data[0][:, :]  # the whole level again: no second notification
        np.asarray(data[-1])  # a coarse level built from the damaged one
        assert [(d["tile_row"], d["tile_col"]) for d in listed] == [(row, col)]
        assert len(shown) == 1
        assert f"tile ({row}, {col}) of level 0" in shown[0] and "flip.svs" in shown[0]
        assert "stripes" in shown[0] and "NaN" in shown[0]
    finally:
        slide.close()


def test_cli_info_check_lists_the_damaged_tile(damaged, capsys):
    from napari_xhisto.cli import main

    path, (row, col), box = damaged
    assert main(["info", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["damaged_tiles"] == []  # not read yet
    assert main(["info", str(path), "--check"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["checked_every_tile"] is True
    assert [(d["tile_row"], d["tile_col"], d["level0_region"]) for d in info["damaged_tiles"]] == [
        (row, col, list(box))]
