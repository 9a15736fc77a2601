"""Heatmap files: values, placement, pixel size and provenance survive a round trip."""

import numpy as np
import pytest
import tifffile

from napari_xhisto.errors import XhistoError
from napari_xhisto.export import read_heatmap, write_heatmap
from napari_xhisto.geometry import Placement


def test_round_trip_keeps_values_placement_and_provenance(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(1100, 700)).astype(np.float32)
    values[5, 7] = np.nan
    placement = Placement(origin_row=1024, origin_col=2048, step_row=2.0, step_col=2.0)
    path = write_heatmap(tmp_path / "h.ome.tif", values, placement, mpp=0.25,
                         provenance={"method": "lrp-epsilon-plus", "normalize": "global-max"})
    back = read_heatmap(path)
    np.testing.assert_array_equal(back.values, values)
    assert back.placement == placement
    assert back.mpp == 0.25
    assert back.provenance["method"] == "lrp-epsilon-plus"
    assert back.provenance["stored_dtype"] == "float32"
    assert back.levels == 3  # 1100 -> 550 -> 275 px

    with tifffile.TiffFile(path) as tf:
        assert tf.is_ome
        pixels = tf.ome_metadata
        # 2 level-0 px per heatmap px at 0.25 µm/px = 0.5 µm
        assert 'PhysicalSizeX="0.5"' in pixels and 'PhysicalSizeXUnit="µm"' in pixels
        assert 'PositionX="512.0"' in pixels  # 2048 px * 0.25 µm
        level1 = tf.series[0].levels[1].asarray()
    # the coarse level is the NaN-aware 2x2 mean
    expected = values[:2, :2].mean()
    assert level1[0, 0] == pytest.approx(expected, rel=1e-6)
    assert np.isfinite(level1[2, 3])  # the 2x2 block holding the NaN keeps the mean of the rest


def test_coarse_level_placement_scales(tmp_path):
    values = np.ones((1030, 1030), np.float32)
    path = write_heatmap(tmp_path / "h.ome.tif", values, Placement(10, 20, 1, 1), mpp=0.5)
    lvl = read_heatmap(path, level=1)
    assert lvl.values.shape == (515, 515)
    assert lvl.placement == Placement(10, 20, 2.0, 2.0)


def test_float16_choice_is_recorded(tmp_path):
    values = np.linspace(-1, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    back = read_heatmap(write_heatmap(tmp_path / "h.tif", values, Placement(), mpp=None, dtype="float16"))
    assert back.values.dtype == np.float16
    np.testing.assert_allclose(back.values, values, atol=1e-3)
    assert back.provenance["stored_dtype"] == "float16"
    assert back.mpp is None


def test_bad_inputs_are_explained(tmp_path):
    with pytest.raises(XhistoError, match="2-D"):
        write_heatmap(tmp_path / "x.tif", np.zeros((2, 2, 2)), Placement(), mpp=1)
    with pytest.raises(XhistoError, match="not found"):
        read_heatmap(tmp_path / "missing.tif")
    (tmp_path / "junk.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(XhistoError, match="cannot read heatmap"):
        read_heatmap(tmp_path / "junk.tif")


def test_plain_tiff_without_our_metadata_is_placed_at_origin(tmp_path):
    values = np.arange(20, dtype=np.float32).reshape(4, 5)
    tifffile.imwrite(tmp_path / "plain.tif", values)
    back = read_heatmap(tmp_path / "plain.tif")
    np.testing.assert_array_equal(back.values, values)
    assert back.placement == Placement()
