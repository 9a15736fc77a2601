"""Damaged JPEG tiles: strict decoding gives the same pixels as tifffile and openslide on intact
tiles, and flags a tile whose entropy-coded data was bit-flipped (which imagecodecs decodes to a
plausible block without a word) on both backends; the tile is drawn as stripes, listed, reported
once, and ``damage_mask`` places it."""

from __future__ import annotations

import logging

import numpy as np
import openslide
import pytest
import tifffile

from napari_xhisto.geometry import Region
from napari_xhisto.slide import TileCache, open_slide
from napari_xhisto.slide.core import damaged_pattern
from napari_xhisto.slide.jpeg import strict_jpeg_decoder

try:
    import conftest_slides as cs
except ImportError:  # tests collected as a package
    from . import conftest_slides as cs


@pytest.fixture(scope="module")
def cmu1_damaged(tmp_path_factory, cmu1_path):
    """A copy of CMU-1-Small-Region.svs with 4 kB of one tissue tile's JPEG data bit-flipped."""
    tile = cs.largest_tile(cmu1_path)
    path = cs.flip_entropy_bits(cmu1_path, tmp_path_factory.mktemp("damaged") / "cmu1_flip.svs",
                                *tile, seed=1)
    return path, tile


@pytest.fixture(scope="module")
def synth_slide(tmp_path_factory):
    from napari_xhisto.synth.writer import write_slide

    path, _ = write_slide(tmp_path_factory.mktemp("synth") / "synth.svs", size=(512, 768),
                          seed=5, ground_truth=False, workers=1)
    return path


def _all_tiles_vs_tifffile(path, page_index=0):
    """Every tile of a page: strict decoder vs tifffile's own decode (imagecodecs)."""
    with tifffile.TiffFile(path) as tf, open(path, "rb") as fh:
        page = tf.pages[page_index]
        decode = strict_jpeg_decoder(page)
        assert decode is not None, "a JPEG RGB/YCbCr page is decoded strictly"
        for index, (offset, count) in enumerate(zip(page.dataoffsets, page.databytecounts)):
            fh.seek(offset)
            data = fh.read(count)
            ref, _, _ = page.decode(data, index, jpegtables=page.jpegtables)
            np.testing.assert_array_equal(decode(data), ref.reshape(ref.shape[-3:]))
        return int(page.photometric), len(page.dataoffsets)


def test_strict_decoding_is_pixel_identical_on_intact_tiles(cmu1_path, synth_slide):
    # Aperio: abbreviated streams + JPEGTables, RGB photometric with component ids 0, 1, 2
    photometric, n = _all_tiles_vs_tifffile(cmu1_path)
    assert photometric == 2 and n == 130
    # tifffile-written (napari_xhisto.synth): YCbCr photometric
    photometric, _ = _all_tiles_vs_tifffile(synth_slide)
    assert photometric == 6
    # and against openslide, through the slide layer, whole level 0
    for path in (cmu1_path, synth_slide):
        with open_slide(path, cache=TileCache(64 * 2**20)) as slide, \
                openslide.OpenSlide(str(path)) as osr:
            assert slide.backend == "tifffile"
            h, w = slide.dimensions
            ours = slide.read_region(0, 0, h, w)
            ref = np.asarray(osr.read_region((0, 0), 0, (w, h)))[..., :3]
            np.testing.assert_array_equal(ours, ref)
            assert slide.damaged_tiles == []


