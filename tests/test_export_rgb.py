"""Colour-mapped RGB overlays: OpenSlide opens them lined up with the slide, pixels = colour map."""

import numpy as np
import openslide
import pytest
import tifffile
from matplotlib import colormaps

from napari_xhisto.errors import XhistoError
from napari_xhisto.export import write_heatmap
from napari_xhisto.export.rgb import (
    blend,
    colorize,
    grey_scale,
    read_overlay_info,
    write_rgb_overlay,
)
from napari_xhisto.export.tiles import ArrayTiles, HeatmapTileReader
from napari_xhisto.geometry import Placement


def write_test_svs(path, h, w, *, mpp=0.5):
    """A small Aperio-style SVS (REFERENCES.md recipe) with a smooth colour gradient."""
    rr, cc = np.mgrid[0:h, 0:w]
    img = np.stack([rr * 255 // h, cc * 255 // w, (rr + cc) % 256], -1).astype(np.uint8)
    desc = (f"Aperio Image Library v12.0.15\r\n{w}x{h} [0,0 {w}x{h}] (256x256) JPEG/RGB Q=80"
            f"|AppMag = 20|MPP = {mpp}")
    with tifffile.TiffWriter(path) as tw:
        tw.write(img, tile=(256, 256), photometric="rgb", compression="jpeg", description=desc,
                 metadata=None)
    return path


@pytest.fixture
def slide(tmp_path):
    from napari_xhisto.slide import open_slide

    with open_slide(write_test_svs(tmp_path / "slide.svs", 900, 1300)) as s:
        yield s


def _reference_colours(values, vmax, cmap="bwr"):
    """matplotlib's own colours of values / vmax on [-1, 1] (independent of our lookup table)."""
    rgba = colormaps[cmap]((np.clip(values / vmax, -1, 1) + 1) / 2)
    return np.round(rgba[..., :3] * 255)


def test_colour_map_is_centred_and_symmetric():
    vals = np.array([-2.0, -1.0, 0.0, 1.0, 2.0, np.nan], np.float32)
    rgb, finite = colorize(vals, vmax=2.0)
    assert finite.tolist() == [True] * 5 + [False]
    assert np.abs(rgb[:5].astype(int) - _reference_colours(vals[:5], 2.0)).max() <= 3
    assert tuple(rgb[2]) == tuple(rgb[5])  # zero and NaN share the centre (white for bwr)
    assert rgb[0, 2] > 200 and rgb[0, 0] < 10 and rgb[4, 0] > 200 and rgb[4, 2] < 10


def test_region_overlay_opens_in_openslide_with_exact_colours(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(300, 450)).astype(np.float32)
    values[:10] = np.nan
    placement = Placement(100, 300, 2, 2)
    source = ArrayTiles(values, placement, provenance={"method": "lrp-epsilon-plus", "model": "demo"})
    path = write_rgb_overlay(tmp_path / "o.svs", source, mpp=0.5, compression="zlib", vmax=2.5,
                             min_level_size=512)
    with openslide.OpenSlide(path) as osr:
        assert osr.properties["openslide.vendor"] == "aperio"
        assert osr.dimensions == (900, 600)  # (width, height): 450 * 2, 300 * 2 level-0 px
        assert float(osr.properties["openslide.mpp-x"]) == pytest.approx(0.5)
        assert osr.properties["aperio.XhistoOriginRow"] == "100"
        assert osr.properties["aperio.XhistoOriginCol"] == "300"
        assert osr.properties["aperio.XhistoMethod"] == "lrp-epsilon-plus"
        got = np.asarray(osr.read_region((400, 60), 0, (50, 40)))[..., :3]  # x, y in the overlay
        level1 = np.asarray(osr.read_region((0, 0), 1, (450, 300)))[..., :3]
    # overlay pixel (y, x) is level-0 (100 + y, 300 + x) -> heatmap (y // 2, x // 2)
    window = values[30:50, 200:225]
    expected = np.repeat(np.repeat(_reference_colours(window, 2.5), 2, 0), 2, 1)
    assert np.abs(got.astype(int) - expected).max() <= 3
    nan_rgb = np.asarray(openslide.OpenSlide(path).read_region((0, 0), 0, (4, 4)))[..., :3]
    assert (nan_rgb == 255).all()  # no value -> white
    # level 1 is the 2x2 mean: each 2x2 block is one heatmap pixel, so level 1 = the colour map
    own, _ = colorize(values, vmax=2.5)
    own[:10] = 255
    assert np.abs(level1.astype(int) - own).max() <= 1
    with tifffile.TiffFile(path) as tf:
        assert tf.is_svs
        assert tf.series[0].shape[-3:] == (600, 900, 3)
        info = read_overlay_info(tf.pages[0].description)
    assert float(info["XhistoVmax"]) == 2.5 and info["XhistoCanvas"] == "region"


def test_full_slide_overlay_blended_over_grey_slide_lines_up(tmp_path, slide):
    rr, cc = np.mgrid[0:100, 0:150]
    values = np.sin(rr / 9.0) * np.cos(cc / 13.0)
    heat = write_heatmap(tmp_path / "h.ome.tif", values.astype(np.float32), Placement(200, 400, 4, 4),
                         mpp=0.5)
    with HeatmapTileReader(heat) as reader:
        path = write_rgb_overlay(tmp_path / "full.svs", reader, mpp=slide.mpp, slide=slide,
                                 full_slide=True, blend_slide=True, alpha=0.5, vmax=1.0)
    with openslide.OpenSlide(path) as osr:
        assert osr.dimensions == (1300, 900)  # the slide's own level-0 size
        assert osr.properties["aperio.XhistoCanvas"] == "slide"
        got = np.asarray(osr.read_region((380, 180), 0, (120, 80)))[..., :3].astype(int)
    # level-0 rows 180..260, cols 380..500; heatmap starts at (200, 400), 4 px per value
    grey = grey_scale(slide.read_region(180, 380, 80, 120))
    idx_r = (np.arange(180, 260) - 200) // 4
    idx_c = (np.arange(380, 500) - 400) // 4
    inside = (idx_r[:, None] >= 0) & (idx_c[None, :] >= 0)
    vals = np.where(inside, values[np.clip(idx_r, 0, None)][:, np.clip(idx_c, 0, None)], np.nan)
    colours, finite = colorize(vals, vmax=1.0)
    expected = blend(colours, finite, grey, 0.5).astype(int)
    # JPEG: compare within codec error, and check the grey (outside) vs blended (inside) parts
    assert np.abs(got - expected).mean() < 4
    assert np.abs(got[~inside] - grey[~inside]).mean() < 4
    assert (got[~inside].max(axis=-1) - got[~inside].min(axis=-1)).mean() < 4  # grey outside


def test_overlay_refuses_bad_requests(tmp_path):
    source = ArrayTiles(np.ones((10, 10), np.float32), Placement())
    with pytest.raises(XhistoError, match="full-slide overlay needs the slide"):
        write_rgb_overlay(tmp_path / "a.svs", source, mpp=0.5, full_slide=True)
    with pytest.raises(XhistoError, match="compression"):
        write_rgb_overlay(tmp_path / "a.svs", source, mpp=0.5, compression="webp2000")
    (tmp_path / "b.svs").write_bytes(b"keep")
    with pytest.raises(XhistoError, match="already exists"):
        write_rgb_overlay(tmp_path / "b.svs", source, mpp=0.5)
    assert (tmp_path / "b.svs").read_bytes() == b"keep"
