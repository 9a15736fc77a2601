"""Compressed slides (*.nic.zarr) in napari: the reader, without torch, placed on the slide."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_xhisto.nic.codes import CodeGrid, write_codes

sys.path.insert(0, str(Path(__file__).parent))
from conftest_slides import write_aperio_svs  # noqa: E402

MPP, STRIDE, ORIGIN = 0.5, 64, (128, 192)
CELL = (3, 5)


def _grid() -> CodeGrid:
    rng = np.random.default_rng(0)
    codes = rng.normal(0, 0.1, (10, 12, 8)).astype(np.float32)
    codes[CELL] += 5.0  # one cell far from all others: the extreme of the first component
    tissue = np.ones((10, 12), bool)
    tissue[0] = False
    codes[~tissue] = 0
    return CodeGrid(codes=codes, stride=STRIDE, patch=STRIDE, origin=ORIGIN, mpp=MPP,
                    tissue=tissue, provenance={"encoder": {"kind": "toy"}})


def test_reader_opens_codes_without_torch(tmp_path):
    out = write_codes(tmp_path / "s.nic.zarr", _grid())
    code = ("import sys; from napari_xhisto._reader import get_reader; "
            "r = get_reader(sys.argv[1]); data, kw, kind = r(sys.argv[1])[0]; "
            "rgb = data.compute(); "
            "print(r.__name__, kind, rgb.shape, float(rgb.max()), kw['scale'], "
            "'torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert res == "read_codes_layer image (10, 12, 3) 1.0 (32.0, 32.0) False"
    from napari_xhisto._reader import get_reader

    assert get_reader(str(tmp_path)) is None
    (tmp_path / "x.nic.zarr").mkdir()
    assert get_reader(str(tmp_path / "x.nic.zarr")) is None  # not a codes store: other readers


@pytest.mark.viewer
def test_layer_lands_on_the_slide(make_napari_viewer, tmp_path):
    img = np.full((ORIGIN[0] + 10 * STRIDE + 64, ORIGIN[1] + 12 * STRIDE + 64, 3), 200, np.uint8)
    slide_path = write_aperio_svs(tmp_path / "s.svs", [img], mpp=MPP)
    out = write_codes(tmp_path / "s.nic.zarr", _grid())
    viewer = make_napari_viewer()
    slide_layer = viewer.open(str(slide_path), plugin="napari-xhisto")[0]
    layer = viewer.open(str(out), plugin="napari-xhisto")[0]
    assert layer.rgb and layer.metadata["xhisto"]["kind"] == "nic-codes"
    rgb = np.asarray(layer.data)
    assert rgb.shape == (10, 12, 3) and rgb[1:].max() > 0 and (rgb[0] == 0).all()
    # the outlier cell is the brightest red, and its centre is its slide pixels' centre
    assert np.unravel_index(np.argmax(rgb[..., 0]), rgb.shape[:2]) == CELL
    centre = [ORIGIN[k] + CELL[k] * STRIDE + (STRIDE - 1) / 2 for k in range(2)]
    np.testing.assert_allclose(layer.data_to_world(CELL), slide_layer.data_to_world(centre))
    corner = [ORIGIN[k] + CELL[k] * STRIDE - 0.5 for k in range(2)]  # slide pixel edge
    np.testing.assert_allclose(layer.data_to_world(np.subtract(CELL, 0.5)),
                               slide_layer.data_to_world(corner))
    slide_layer.metadata["xhisto_slide"].close()