def test_flipped_tile_decodes_silently_with_imagecodecs(cmu1_damaged):
    """The premise: tifffile/imagecodecs return a plausible tile for the damaged data."""
    path, (row, col) = cmu1_damaged
    offset, count = cs.tile_span(path, 0, row, col)
    with tifffile.TiffFile(path) as tf, open(path, "rb") as fh:
        page = tf.pages[0]
        fh.seek(offset)
        data = fh.read(count)
        index = row * (-(-page.imagewidth // page.tilewidth)) + col
        lenient, _, _ = page.decode(data, index, jpegtables=page.jpegtables)
        assert lenient.shape[-3:] == (240, 240, 3)
        with pytest.raises(ValueError, match="Corrupt JPEG data"):
            strict_jpeg_decoder(page)(data)


@pytest.mark.parametrize("backend", ["tifffile", "openslide"])
def test_damaged_tile_is_striped_listed_and_reported_once(cmu1_damaged, cmu1_path, backend,
                                                          caplog):
    path, (row, col) = cmu1_damaged
    reports = []
    with open_slide(path, backend=backend, cache=TileCache(64 * 2**20)) as slide, \
            open_slide(cmu1_path, backend=backend) as ref:
        assert slide.backend == backend
        slide.on_tile_error.append(lambda s, *args: reports.append(args[:3]))
        h, w = slide.dimensions
        with caplog.at_level(logging.WARNING, logger="napari_xhisto.slide"):
            ours = slide.read_region(0, 0, h, w)
            again = slide.read_region(0, 0, h, w)  # read twice: reported once
        expected = ref.read_region(0, 0, h, w)
        top, left = row * 240, col * 240
        box = (slice(top, top + 240), slice(left, left + 240))
        np.testing.assert_array_equal(ours[box], damaged_pattern(240, 240))
        np.testing.assert_array_equal(again, ours)
        outside = np.ones((h, w), bool)
        outside[box] = False
        np.testing.assert_array_equal(ours[outside], expected[outside])  # every other pixel
        assert reports == [(0, row, col)]
        (entry,) = slide.damaged_tiles
        assert entry["level0_region"] == [top, left, 240, 240]
        assert "Corrupt JPEG data" in entry["error"]
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
        # the damage mask of a read_scaled at 1/8 scale covers exactly the tile's pixels
        region = Region(0, 0, h, w)
        out_h, out_w = h // 8, w // 8
        slide.read_scaled(region, out_h, out_w)
        mask = slide.damage_mask(region, out_h, out_w)
        fy, fx = out_h / h, out_w / w
        rows, cols = np.nonzero(mask)
        assert rows.min() == int(top * fy) and rows.max() == int(np.ceil((top + 240) * fy)) - 1
        assert cols.min() == int(left * fx) and cols.max() == int(np.ceil((left + 240) * fx)) - 1
        assert slide.damage_mask(Region(0, 0, 240, 240), 60, 60) is None  # an intact corner


def test_strict_decoding_catches_damage_openslide_misses(tmp_path, cmu1_path):
    """Flips whose only symptom is libjpeg's "extraneous bytes before marker" warning at the
    end of the scan: openslide returns the tile silently, strict decoding does not."""
    tile = cs.largest_tile(cmu1_path)
    path = cs.flip_entropy_bits(cmu1_path, tmp_path / "late.svs", *tile, seed=0)
    with openslide.OpenSlide(str(path)) as osr:
        osr.read_region((tile[1] * 240, tile[0] * 240), 0, (240, 240))  # no error
    with open_slide(path) as slide:
        assert slide.backend == "tifffile"
        slide.read_region(tile[0] * 240, tile[1] * 240, 240, 240)
        (entry,) = slide.damaged_tiles
        assert "extraneous bytes" in entry["error"]


def test_damaged_probe_tile_opens_and_is_listed(tmp_path, cmu1_path):
    # the tile open_slide decodes first (the middle of level 0) damaged: the file still opens
    middle = ((2967 // 2) // 240, (2220 // 2) // 240)
    path = cs.flip_entropy_bits(cmu1_path, tmp_path / "probe.svs", *middle)
    with open_slide(path) as slide:
        assert [(d["tile_row"], d["tile_col"]) for d in slide.damaged_tiles] == [middle]
        assert slide.backend == "tifffile"


def test_damaged_synthetic_slide_tile(tmp_path, synth_slide):
    row, col = cs.largest_tile(synth_slide)
    path = cs.flip_entropy_bits(synth_slide, tmp_path / "synth_flip.svs", row, col, nbytes=2048)
    with open_slide(path) as slide, open_slide(synth_slide) as ref:
        th, tw = slide.levels[0].tile
        block = slide.read_region(row * th, col * tw, th, tw)
        assert [(d["tile_row"], d["tile_col"]) for d in slide.damaged_tiles] == [(row, col)]
        rows, cols = block.shape[:2]
        np.testing.assert_array_equal(block, damaged_pattern(th, tw)[:rows, :cols])
        # coarser synthetic-free file levels stay intact; level 0 neighbours too
        np.testing.assert_array_equal(slide.read_region(0, 0, 64, 64), ref.read_region(0, 0, 64, 64))
