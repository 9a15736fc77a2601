"""Golden pixels for every level of synthetic SVS and OME-TIFF slides against openslide / tifffile,
chunk seams, synthetic levels, read_scaled, µm/px, and the real CMU-1 slide."""

from __future__ import annotations

import json
import sys

import numpy as np
import openslide
import pytest
import tifffile

from napari_xhisto.geometry import Region
from napari_xhisto.slide import TileCache, open_slide
from napari_xhisto.slide.resample import area_weights

try:
    from conftest_slides import (
        nearest_resize,
        standard_svs,
        textured_image,
        write_aperio_svs,
        write_ome_tiff,
        write_tiled_tiff,
    )
except ImportError:  # tests collected as a package
    from .conftest_slides import (
        nearest_resize,
        standard_svs,
        textured_image,
        write_aperio_svs,
        write_ome_tiff,
        write_tiled_tiff,
    )


def openslide_rgb(osr, x, y, level, w, h):
    """openslide.read_region composited on white, as (h, w, 3)."""
    rgba = np.asarray(osr.read_region((x, y), level, (w, h))).astype(np.uint16)
    a = rgba[..., 3:4]
    return ((rgba[..., :3] * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


@pytest.fixture(scope="module")
def svs_path(tmp_path_factory):
    return standard_svs(tmp_path_factory.mktemp("svs") / "standard.svs")


@pytest.fixture(scope="module")
def ome_path(tmp_path_factory):
    base = textured_image(1001, 1503, seed=3)
    levels = [base, nearest_resize(base, (334, 501)), nearest_resize(base, (84, 126))]
    return write_ome_tiff(tmp_path_factory.mktemp("ome") / "pyramid.ome.tif", levels, mpp=0.5)


def test_svs_levels_and_exact_downsamples(svs_path):
    with open_slide(svs_path) as slide:
        assert slide.backend == "tifffile" and slide.vendor == "aperio"
        assert slide.dimensions == (1998, 2610)
        assert slide.level_dimensions == [(1998, 2610), (800, 1044), (333, 435)]
        # rows and cols separately, never rounded
        assert slide.level_downsamples == [(1.0, 1.0), (1998 / 800, 2610 / 1044), (6.0, 6.0)]
        assert slide.level_downsamples[1][0] != slide.level_downsamples[1][1]
        assert slide.mpp == pytest.approx(0.25)
        assert slide.synthetic_level_count == 0


@pytest.mark.parametrize("backend", ["tifffile", "openslide"])
def test_svs_every_level_equals_openslide(svs_path, backend):
    osr = openslide.OpenSlide(str(svs_path))
    with open_slide(svs_path, backend=backend) as slide:
        assert slide.backend == backend
        for level, (h, w) in enumerate(slide.level_dimensions):
            expected = openslide_rgb(osr, 0, 0, level, w, h)
            if backend == "openslide" and level == 1:
                # openslide places a tile of a non-integer level at a fractional offset and
                # resamples it: its tiles cannot equal one whole-level read (documented limit)
                continue
            np.testing.assert_array_equal(slide.read_region(0, 0, h, w, level=level), expected)
            np.testing.assert_array_equal(slide.pyramid()[level].compute(), expected)


def test_svs_level0_windows_and_outside_area(svs_path):
    osr = openslide.OpenSlide(str(svs_path))
    rng = np.random.default_rng(7)
    with open_slide(svs_path) as slide:
        for _ in range(6):
            r, c = int(rng.integers(0, 1900)), int(rng.integers(0, 2500))
            h, w = int(rng.integers(1, 400)), int(rng.integers(1, 400))
            np.testing.assert_array_equal(slide.read_region(r, c, h, w),
                                          openslide_rgb(osr, c, r, 0, w, h))
        # a window hanging over the top-left and bottom-right corners: white outside
        np.testing.assert_array_equal(slide.read_region(-50, -30, 300, 200),
                                      openslide_rgb(osr, -30, -50, 0, 200, 300))
        corner = slide.read_region(1900, 2500, 200, 200)
        assert (corner[98:, :] == 255).all() and (corner[:, 110:] == 255).all()
        np.testing.assert_array_equal(corner[:98, :110], openslide_rgb(osr, 2500, 1900, 0, 110, 98))
        # level 2 is exactly 6x: level-0 corner (600, 1200) is level-2 pixel (100, 200)
        np.testing.assert_array_equal(slide.read_region(600, 1200, 50, 70, level=2),
                                      openslide_rgb(osr, 1200, 600, 2, 70, 50))


def test_ome_tiff_every_level_equals_tifffile(ome_path):
    with open_slide(ome_path) as slide:
        assert slide.backend == "tifffile" and slide.vendor == "ome-tiff"
        assert slide.mpp == pytest.approx(0.5) and slide.mpp_source.startswith("OME")
        assert slide.level_dimensions == [(1001, 1503), (334, 501), (84, 126)]
        assert slide.level_downsamples[1] == (1001 / 334, 3.0)
        for level, (h, w) in enumerate(slide.level_dimensions):
            expected = tifffile.imread(ome_path, level=level)
            np.testing.assert_array_equal(slide.pyramid()[level].compute(), expected)
            np.testing.assert_array_equal(slide.read_region(0, 0, h, w, level=level), expected)


def test_chunks_are_tile_multiples_and_seams_equal_one_read(svs_path):
    with open_slide(svs_path) as slide:
        pyramid = slide.pyramid()
        assert slide.pyramid() is pyramid
        for level, arr in enumerate(pyramid):
            lv = slide.levels[level]
            ch, cw = lv.chunk
            assert ch % lv.tile[0] == 0 and cw % lv.tile[1] == 0 and 512 <= ch <= 2048
            assert arr.chunks[0][0] == min(ch, lv.shape[0]) and arr.chunks[1][0] == min(cw, lv.shape[1])
        arr = pyramid[0]
        # a window crossing two chunk seams in each direction
        window = arr[400:1700, 300:1400].compute()
        slide.cache.clear()
        np.testing.assert_array_equal(window, slide.read_region(400, 300, 1300, 1100))


def test_synthetic_levels_are_box_means(tmp_path):
    base = textured_image(2501, 1799, seed=5)
    path = write_tiled_tiff(tmp_path / "single.tif", base, tile=256)
    with open_slide(path, cache=TileCache(64 * 2**20)) as slide:
        assert slide.level_count == 1
        shapes = [lv.shape for lv in slide.levels]
        assert shapes == [(2501, 1799), (1251, 900), (626, 450)]
        assert max(shapes[-1]) <= 1024
        level0 = base.astype(np.float64)
        padded = np.pad(level0, ((0, 1), (0, 1), (0, 0)), mode="edge")
        expected1 = padded.reshape(1251, 2, 900, 2, 3).mean(axis=(1, 3))
        got1 = slide.pyramid()[1].compute()
        assert np.abs(got1 - expected1).max() <= 0.501
        padded1 = np.pad(got1.astype(np.float64), ((0, 1), (0, 0), (0, 0)), mode="edge")
        expected2 = padded1.reshape(626, 2, 450, 2, 3).mean(axis=(1, 3))
        assert np.abs(slide.pyramid()[2].compute() - expected2).max() <= 0.501
        assert slide.level_downsamples == [(1.0, 1.0)]
        assert slide.levels[2].downsample == (2501 / 626, 1799 / 450)


def slow_area_resize(image, r0, r1, c0, c1, oh, ow):
    """Per-pixel reference: integrate the image over each output footprint."""
    out = np.zeros((oh, ow, 3))
    fr, fc = (r1 - r0) / oh, (c1 - c0) / ow
    for i in range(oh):
        a0, a1 = r0 + i * fr, r0 + (i + 1) * fr
        for j in range(ow):
            b0, b1 = c0 + j * fc, c0 + (j + 1) * fc
            acc = np.zeros(3)
            for y in range(int(np.floor(a0)), int(np.ceil(a1))):
                wy = min(y + 1, a1) - max(y, a0)
                for x in range(int(np.floor(b0)), int(np.ceil(b1))):
                    wx = min(x + 1, b1) - max(x, b0)
                    acc += wy * wx * image[y, x]
            out[i, j] = acc / (fr * fc)
    return out


def test_read_scaled_area_average(svs_path):
    with open_slide(svs_path) as slide:
        # integer factor on level 0: 2x2 block means
        block = slide.read_region(100, 200, 64, 96).astype(np.float64)
        expected = block.reshape(32, 2, 48, 2, 3).mean(axis=(1, 3))
        got = slide.read_scaled(Region(100, 200, 64, 96), 32, 48)
        assert np.abs(got - expected).max() <= 0.501
        # fractional footprint (factor 1.6 -> level 0), against the slow reference
        big = slide.read_region(300, 400, 40, 40).astype(np.float64)
        got = slide.read_scaled(Region(300, 400, 32, 24), 20, 15)
        expected = slow_area_resize(big, 0, 32, 0, 24, 20, 15)
        assert np.abs(got - expected).max() <= 0.501
        # factor 7 picks the 6x level and averages over the footprint there
        assert slide.best_level_for_downsample(7.0) == 2
        region = Region(600, 1200, 420, 630)
        got = slide.read_scaled(region, 60, 90)
        level2 = slide.read_region(600, 1200, 70, 105, level=2).astype(np.float64)
        expected = slow_area_resize(level2, 0, 70, 0, 105, 60, 90)
        assert np.abs(got - expected).max() <= 0.501


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_block_mean_rounds_half_up_exactly(factor):
    # 2 and 4 go through Pillow's reduce on RGB, 3 through numpy: the same integer rule,
    # (sum + n // 2) // n, on every pixel, non-contiguous input included
    from napari_xhisto.slide.resample import _block_mean

    rng = np.random.default_rng(factor)
    big = rng.integers(0, 256, (factor * 40, factor * 2 * 70, 3), dtype=np.uint8)
    image = big[:, ::2]  # a strided view, as slices of a read are
    n = factor * factor
    sums = image.astype(np.int64).reshape(40, factor, 70, factor, 3).sum(axis=(1, 3))
    got = _block_mean(image, factor, factor)
    assert got.dtype == np.uint8 and got.shape == (40, 70, 3)
    assert got.flags.writeable  # the caller's own array, as every read returns
    np.testing.assert_array_equal(got, (sums + n // 2) // n)
    assert ((sums % n) == n // 2).any()  # half-way cases were met


def test_area_weights_rows_sum_to_one():
    w = area_weights(0.3, 17.9, 20, 7)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    np.testing.assert_allclose(w[0, 0], 0.7 / (17.6 / 7))


def test_mpp_sources(tmp_path):
    img = textured_image(300, 400)
    with open_slide(write_tiled_tiff(tmp_path / "cm.tif", img, resolution=(40000, 40000, "CENTIMETER"))) as s:
        assert s.mpp == pytest.approx(0.25)
    # a 72 dpi dummy tag is not a scanner resolution: unknown, and said so
    with open_slide(write_tiled_tiff(tmp_path / "dpi.tif", img, resolution=(72, 72, "INCH"))) as s:
        assert s.mpp is None and s.mpp_source == "unknown"
    with open_slide(tmp_path / "dpi.tif", mpp=0.33) as s:
        assert s.mpp == 0.33 and s.mpp_source == "override"
    with open_slide(write_tiled_tiff(tmp_path / "none.tif", img)) as s:
        assert s.mpp is None
    with pytest.raises(Exception, match="positive"):
        open_slide(tmp_path / "none.tif", mpp=-1)


def test_rgba_tiff_composited_on_white(tmp_path):
    img = np.zeros((300, 300, 4), np.uint8)
    img[..., :3] = 40
    img[:, :150, 3] = 255
    img[:, 150:, 3] = 0
    with open_slide(write_tiled_tiff(tmp_path / "rgba.tif", img, rgba=True)) as s:
        out = s.read_region(0, 0, 300, 300)
    assert (out[:, :150] == 40).all() and (out[:, 150:] == 255).all()


def test_info_command_prints_json(svs_path, capsys):
    from napari_xhisto.cli import main

    assert main(["info", str(svs_path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["backend"] == "tifffile" and info["vendor"] == "aperio"
    assert info["level_dimensions"] == [[1998, 2610], [800, 1044], [333, 435]]
    assert info["level_downsamples"][1] == [1998 / 800, 2610 / 1044]
    assert info["mpp"] == pytest.approx(0.25) and info["tile_size"][0] == [128, 128]


def test_opening_a_slide_loads_no_torch_or_napari(svs_path):
    import subprocess

    code = ("import sys; from napari_xhisto.slide import open_slide; s = open_slide(sys.argv[1]); "
            "s.pyramid()[-1].compute(); print('torch' in sys.modules, 'napari' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(svs_path)], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_real_cmu1_slide(cmu1_path):
    osr = openslide.OpenSlide(str(cmu1_path))
    with open_slide(cmu1_path) as slide:
        assert slide.mpp == pytest.approx(0.499)
        assert slide.vendor == "aperio" and slide.backend == "tifffile"
        assert slide.level_count == 1 and slide.dimensions == (2967, 2220)
        assert slide.synthetic_level_count >= 1
        assert max(slide.levels[-1].shape) <= 1024
        np.testing.assert_array_equal(slide.read_region(1000, 700, 600, 800),
                                      openslide_rgb(osr, 700, 1000, 0, 800, 600))
        coarse = slide.pyramid()[-1].compute()
        assert coarse.shape[:2] == slide.levels[-1].shape


def test_svs_written_like_the_benchmark_slide(tmp_path):
    """make_slide.py style: levels flagged as reduced pages (tifffile's SVS series stops there)."""
    base = textured_image(1024, 1536, seed=2)
    path = tmp_path / "bench_style.svs"
    desc = ("Aperio Image Library v12.0.15\r\n1536x1024 [0,0 1536x1024] (256x256) JPEG/RGB Q=80"
            "|AppMag = 40|MPP = 0.2500")
    with tifffile.TiffWriter(path) as tw:
        tw.write(base, tile=(256, 256), photometric="rgb", compression="jpeg", description=desc,
                 metadata=None)
        tw.write(np.ascontiguousarray(base[::2, ::2]), tile=(256, 256), photometric="rgb",
                 compression="jpeg", subfiletype=1, metadata=None,
                 description="Aperio Image Library v12.0.15\r\n1536x1024 -> 768x512 - |MPP = 0.2500")
    osr = openslide.OpenSlide(str(path))
    with open_slide(path) as slide:
        assert slide.backend == "tifffile" and slide.level_count == osr.level_count == 2
        np.testing.assert_array_equal(slide.pyramid()[1].compute(),
                                      openslide_rgb(osr, 0, 0, 1, 768, 512))


def test_write_aperio_helper_levels_detected(tmp_path):
    base = textured_image(700, 900, seed=1)
    path = write_aperio_svs(tmp_path / "two.svs", [base, nearest_resize(base, (350, 450))])
    assert openslide.OpenSlide(str(path)).level_count == 2


def test_concurrent_reads_from_many_threads_equal_serial_reads(svs_path):
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(11)
    windows = [(int(rng.integers(-100, 1900)), int(rng.integers(-100, 2500)),
                int(rng.integers(50, 600)), int(rng.integers(50, 600)), int(rng.integers(0, 3)))
               for _ in range(24)]
    with open_slide(svs_path, cache=TileCache(2 * 2**20)) as slide:  # small: forces evictions
        with ThreadPoolExecutor(6) as pool:
            parallel = list(pool.map(lambda w: slide.read_region(*w[:4], level=w[4]), windows))
        slide.cache.clear()
        for window, got in zip(windows, parallel):
            np.testing.assert_array_equal(got, slide.read_region(*window[:4], level=window[4]))
