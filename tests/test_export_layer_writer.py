"""The npe2 heatmap-layer writer: layer data + attributes -> OME-TIFF with the same placement."""

import numpy as np
import pytest

from napari_xhisto._widgets.layers import SparseCanvas, heatmap_layer_data
from napari_xhisto.errors import XhistoError
from napari_xhisto.export import read_heatmap
from napari_xhisto.export.layer_writer import write_heatmap_layer
from napari_xhisto.geometry import Placement


def test_heatmap_layer_round_trip(tmp_path):
    values = np.random.default_rng(0).normal(size=(300, 200)).astype(np.float32)
    placement = Placement(64, 32, 4, 4)
    data, attrs, _ = heatmap_layer_data(values, placement, mpp=0.5, name="lrp",
                                        provenance={"method": "lrp-epsilon-plus"})
    (out,) = write_heatmap_layer(str(tmp_path / "lrp.ome.tif"), data, attrs)
    back = read_heatmap(out)
    np.testing.assert_array_equal(back.values, values)
    assert back.placement == placement and back.mpp == 0.5
    assert back.provenance["method"] == "lrp-epsilon-plus" and back.provenance["kind"] == "heatmap"


def test_multiscale_canvas_and_plain_image_layers(tmp_path):
    canvas = SparseCanvas((2000, 3000), step=2)
    patch = np.full((100, 100), 3.0, np.float32)
    canvas.paste(patch, Placement(200, 400, 2, 2))
    attrs = {"name": "canvas", "metadata": {"xhisto": {"kind": "heatmap", "mpp": 0.25,
             "placement": canvas.placement.to_dict(), "provenance": {}}}}
    (out,) = write_heatmap_layer(str(tmp_path / "c.ome.tif"), canvas.levels(), attrs)
    back = read_heatmap(out)
    assert back.values.shape == (1000, 1500) and back.placement == Placement(0, 0, 2, 2)
    np.testing.assert_array_equal(back.values[100:200, 200:300], 1.0)  # shown normalised
    assert np.nansum(back.values) == pytest.approx(100 * 100)
    assert np.isnan(back.values).sum() == 1000 * 1500 - 100 * 100  # never explained: NaN

    # any 2-D float layer: napari's translate is the centre of pixel 0
    (out,) = write_heatmap_layer(str(tmp_path / "p.ome.tif"), np.ones((8, 8), np.float32),
                                 {"name": "plain", "scale": (2.0, 2.0), "translate": (10.5, 20.5)})
    assert read_heatmap(out).placement == Placement(10, 20, 2, 2)
    with pytest.raises(XhistoError, match="2-D"):
        write_heatmap_layer(str(tmp_path / "rgb.ome.tif"), np.zeros((4, 4, 3), np.uint8), {"name": "rgb"})


def test_heatmap_files_come_back_as_lined_up_lazy_layers(tmp_path):
    import tifffile

    from napari_xhisto.export import write_heatmap
    from napari_xhisto.export.layer_reader import heatmap_file_layer_data, is_heatmap_file

    values = np.random.default_rng(1).normal(size=(1200, 700)).astype(np.float32)
    placement = Placement(64, 32, 4, 4)
    path = write_heatmap(tmp_path / "h.ome.tif", values, placement, mpp=0.25,
                         provenance={"method": "gradient", "name": "grad"})
    assert is_heatmap_file(path)
    tifffile.imwrite(tmp_path / "plain.tif", values)
    assert not is_heatmap_file(tmp_path / "plain.tif") and not is_heatmap_file(tmp_path / "nope.tif")
    ((data, kwargs, kind),) = heatmap_file_layer_data(path)
    assert kind == "image" and kwargs["multiscale"] and kwargs["name"] == "grad"
    assert [lvl.shape for lvl in data] == [(1200, 700), (600, 350), (300, 175)]
    expected = placement.layer_transform(0.25)
    assert kwargs["scale"] == expected["scale"] and kwargs["translate"] == expected["translate"]
    np.testing.assert_array_equal(data[0][100:130, 40:90], values[100:130, 40:90])
    np.testing.assert_array_equal(data[0][5, ::7], values[5, ::7])
    np.testing.assert_allclose(data[1][10, 20], values[20:22, 40:42].mean(), rtol=1e-6)
    meta = kwargs["metadata"]["xhisto"]
    assert meta["kind"] == "heatmap" and Placement.from_dict(meta["placement"]) == placement
    assert meta["mpp"] == 0.25 and meta["provenance"]["method"] == "gradient"
    lo, hi = kwargs["contrast_limits"]
    assert hi > 0 and lo == -hi
    # the writer reads it straight back out: same file content
    (again,) = write_heatmap_layer(str(tmp_path / "again.ome.tif"), data, kwargs)
    np.testing.assert_array_equal(read_heatmap(again).values, values)
    assert read_heatmap(again).placement == placement
