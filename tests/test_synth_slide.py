"""Synthetic slides on disk: Aperio SVS and OME-TIFF read back, ground truth, CLI, napari sample."""

import json

import numpy as np
import pytest

from napari_xhisto.annotations import read_annotations
from napari_xhisto.synth.render import SynthWorld
from napari_xhisto.synth.writer import write_slide

H, W, SEED = 1300, 2100, 5


@pytest.fixture(scope="module")
def svs(tmp_path_factory):
    out = tmp_path_factory.mktemp("svs") / "slide.svs"
    return write_slide(out, size=(H, W), seed=SEED, quality=90)


def test_svs_is_aperio_with_mpp_and_pyramid(svs):
    import openslide

    path, geojson = svs
    with openslide.OpenSlide(str(path)) as s:
        assert s.properties["openslide.vendor"] == "aperio"
        assert float(s.properties["openslide.mpp-x"]) == pytest.approx(0.5)
        assert float(s.properties["openslide.mpp-y"]) == pytest.approx(0.5)
        assert s.dimensions == (W, H)
        assert s.level_count >= 2
        assert s.level_dimensions[1] == (-(-W // 4), -(-H // 4))
        assert "thumbnail" in s.associated_images


def test_svs_pixels_equal_the_rendering_across_tile_borders(svs):
    import openslide

    path, _ = svs
    r0, c0, h, w = 200, 700, 300, 400  # crosses tile rows 256 and cols 768, 1024 (render block)
    world = SynthWorld(H, W, seed=SEED, mpp=0.5, layout="slide")
    rendered, _ = world.render(r0, c0, h, w)
    with openslide.OpenSlide(str(path)) as s:
        read = np.asarray(s.read_region((c0, r0), 0, (w, h)).convert("RGB"))
    diff = np.abs(read.astype(int) - rendered.astype(int))
    assert diff.mean() < 3.0          # JPEG (q 90) error only
    assert np.percentile(diff, 99) < 25
    # level 1 is the 4 x 4 area average of the rendered level 0
    with openslide.OpenSlide(str(path)) as s:
        l1 = np.asarray(s.read_region((1024, 256), 1, (100, 60)).convert("RGB")).astype(float)
    l0, _ = world.render(256, 1024, 244, 404)
    ref = l0.astype(float).reshape(61, 4, 101, 4, 3).mean(axis=(1, 3))
    err = np.abs(l1 - ref[:60, :100]).mean()
    shifted = np.abs(l1 - ref[1:, 1:]).mean()  # one level-1 pixel off
    assert err < 6.0 and err < 0.6 * shifted


def test_geojson_ground_truth_matches_the_slide(svs):
    path, geojson = svs
    assert geojson.name == "slide.geojson"
    gt = read_annotations(geojson)
    world = SynthWorld(H, W, seed=SEED, mpp=0.5, layout="slide")
    cb = world.ground_truth_cells(0, 0, H, W)
    names, counts = np.unique(world.class_names(cb), return_counts=True)
    assert gt.cells.counts() == dict(zip(names.tolist(), counts.tolist()))
    assert len(set(gt.cells.ids)) == len(gt.cells)
    classes = {r.cls for r in gt.regions}
    assert {"tumour area", "stroma", "artefact"} <= classes
    assert {r.name for r in gt.regions if r.cls == "artefact"} == {"fold", "pen", "bubble", "blur"}
    raw = json.loads(geojson.read_text())
    kinds = {f["properties"]["objectType"] for f in raw["features"]}
    assert kinds == {"detection", "annotation"}


def test_ome_tiff_has_physical_sizes_and_subifd_pyramid(tmp_path):
    import tifffile

    path, geojson = write_slide(tmp_path / "s.ome.tif", size=900, seed=1, mpp=0.25,
                                ground_truth=False)
    assert geojson is None
    with tifffile.TiffFile(path) as tf:
        assert tf.is_ome
        xml = tf.ome_metadata
        assert 'PhysicalSizeX="0.25"' in xml and 'PhysicalSizeXUnit="µm"' in xml
        levels = tf.series[0].levels
        assert [lv.shape for lv in levels] == [(900, 900, 3), (225, 225, 3)]
        assert tf.pages[0].compression == tifffile.COMPRESSION.JPEG and tf.pages[0].is_tiled
        full = levels[0].asarray()
    world = SynthWorld(900, 900, seed=1, mpp=0.25, layout="slide")
    rendered, _ = world.render(0, 0, 900, 900)
    assert np.abs(full.astype(int) - rendered.astype(int)).mean() < 3.5


def test_cli_synth_writes_slide_and_refuses_to_overwrite(tmp_path, capsys):
    from napari_xhisto.cli import main

    out = tmp_path / "cli.svs"
    assert main(["synth", str(out), "--size", "700x900", "--seed", "3"]) == 0
    assert out.exists() and (tmp_path / "cli.geojson").exists()
    import openslide

    with openslide.OpenSlide(str(out)) as s:
        assert s.dimensions == (900, 700) and s.properties["openslide.vendor"] == "aperio"
    assert main(["synth", str(out), "--size", "700"]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "x.svs"), "--size", "10"]) == 1


@pytest.mark.viewer
def test_napari_sample_opens_slide_cells_and_regions(make_napari_viewer, tmp_path, monkeypatch):
    monkeypatch.setenv("XHISTO_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("XHISTO_SAMPLE_SIZE", "1536")
    viewer = make_napari_viewer()
    viewer.open_sample("napari-xhisto", "synthetic-he")
    kinds = [type(layer).__name__ for layer in viewer.layers]
    assert kinds == ["Image", "Points", "Shapes"]
    image, points, shapes = viewer.layers
    assert image.multiscale and image.rgb
    np.testing.assert_allclose(image.scale, [0.5, 0.5])
    gt = read_annotations(tmp_path / "synthetic-he-seed0-1536px.geojson")
    assert len(points.data) == len(gt.cells) > 0
    assert set(points.features["class"]) == set(gt.cells.classes)
    # points are in µm: the extent of the cells lies within the slide's µm extent
    assert points.data.max() <= 1536 * 0.5 and points.data.min() >= 0
    assert len(shapes.data) == len(gt.regions)
    assert set(shapes.features["class"]) >= {"tumour area", "artefact"}


def test_ground_truth_file_sits_beside_the_slide():
    from pathlib import Path

    from napari_xhisto.synth.writer import ground_truth_path

    assert ground_truth_path("d/s.ome.tif") == Path("d/s.geojson")
    assert ground_truth_path("d/s.OME.TIFF") == Path("d/s.geojson")
    assert ground_truth_path("d/case.v2.svs") == Path("d/case.v2.geojson")
