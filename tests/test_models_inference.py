"""Probability maps on slides: placement, tissue mask, batching, prefetch, the CLI."""

import json

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from napari_xhisto.geometry import Region
from napari_xhisto.models import (
    ModelSpec,
    load_model,
    plan_patches,
    predict_region,
    probability_layer_data,
    register_architecture,
    save_model,
)
from napari_xhisto.progress import run_to_end

torch.set_num_threads(2)
PURPLE, PINK = (110, 60, 200), (230, 150, 190)  # "tumour" (blue > red) and "stroma"
GAIN = 0.1  # logit(tumour) - logit(other) = GAIN * (mean blue - mean red), 0..255 scale


class MeanColourClassifier(nn.Module):
    """Tumour logit grows with (blue - red) of the patch mean: its output is known exactly."""

    def __init__(self, num_classes=2):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(3, num_classes)

    def forward(self, x):
        return self.classifier(self.flatten(self.pool(x)))


register_architecture("test_mean_colour")(MeanColourClassifier)


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    m = MeanColourClassifier()
    with torch.no_grad():  # input normalised with mean 0, std 1/255: x = pixel value
        m.classifier.weight.copy_(torch.tensor([[0.0, 0, 0], [-GAIN, 0, GAIN]]))
        m.classifier.bias.zero_()
    spec = ModelSpec(architecture="test_mean_colour", class_names=["other", "tumour"],
                     patch_size=32, mpp=1.0, mean=(0, 0, 0), std=(1 / 255,) * 3)
    return load_model(save_model(m, spec, folder / "colour.json"), device="cpu")


BOUNDARY = 300  # level-0 column where purple turns pink
BLANK_FROM = 448  # rows below are white glass


@pytest.fixture(scope="module")
def half_slide(tmp_path_factory):
    """A 512 x 640 tiled TIFF at 0.5 µm/px: purple left of column 300, pink right, glass below
    row 448."""
    img = np.empty((512, 640, 3), np.uint8)
    img[:, :BOUNDARY] = PURPLE
    img[:, BOUNDARY:] = PINK
    img[BLANK_FROM:] = 255
    path = tmp_path_factory.mktemp("slide") / "half.tif"
    tifffile.imwrite(path, img, tile=(128, 128), photometric="rgb")
    from napari_xhisto.slide import open_slide

    with open_slide(path, mpp=0.5) as slide:
        yield slide


def _expected_p(frac_purple):
    r = frac_purple * PURPLE[0] + (1 - frac_purple) * PINK[0]
    b = frac_purple * PURPLE[2] + (1 - frac_purple) * PINK[2]
    return 1 / (1 + np.exp(-GAIN * (b - r)))


def test_map_lines_up_with_the_slide(half_slide, colour_model):
    region = Region(10, 10, 480, 620)
    gen = predict_region(half_slide, region, colour_model, batch_size=5, workers=2)
    steps = []
    try:
        while True:
            steps.append(next(gen))
    except StopIteration as stop:
        pmap = stop.value
    # 32 px at 1 µm/px on a 0.5 µm/px slide: each patch covers 64 level-0 px
    assert pmap.placement.to_dict() == {"origin_row": 10.0, "origin_col": 10.0,
                                        "step_row": 64.0, "step_col": 64.0}
    assert pmap.probs.shape == (8, 10, 2) and pmap.class_names == ["other", "tumour"]
    assert steps[-1][0] == steps[-1][1] == pmap.tissue_mask.sum()
    # cell row 7 covers level-0 rows [458, 522): glass (and beyond the slide), skipped;
    # row 6 covers [394, 458): mostly tissue, kept
    assert pmap.tissue_mask[:7].all() and not pmap.tissue_mask[7].any()
    p = pmap.positive
    left = 10 + 64 * np.arange(9)  # column 9 sticks out of the slide
    for j, c0 in enumerate(left):
        frac = np.clip((BOUNDARY - c0) / 64, 0, 1)
        np.testing.assert_allclose(p[:6, j], _expected_p(frac), atol=0.02)
    assert (p[:6, :4] > 0.99).all() and (p[:6, 5:] < 0.05).all()
    assert (pmap.probs[~pmap.tissue_mask] == 0).all()
    assert pmap.provenance["n_patches"] == pmap.tissue_mask.sum()


