"""Bias lab: the quick run flags each biased model and not the clean one (read from its files)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_xhisto.biaslab.config import SquareArtefact
from napari_xhisto.biaslab.evaluate import offcentre_distance, tile, untile, with_square
from napari_xhisto.synth import PatchSet


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """``xhisto bias-lab OUT --quick`` through the CLI (exit code and printed lines kept)."""
    from napari_xhisto.cli import main

    out = tmp_path_factory.mktemp("bias_lab")
    code = main(["bias-lab", str(out), "--quick", "--seed", "0"])
    return out, code


def test_tile_untile_round_trip():
    rgb = np.random.default_rng(0).integers(0, 255, (70, 140, 3), dtype=np.uint8)
    patches = tile(rgb, 32)
    assert patches.shape == (2 * 4, 32, 32, 3)
    np.testing.assert_array_equal(patches[5], rgb[32:64, 32:64])  # row 1, col 1
    back = untile(patches[..., 0].astype(np.float32), rgb.shape, 32)
    np.testing.assert_array_equal(back[:64, :128], rgb[:64, :128, 0])
    assert np.isnan(back[64:]).all() and np.isnan(back[:, 128:]).all()


def test_offcentre_distance_and_square_on_tumour_only():
    d = offcentre_distance(np.array([32.0, 0.0, 64 + 40.7]), np.array([32.0, 32.0, 10.0]), 64)
    np.testing.assert_array_equal(d, [0, 32, 22])
    ps = PatchSet(np.zeros((3, 16, 16, 3), np.uint8), np.array([1, 0, 1]))
    sq = SquareArtefact("x", position=(4, 9), color=(255, 0, 255), size=3)
    out = with_square(ps, sq)
    assert (out[[0, 2], 4:7, 9:12] == [255, 0, 255]).all()
    assert out[1].max() == 0 and out[0].sum() == 9 * 510


def test_quick_bias_lab_files_read_back(quick_run):
    import matplotlib.image as mpimg

    out, _ = quick_run
    summary = json.loads((out / "summary.json").read_text())
    for name in summary["files"]:
        assert (out / name).is_file(), name
    pngs = [f for f in summary["files"] if f.endswith(".png")]
    assert len(pngs) == 4
    for f in pngs:
        img = mpimg.imread(out / f)
        assert img.ndim == 3 and img.shape[0] > 100 and img.std() > 0.01  # a real picture
        assert (out / f).stat().st_size < 300_000
    md = (out / "summary.md").read_text()
    assert "| Model |" in md and "centre-label" in md and "no-necrosis" in md


def test_quick_bias_lab_square_models_flagged_clean_not(quick_run):
    out, _ = quick_run
    s = json.loads((out / "summary.json").read_text())
    squares = s["class_correlated_square"]
    assert len(squares) >= 2  # the corner square and at least one moved, recoloured one
    positions = {tuple(v["square"]["position"]) for v in squares.values()}
    colors = {tuple(v["square"]["color"]) for v in squares.values()}
    assert len(positions) >= 2 and len(colors) >= 2
    for v in squares.values():
        b, c = v["biased"], v["clean"]
        assert b["enrichment"] >= s["thresholds"]["square_min_enrichment"]
        assert b["hotspot_at_square"] and b["hotspot_flag"]
        assert c["enrichment"] < s["thresholds"]["square_min_enrichment"]
        assert not c["flagged"]
    assert s["checks"]["square_biased_flagged"] and s["checks"]["square_clean_not_flagged"]


def test_quick_bias_lab_checks_match_their_numbers(quick_run):
    """Each pass/fail in summary.json follows from the numbers beside it (no silent verdicts)."""
    out, code = quick_run
    s = json.loads((out / "summary.json").read_text())
    st = s["centre_bias"]["steepness"]
    lim = s["thresholds"]["centre_flag_min_enrichment"]
    assert s["checks"]["centre_profile_steeper"] == (
        st["biased_centre_enrichment"] >= lim > st["clean_centre_enrichment"]
        and st["biased_concentration"] > st["clean_concentration"])
    oc = s["cell_level"]["offcentre_auc"]
    assert s["checks"]["centre_offcentre_auc_lower"] == (oc["centre-label"] < oc["clean"])
    n = s["necrosis"]
    assert s["checks"]["necrosis_positive_only_when_excluded"] == (
        n["mean_no_necrosis"] > 0 and not n["mean_clean"] > 0)
    assert s["all_pass"] == all(s["checks"].values())
    assert code == (0 if s["all_pass"] else 1)


def test_quick_bias_lab_centre_bias_flagged(quick_run):
    """Check (2): the centre-label model's relevance piles up at the patch centre, and it finds
    tumour cells away from the patch centres worse than the clean model."""
    out, _ = quick_run
    s = json.loads((out / "summary.json").read_text())
    st = s["centre_bias"]["steepness"]
    assert st["biased_concentration"] > st["clean_concentration"]
    prof = s["centre_bias"]["profiles"]
    assert prof["centre-label"]["flag"] and not prof["clean"]["flag"]
    oc = s["cell_level"]["offcentre_auc"]
    assert oc["centre-label"] < oc["clean"]


def test_quick_bias_lab_necrosis_flagged(quick_run):
    """Check (3): necrosis gets positive tumour relevance only from the model that never saw it
    (on "comedo" necrosis, which keeps the ghosts and debris of the dead tumour cells)."""
    out, _ = quick_run
    s = json.loads((out / "summary.json").read_text())
    assert s["config"]["necrosis"] == "comedo"
    n = s["necrosis"]
    assert n["n_regions"] >= 3
    assert n["mean_no_necrosis"] > 0 >= n["mean_clean"]
    assert any("necrosis" in f for f in n["flags"])


def test_quick_bias_lab_all_checks_pass(quick_run):
    out, code = quick_run
    s = json.loads((out / "summary.json").read_text())
    assert s["all_pass"], {k: v for k, v in s["checks"].items() if not v}
    assert code == 0
