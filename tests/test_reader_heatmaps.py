"""Our reader opens heatmap files as heatmap layers placed on their slide."""

import numpy as np
import pytest

from napari_xhisto._reader import get_reader
from napari_xhisto.export import write_heatmap
from napari_xhisto.geometry import Placement


def test_heatmap_file_opens_as_placed_heatmap_layer(tmp_path):
    values = np.linspace(-1, 1, 300 * 200, dtype=np.float32).reshape(300, 200)
    placement = Placement(1000, 2000, 4, 4)
    path = write_heatmap(tmp_path / "heat.ome.tif", values, placement, mpp=0.5,
                         provenance={"method": "grad-cam", "kind": "heatmap"})
    reader = get_reader(str(path))
    assert reader is not None
    (data, kwargs, kind), = reader(str(path))
    assert kind == "image"
    level0 = data[0] if isinstance(data, list) else data
    np.testing.assert_array_equal(np.asarray(level0[10:20, 30:40]), values[10:20, 30:40])
    expected = placement.layer_transform(0.5)
    assert tuple(kwargs["scale"]) == pytest.approx(expected["scale"])
    assert tuple(kwargs["translate"]) == pytest.approx(expected["translate"])
    meta = kwargs["metadata"]["xhisto"]
    assert meta["provenance"]["method"] == "grad-cam"
    assert Placement.from_dict(meta["placement"]) == placement


def test_plain_float_tiff_is_not_taken_for_a_heatmap_or_slide(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((32, 32), np.float32))
    assert get_reader(str(tmp_path / "plain.tif")) is None