def test_overlapping_stride_centres_patches_on_cells(half_slide, colour_model):
    plan = plan_patches(half_slide, Region(0, 0, 448, 640), colour_model.spec, stride=32)
    assert plan.shape == (14, 20) and plan.footprint == 64
    assert plan.window(0, 0) == (-16.0, -16.0)
    pmap = run_to_end(predict_region(half_slide, Region(0, 0, 448, 640), colour_model,
                                     stride=32, tissue_threshold=0))
    # cell j covers [32j, 32j+32); its patch [32j-16, 32j+48) is centred on it
    p = pmap.positive[5]
    for j in range(20):
        lo, hi = 32 * j - 16, 32 * j + 48
        inside_lo, inside_hi = max(lo, 0), min(hi, 640)
        purple = max(0, min(BOUNDARY, inside_hi) - inside_lo)
        white = (inside_lo - lo) + (hi - inside_hi)  # out of the slide: white (R = B)
        r = (purple * PURPLE[0] + (inside_hi - inside_lo - purple) * PINK[0] + white * 255) / 64
        b = (purple * PURPLE[2] + (inside_hi - inside_lo - purple) * PINK[2] + white * 255) / 64
        np.testing.assert_allclose(p[j], 1 / (1 + np.exp(-GAIN * (b - r))), atol=0.02)


def test_closing_the_generator_cancels(half_slide, colour_model):
    gen = predict_region(half_slide, None, colour_model, batch_size=4, workers=1)
    assert next(gen) == (0, 70)  # 7 tissue rows x 10 cols of the whole slide
    next(gen)
    gen.close()  # a widget's Cancel: no exception, reader threads stopped


def test_layer_data_places_the_map(half_slide, colour_model):
    pmap = run_to_end(predict_region(half_slide, Region(0, 0, 256, 256), colour_model))
    data, kw = probability_layer_data(pmap, 0.5)
    assert data.shape == (4, 4)
    assert kw["scale"] == (32.0, 32.0) and kw["translate"] == (15.75, 15.75)
    assert kw["metadata"]["xhisto"]["class"] == "tumour"


def test_slide_without_mpp_is_refused(tmp_path, colour_model):
    from napari_xhisto.errors import ModelError
    from napari_xhisto.slide import open_slide

    tifffile.imwrite(tmp_path / "nompp.tif", np.full((256, 256, 3), 200, np.uint8),
                     tile=(128, 128), photometric="rgb")
    with open_slide(tmp_path / "nompp.tif") as slide:
        assert slide.mpp is None  # a plain TIFF says nothing about µm/px
        with pytest.raises(ModelError, match="µm/px"):
            run_to_end(predict_region(slide, None, colour_model))


def test_predict_cli_writes_a_map_that_reads_back(half_slide, colour_model, tmp_path, capsys):
    from napari_xhisto.cli import main
    from napari_xhisto.export.heatmap_io import read_heatmap

    out = tmp_path / "prob.ome.tif"
    rc = main(["predict", str(half_slide.path), "--model", colour_model.spec.source,
               "--region", "10,10,480,620", "--out", str(out), "--mpp", "0.5",
               "--device", "cpu"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["shape"] == [8, 10] and summary["class"] == "tumour"
    back = read_heatmap(out)
    assert back.placement.to_dict() == {"origin_row": 10.0, "origin_col": 10.0,
                                        "step_row": 64.0, "step_col": 64.0}
    assert back.mpp == pytest.approx(0.5)
    assert np.isnan(back.values[7]).all() and np.isfinite(back.values[:7]).all()
    pmap = run_to_end(predict_region(half_slide, Region(10, 10, 480, 620), colour_model))
    np.testing.assert_allclose(back.values[:7], pmap.positive[:7], rtol=1e-6)
    assert back.provenance["model"] == "colour" and back.provenance["kind"] == "probability"


def test_tissue_test_on_uint8_planes_equals_the_float_formula():
    from napari_xhisto.models.inference import tissue_pixels

    # every green/blue pair, red in steps of 5 (3.3 M colours): the fast uint8 path answers
    # exactly as the float formula does, thresholds included
    r, g, b = np.meshgrid(np.arange(0, 256, 5), np.arange(256), np.arange(256), indexing="ij")
    rgb = np.stack([r, g, b], -1).reshape(-1, 256, 3).astype(np.uint8)
    fast = tissue_pixels(rgb)
    assert np.array_equal(fast, tissue_pixels(rgb.astype(np.float32)))
    assert fast.sum() > 10**6 and (~fast).sum() > 10**4  # both answers occur
    white, pink, dark = np.array([[[250, 250, 250], [230, 150, 200], [60, 60, 60]]], np.uint8)[0]
    assert tissue_pixels(np.array([[white, pink, dark]])).tolist() == [[False, True, True]]
