"""PNG snapshots: picture size, heatmap over grey H&E, legend colours and scale-bar length."""

import io

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.image import imread
from test_export_rgb import write_test_svs  # tests/ is on sys.path (rootdir conftest)

from napari_xhisto.errors import XhistoError
from napari_xhisto.export.rgb import grey_scale
from napari_xhisto.export.snapshot import nice_length, write_snapshot
from napari_xhisto.export.tiles import ArrayTiles
from napari_xhisto.geometry import Placement, Region


@pytest.fixture
def slide(tmp_path):
    from napari_xhisto.slide import open_slide

    with open_slide(write_test_svs(tmp_path / "slide.svs", 900, 1300)) as s:
        yield s


def _png(path):
    return np.round(imread(io.BytesIO(path.read_bytes()))[..., :3] * 255).astype(int)


def test_snapshot_shows_heatmap_legend_and_scale_bar(tmp_path, slide):
    values = np.zeros((200, 300), np.float32)
    values[20:60, 30:90] = 1.0  # strong positive evidence
    values[120:160, 150:250] = -1.0  # strong negative evidence
    source = ArrayTiles(values, Placement(100, 100, 2, 2),
                        provenance={"model": "demo", "method": "lrp-epsilon-plus", "normalize": "global-max"})
    region = Region(50, 80, 600, 900)
    layout = write_snapshot(tmp_path / "snap.png", region, source, mpp=0.5, slide=slide, max_size=600,
                            alpha=0.6)
    img = _png(tmp_path / "snap.png")
    assert img.shape[:2] == layout.size
    r0, c0, r1, c1 = layout.image_box
    assert (r1 - r0, c1 - c0) == (400, 600)  # 600 x 900 level-0 px shrunk 1.5x
    assert "demo" in layout.title and "lrp-epsilon-plus" in layout.title and "global-max" in layout.title

    def at_level0(row, col):  # PNG pixel showing level-0 (row, col)
        return img[r0 + int((row - region.level0_row) / 1.5), c0 + int((col - region.level0_col) / 1.5)]

    grey = grey_scale(slide.read_region(0, 0, 900, 1300)).astype(int)
    red = np.array(colormaps["bwr"](1.0)[:3]) * 255
    blue = np.array(colormaps["bwr"](0.0)[:3]) * 255
    # inside the positive block: 0.6 red + 0.4 grey H&E (grey measured at the same place)
    pos = at_level0(100 + 2 * 40, 100 + 2 * 60)
    np.testing.assert_allclose(pos, 0.6 * red + 0.4 * grey[180, 220], atol=12)
    neg = at_level0(100 + 2 * 140, 100 + 2 * 200)
    np.testing.assert_allclose(neg, 0.6 * blue + 0.4 * grey[380, 500], atol=12)
    outside = at_level0(600, 900)  # beyond the heatmap: plain grey H&E
    assert np.ptp(outside) <= 2 and abs(outside[0] - grey[600, 900, 0]) <= 12

    # legend: the colour bar runs from blue (bottom, -vmax) to red (top, +vmax) through white
    lr0, lc0, lr1, lc1 = layout.legend_box
    column = img[lr0 + 3:lr1 - 3, (lc0 + lc1) // 2]
    assert layout.vmax == pytest.approx(1.0)
    np.testing.assert_allclose(column[0], red, atol=25)
    np.testing.assert_allclose(column[-1], blue, atol=25)
    np.testing.assert_allclose(column[len(column) // 2], [255, 255, 255], atol=25)

    # scale bar: a nice length, drawn black over the stated number of pixels
    assert layout.scale_bar_um == 100.0  # 0.25 * 900 px * 0.5 µm = 112 µm -> 100 µm
    br0, bc0, br1, bc1 = layout.scale_bar_box
    row = img[(br0 + br1) // 2, c0:c1]
    dark = np.nonzero(row.max(axis=1) < 60)[0]
    assert abs(len(dark) - 100 / (0.5 * 1.5)) <= 3  # 133 px
    assert abs(c0 + dark[0] - bc0) <= 2


def test_snapshot_without_slide_or_mpp_and_refusals(tmp_path):
    source = ArrayTiles(np.linspace(-2, 2, 64 * 64, dtype=np.float32).reshape(64, 64), Placement())
    layout = write_snapshot(tmp_path / "a.png", Region(0, 0, 64, 64), source, mpp=None)
    assert layout.scale_bar_um == 0.0 and layout.vmax == pytest.approx(2.0, rel=1e-3)
    img = _png(tmp_path / "a.png")
    assert img.shape[:2] == layout.size
    with pytest.raises(XhistoError, match="already exists"):
        write_snapshot(tmp_path / "a.png", Region(0, 0, 64, 64), source, mpp=None)
    with pytest.raises(XhistoError, match="PNG"):
        write_snapshot(tmp_path / "a.jpg", Region(0, 0, 64, 64), source, mpp=None)


def test_nice_lengths():
    assert [nice_length(x) for x in (0.7, 1, 3, 7.5, 12, 499, 2100)] == [0.5, 1, 2, 5, 10, 200, 2000]


def test_title_names_the_model_not_its_file_paths():
    from napari_xhisto.export.snapshot import provenance_title

    title = provenance_title({"model": {"model": "demo", "weights": "/long/path/demo.safetensors"},
                              "method": "lrp-epsilon-plus", "normalize": "global-max"})
    assert title == "model: demo | method: lrp-epsilon-plus | normalisation: global-max"


def test_snapshot_names_the_target_class_not_its_index(tmp_path):
    from napari_xhisto.export.snapshot import provenance_title, target_name

    prov = {"model": {"model": "demo", "class_names": ["non-tumour", "tumour"]},
            "method": "lrp-epsilon-plus", "target": 1, "normalize": "global-max"}
    assert target_name(prov) == "tumour"
    assert "target: tumour" in provenance_title(prov) and "target: 1" not in provenance_title(prov)
    assert target_name({"target": 1, "target_class": "stroma"}) == "stroma"  # as explainers record
    assert target_name({"target": "2"}) == "class 2"  # no names known: still not a bare number
    assert target_name({}) is None
    values = np.ones((20, 30), np.float32)
    source = ArrayTiles(values, Placement(0, 0, 2, 2), provenance=prov)
    layout = write_snapshot(tmp_path / "t.png", Region(0, 0, 40, 60), source, mpp=0.5)
    assert "target: tumour" in layout.title
