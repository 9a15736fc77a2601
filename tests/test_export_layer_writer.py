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
    assert back.values.sum() == pytest.approx(100 * 100)

    # any 2-D float layer: napari's translate is the centre of pixel 0
    (out,) = write_heatmap_layer(str(tmp_path / "p.ome.tif"), np.ones((8, 8), np.float32),
                                 {"name": "plain", "scale": (2.0, 2.0), "translate": (10.5, 20.5)})
    assert read_heatmap(out).placement == Placement(10, 20, 2, 2)
    with pytest.raises(XhistoError, match="2-D"):
        write_heatmap_layer(str(tmp_path / "rgb.ome.tif"), np.zeros((4, 4, 3), np.uint8), {"name": "rgb"})
