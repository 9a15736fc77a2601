"""Compressed-slide stores (napari_xhisto.nic.codes): round trip, placement, PCA view, errors."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xhisto.nic.codes import (
    CodeGrid,
    CodesError,
    CodeStore,
    codes_layer_data,
    is_codes_store,
    pca_rgb,
    read_codes,
    write_codes,
)


def _grid(rows=12, cols=17, c=8, *, origin=(40, 24), stride=64, seed=0) -> CodeGrid:
    rng = np.random.default_rng(seed)
    codes = rng.normal(size=(rows, cols, c)).astype(np.float32)
    tissue = np.ones((rows, cols), bool)
    tissue[:3] = False
    codes[~tissue] = 0
    return CodeGrid(codes=codes, stride=stride, patch=stride, origin=origin, mpp=0.5,
                    tissue=tissue, provenance={"encoder": {"kind": "toy"}, "P": stride})


def test_round_trip_is_lazy_and_exact(tmp_path):
    grid = _grid()
    out = write_codes(tmp_path / "s.nic.zarr", grid, chunk=5)
    assert is_codes_store(out) and not is_codes_store(tmp_path)
    back = read_codes(out)
    import dask.array as da

    assert isinstance(back.codes, da.Array) and back.codes.chunks[0][0] == 5
    np.testing.assert_array_equal(back.codes.compute(), grid.codes)
    np.testing.assert_array_equal(back.tissue, grid.tissue)
    assert (back.stride, back.patch, back.origin, back.mpp) == (64, 64, (40, 24), 0.5)
    assert back.provenance == {"encoder": {"kind": "toy"}, "P": 64}
    assert back.damaged is None
    assert [p.name for p in tmp_path.iterdir()] == ["s.nic.zarr"]  # no temporary left


def test_world_transform_puts_a_cell_on_its_slide_pixels():
    grid = _grid()
    (sy, sx), (ty, tx) = grid.world_transform()
    i, j = 5, 7
    # napari: data pixel centre at translate + i * scale; slide pixel r at r * mpp
    top = grid.origin[0] + i * grid.stride
    left = grid.origin[1] + j * grid.stride
    centre_rows = (top + (grid.patch - 1) / 2) * grid.mpp
    centre_cols = (left + (grid.patch - 1) / 2) * grid.mpp
    assert ty + i * sy == pytest.approx(centre_rows)
    assert tx + j * sx == pytest.approx(centre_cols)
    assert sy == sx == grid.stride * grid.mpp
    assert grid.cell_of(top + 3, left + grid.stride - 1) == (i, j)


def test_never_overwrites_without_asking(tmp_path):
    out = write_codes(tmp_path / "s.nic.zarr", _grid(seed=1))
    with pytest.raises(CodesError, match="already exists"):
        write_codes(out, _grid(seed=2))
    np.testing.assert_array_equal(read_codes(out).codes.compute(), _grid(seed=1).codes)
    write_codes(out, _grid(seed=2), overwrite=True)
    np.testing.assert_array_equal(read_codes(out).codes.compute(), _grid(seed=2).codes)
    assert [p.name for p in tmp_path.iterdir()] == ["s.nic.zarr"]


def test_damaged_cells_and_partial_runs(tmp_path):
    grid = _grid()
    grid.damaged = np.zeros(grid.shape, bool)
    grid.damaged[4, 4] = True
    grid.codes[4, 4] = np.nan
    back = read_codes(write_codes(tmp_path / "d.nic.zarr", grid))
    assert back.damaged[4, 4] and back.damaged.sum() == 1
    assert np.isnan(back.codes[4, 4].compute()).all()
    partial = CodeStore.create(tmp_path / "p.nic.zarr", shape=(4, 4), code_size=3, stride=8,
                               patch=8, origin=(0, 0), mpp=1.0, plan={"x": 1}, chunk=2)
    partial.write_chunk(0, 0, np.ones((2, 2, 3)), np.ones((2, 2), bool), np.zeros((2, 2), bool))
    assert CodeStore.open(partial.path).done_chunks().tolist() == [[True, False], [False, False]]
    with pytest.raises(CodesError, match="unfinished"):
        read_codes(partial.path)
    with pytest.raises(CodesError, match="no such"):
        read_codes(tmp_path / "none.nic.zarr")
    (tmp_path / "junk.nic.zarr").mkdir()
    with pytest.raises(CodesError, match="not a napari-xhisto codes store"):
        read_codes(tmp_path / "junk.nic.zarr")


def test_pca_rgb_matches_numpy_and_blacks_out_background(tmp_path):
    rng = np.random.default_rng(3)
    # codes with a dominant direction: PC1 must be it (up to sign, fixed positive)
    direction = np.zeros(8, np.float32)
    direction[2] = 1.0
    grid = _grid()
    grid.codes[grid.tissue] = (rng.normal(size=(grid.tissue.sum(), 1)) * 10 * direction
                               + rng.normal(size=(grid.tissue.sum(), 8)) * 0.1)
    rgb, info = pca_rgb(read_codes(write_codes(tmp_path / "p.nic.zarr", grid)))
    rgb = rgb.compute()
    assert rgb.shape == grid.shape + (3,)
    assert np.abs(info["components"][0] @ direction) == pytest.approx(1.0, abs=1e-3)
    assert info["explained_variance_ratio"][0] > 0.9
    assert (rgb[~grid.tissue] == 0).all()
    # the red channel orders tissue cells like their projection on the first component
    proj = grid.codes[grid.tissue] @ info["components"][0]
    red = rgb[grid.tissue][:, 0]
    inside = (red > 0) & (red < 1)
    assert np.corrcoef(proj[inside], red[inside])[0, 1] > 0.999
    data, kwargs, kind = codes_layer_data(tmp_path / "p.nic.zarr")[0]
    assert kind == "image" and kwargs["rgb"] and kwargs["scale"] == (32.0, 32.0)
    assert kwargs["metadata"]["xhisto"]["kind"] == "nic-codes"
