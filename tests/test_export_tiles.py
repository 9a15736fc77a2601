"""Tile-by-tile heatmap files: same file as the in-memory writer, bounded memory, canvases, cancel."""

import math
import tracemalloc

import numpy as np
import pytest
import tifffile

from napari_xhisto.errors import XhistoError
from napari_xhisto.export import read_heatmap, write_heatmap
from napari_xhisto.export.tiled_writer import iter_write_heatmap_tiles, write_heatmap_tiles
from napari_xhisto.export.tiles import ArrayTiles, HeatmapTileReader, full_slide_canvas
from napari_xhisto.geometry import Placement


def _levels(path):
    with tifffile.TiffFile(path) as tf:
        return [lvl.asarray() for lvl in tf.series[0].levels], tf.ome_metadata


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_streamed_file_equals_in_memory_file(tmp_path, dtype):
    rng = np.random.default_rng(1)
    values = rng.normal(size=(1100, 701)).astype(np.float32)
    values[5, 7] = np.nan
    values[300:340, 200:260] = np.nan
    placement = Placement(1024, 2048, 2.0, 2.0)
    prov = {"method": "lrp-epsilon-plus", "model": "demo", "normalize": "global-max"}
    ref = write_heatmap(tmp_path / "ref.ome.tif", values, placement, mpp=0.25, provenance=prov, dtype=dtype)
    calls = []

    def source(r, c, h, w):
        calls.append((r, c, h, w))
        return ArrayTiles(values, placement).read(r, c, h, w)

    out = write_heatmap_tiles(tmp_path / "tiles.ome.tif", values.shape, source, placement, mpp=0.25,
                              provenance=prov, dtype=dtype)
    ref_levels, ref_xml = _levels(ref)
    out_levels, out_xml = _levels(out)
    assert [a.shape for a in out_levels] == [(1100, 701), (550, 351), (275, 176)]
    for a, b in zip(ref_levels, out_levels, strict=True):
        assert a.dtype == b.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a, b)
    # each level-0 tile was asked for exactly once, edge tiles at their true size
    assert len(calls) == math.ceil(1100 / 256) * math.ceil(701 / 256)
    assert (1024, 512, 76, 189) in calls
    back = read_heatmap(out)
    assert back.placement == placement and back.mpp == 0.25
    assert back.provenance["method"] == "lrp-epsilon-plus"
    assert back.provenance["stored_dtype"] == dtype
    if dtype == "float32":
        assert 'PhysicalSizeX="0.5"' in out_xml and 'PositionY="256.0"' in out_xml


def test_memory_stays_bounded_on_a_big_canvas(tmp_path):
    shape = (4096, 3072)  # 48 MiB as float32

    def source(r, c, h, w):
        rr, cc = np.mgrid[r:r + h, c:c + w]
        return (np.sin(rr / 97.0) * np.cos(cc / 61.0)).astype(np.float32)

    tracemalloc.start()
    try:
        path = write_heatmap_tiles(tmp_path / "big.ome.tif", shape, source, Placement(0, 0, 2, 2), mpp=0.5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    full = shape[0] * shape[1] * 4
    assert peak < full / 4, f"peak {peak / 2**20:.1f} MiB for a {full / 2**20:.0f} MiB map"
    with HeatmapTileReader(path) as reader:
        window = reader.read(1000, 2000, 300, 400)
    np.testing.assert_allclose(window, source(1000, 2000, 300, 400))
    with HeatmapTileReader(path, level=2) as reader:
        assert reader.shape == (1024, 768)
        assert reader.placement == Placement(0, 0, 8.0, 8.0)
        # a level-2 pixel is the mean of the 4x4 level-0 block (all finite here)
        np.testing.assert_allclose(reader.read(10, 20, 1, 1)[0, 0], source(40, 80, 4, 4).mean(), rtol=1e-5)


def test_tile_reader_windows_match_the_array_including_outside(tmp_path):
    rng = np.random.default_rng(2)
    values = rng.normal(size=(600, 530)).astype(np.float32)
    path = write_heatmap(tmp_path / "h.ome.tif", values, Placement(3, 4, 1, 1), mpp=0.5)
    padded = np.pad(values, 100, constant_values=np.nan)
    with HeatmapTileReader(path, cache_tiles=2) as reader:
        for r, c, h, w in [(-20, -30, 100, 90), (250, 250, 20, 20), (500, 480, 160, 120), (0, 0, 600, 530)]:
            np.testing.assert_array_equal(reader.read(r, c, h, w),
                                          padded[r + 100:r + 100 + h, c + 100:c + 100 + w])
        assert reader.placement == Placement(3, 4, 1, 1)


def test_full_slide_canvas_copies_values_on_the_slide_grid(tmp_path):
    values = np.arange(30 * 40, dtype=np.float32).reshape(30, 40)
    region = ArrayTiles(values, Placement(103, 52, 4, 4))  # origin 103 is not a multiple of 4
    shape, placement, source = full_slide_canvas(region, (300, 400))
    assert placement == Placement(-1, 0, 4, 4)  # shifted by whole steps into (-4, 0]
    assert shape == (math.ceil(301 / 4), 100)
    path = write_heatmap_tiles(tmp_path / "canvas.ome.tif", shape, source, placement, mpp=0.5,
                               min_level_size=64)
    back = read_heatmap(path)
    assert back.placement == placement
    assert back.values.shape == shape
    # canvas pixel (26, 13) covers level-0 rows [-1 + 26*4, ...) = [103, ...): heatmap (0, 0)
    np.testing.assert_array_equal(back.values[26:56, 13:53], values)
    outside = np.ones(shape, bool)
    outside[26:56, 13:53] = False
    assert np.isnan(back.values[outside]).all()


def test_existing_files_are_kept_unless_overwrite(tmp_path):
    path = tmp_path / "h.ome.tif"
    path.write_bytes(b"user's file")
    src = ArrayTiles(np.zeros((10, 10), np.float32), Placement())
    with pytest.raises(XhistoError, match="already exists"):
        write_heatmap_tiles(path, (10, 10), src.read, Placement(), mpp=1)
    assert path.read_bytes() == b"user's file"
    write_heatmap_tiles(path, (10, 10), src.read, Placement(), mpp=1, overwrite=True)
    np.testing.assert_array_equal(read_heatmap(path).values, np.zeros((10, 10)))


def test_cancel_and_errors_leave_no_partial_file(tmp_path):
    src = ArrayTiles(np.ones((2000, 2000), np.float32), Placement())
    gen = iter_write_heatmap_tiles(tmp_path / "c.ome.tif", (2000, 2000), src.read, Placement(), mpp=1)
    done, total = next(gen)
    assert (done, total) == (1, 64 + 16 + 4)
    gen.close()
    assert list(tmp_path.iterdir()) == []

    with pytest.raises(XhistoError, match="returned shape"):
        write_heatmap_tiles(tmp_path / "bad.ome.tif", (300, 300), lambda r, c, h, w: np.zeros((2, 2)),
                            Placement(), mpp=1)
    assert list(tmp_path.iterdir()) == []


def test_tile_reader_reads_plain_stripped_tiffs(tmp_path):
    values = np.arange(300 * 70, dtype=np.float32).reshape(300, 70)
    tifffile.imwrite(tmp_path / "strips.tif", values, rowsperstrip=64, compression="zlib")
    with HeatmapTileReader(tmp_path / "strips.tif") as reader:
        assert reader.placement == Placement() and reader.mpp is None
        np.testing.assert_array_equal(reader.read(50, 10, 200, 50), values[50:250, 10:60])
        np.testing.assert_array_equal(reader.read(0, 0, 300, 70), values)
