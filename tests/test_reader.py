"""The napari reader: layer data without a viewer, then the real CMU-1 slide in a viewer."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from napari_xhisto._reader import get_reader, read_slide, slide_layer_data
from napari_xhisto.slide import Slide

try:
    import conftest_slides as cs
except ImportError:  # tests collected as a package
    from . import conftest_slides as cs


@pytest.fixture(scope="module")
def svs_path(tmp_path_factory):
    return cs.standard_svs(tmp_path_factory.mktemp("reader") / "standard.svs")


def test_layer_data_for_svs(svs_path):
    assert get_reader(str(svs_path)) is read_slide
    assert get_reader([str(svs_path)]) is read_slide
    (data, kwargs, kind), = slide_layer_data(svs_path)
    assert kind == "image" and kwargs["rgb"] and kwargs["multiscale"]
    assert [a.shape[:2] for a in data] == [(1998, 2610), (800, 1044), (333, 435)]
    assert all(a.dtype == np.uint8 and a.shape[2] == 3 for a in data)
    assert kwargs["scale"] == (0.25, 0.25) and kwargs["units"] == ("µm", "µm")
    meta = kwargs["metadata"]
    slide = meta["xhisto_slide"]
    assert isinstance(slide, Slide) and slide.level_arrays() is data
    assert meta["xhisto"]["slide_path"] == str(svs_path) and meta["xhisto"]["mpp"] == 0.25
    assert meta["xhisto"]["backend"] == "tifffile"
    assert meta["xhisto"]["properties"]["openslide.vendor"] == "aperio"
    np.testing.assert_array_equal(data[0][700:1300, 900:1650], slide.read_region(700, 900, 600, 750))
    np.testing.assert_array_equal(np.asarray(data[2]), slide.read_region(0, 0, 333, 435, level=2))
    assert data[1][790:900, 1040:2000].shape == (10, 4, 3)  # clipped like numpy
    np.testing.assert_array_equal(data[0][-1, 5:9], slide.read_region(1997, 5, 1, 4)[0])
    np.testing.assert_array_equal(data[0][3, 7, 1], slide.read_region(3, 7, 1, 1)[0, 0, 1])
    (dask_levels, _, _), = slide_layer_data(svs_path, data="dask")
    np.testing.assert_array_equal(dask_levels[2][:40, :50].compute(), np.asarray(data[2])[:40, :50])
    slide.close()


def test_unknown_and_overridden_mpp(tmp_path):
    path = cs.write_tiled_tiff(tmp_path / "plain.tif", cs.textured_image(600, 700), tile=128)
    assert get_reader(str(path)) is read_slide
    (_, kwargs, _), = slide_layer_data(path)
    assert kwargs["scale"] == (1.0, 1.0) and kwargs["units"] == ("pixel", "pixel")
    assert kwargs["metadata"]["xhisto"]["mpp"] is None
    assert "unknown" in kwargs["metadata"]["xhisto"]["scale_note"]
    (_, kwargs, _), = slide_layer_data(path, mpp=0.42)
    assert kwargs["scale"] == (0.42, 0.42) and kwargs["metadata"]["xhisto"]["mpp_source"] == "override"


def test_get_reader_imports_nothing_heavy(svs_path):
    code = ("import sys; from napari_xhisto._reader import get_reader; "
            "r = get_reader(sys.argv[1]); "
            "print(r is not None, *(m in sys.modules for m in ('torch', 'numpy', 'tifffile')))")
    out = subprocess.run([sys.executable, "-c", code, str(svs_path)], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["True", "False", "False", "False"]


@pytest.mark.viewer
def test_viewer_shows_cmu1(make_napari_viewer, cmu1_path):
    viewer = make_napari_viewer(show=True)
    layers = viewer.open(str(cmu1_path), plugin="napari-xhisto")
    assert len(layers) == 1
    layer = layers[0]
    assert layer.multiscale and layer.rgb
    np.testing.assert_allclose(layer.scale, [0.499, 0.499])
    assert [str(u) for u in layer.units] == ["micrometer", "micrometer"]
    slide = layer.metadata["xhisto_slide"]
    assert layer.metadata["xhisto"]["mpp"] == pytest.approx(0.499)
    assert len(layer.data) == slide.level_count + slide.synthetic_level_count >= 2
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)
    # the slide is on screen: tissue (not white, not black background) fills part of the canvas
    tissue = (shot[..., :3].mean(axis=-1) < 220) & (shot[..., :3].mean(axis=-1) > 20)
    assert tissue.mean() > 0.05
    slide.close()
