"""``inpaint-occlusion`` and the what-if computation on toy cases (no GPU, no viewer)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_xhisto.counterfactual import Inpainter
from napari_xhisto.counterfactual import occlusion as occ
from napari_xhisto.errors import ModelError
from napari_xhisto.explain import get_explainer, list_explainers


class ConstFill(torch.nn.Module):
    """A stand-in inpainter painting every hole with one colour (composited like the U-Net)."""

    def __init__(self, value=0.2):
        super().__init__()
        self.value = value

    def forward(self, x, mask):
        return x * mask + self.value * (1 - mask)


class RegionMean(torch.nn.Module):
    """Logit 1 = mean of channel 0 over rows 4..12, cols 8..20; logit 0 = minus that."""

    def forward(self, x):
        s = x[:, 0, 4:12, 8:20].mean(dim=(1, 2))
        return torch.stack([-s, s], dim=1)


@pytest.fixture
def fake_inpainter():
    inp = Inpainter(ConstFill(0.2), 32, 1.0, {"classifier": {"mean": [0.5] * 3,
                                                             "std": [0.25] * 3}})
    occ._CACHE[("fake", "cpu")] = inp
    yield inp
    occ._CACHE.pop(("fake", "cpu"), None)


def test_registered_with_its_needs():
    names = {m["name"]: m for m in list_explainers()}
    assert "inpaint-occlusion" in names
    assert "inpainter" in names["inpaint-occlusion"]["description"]
    assert "inpainter" in names["inpaint-occlusion"]["params"]
    assert "trained inpainter" in names["inpaint-occlusion"]["requires"][0]


def test_equals_occlusion_when_the_inpainter_paints_a_constant(fake_inpainter):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    module = RegionMean()
    got = get_explainer("inpaint-occlusion").explain(module, x, 1, window=8, stride=4,
                                                     inpainter="fake")
    baseline = (0.2 - 0.5) / 0.25  # the constant colour in normalised units
    want = get_explainer("occlusion").explain(module, x, 1, window=8, stride=4,
                                              baseline=baseline)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # the toy model only looks at rows 4..12, cols 8..20: nothing elsewhere
    assert np.all(got[:, 20:, :] == 0) and np.abs(got[:, 4:12, 8:20]).max() > 0


def test_refuses_a_patch_size_or_scale_it_was_not_trained_for(fake_inpainter):
    ex = get_explainer("inpaint-occlusion")
    with pytest.raises(ModelError, match="trained on 32 px patches"):
        ex.explain(RegionMean(), torch.randn(1, 3, 48, 48), 1, inpainter="fake")
    with pytest.raises(ModelError, match="at 1 µm/px but the model uses 32 px at 0.5 µm/px"):
        ex.explain(RegionMean(), torch.randn(1, 3, 32, 32), 1, inpainter="fake", model_mpp="0.5")


def test_bundled_inpainter_occludes_healthy_tissue_in_domain():
    """Demo model, held-out healthy patches: filling a window with healthy tissue barely moves
    the tumour logit, while the classic grey square (out of domain) moves it ten times more."""
    from napari_xhisto.counterfactual.inpaint_train import healthy_patches
    from napari_xhisto.explain.tiling import explain_patches
    from napari_xhisto.models import load_model

    torch.set_num_threads(2)
    model = load_model("demo", device="cpu")
    pats = healthy_patches(1, patch_px=64, field_px=256, seed=31_000, stride=64)[:3]
    assert len(pats) == 3 and model.predict_proba(pats)[:, 1].max() < 0.1
    maps = explain_patches(model, pats, "inpaint-occlusion", window=16, stride=8)
    grey = explain_patches(model, pats, "occlusion", window=16, stride=8)
    assert maps.shape == (3, 64, 64) and np.isfinite(maps).all()
    assert np.abs(maps).mean() < 0.25 * np.abs(grey).mean()


class ArraySlide:
    """In-memory slide: ``read_scaled`` crops (white outside) and area-averages by integer steps."""

    def __init__(self, rgb, mpp):
        self.rgb, self.mpp, self.path = rgb, mpp, "memory"
        self.dimensions = rgb.shape[:2]

    def read_scaled(self, region, out_h, out_w):
        h, w = self.dimensions
        out = np.full((region.height, region.width, 3), 255, np.uint8)
        r0, c0 = max(region.level0_row, 0), max(region.level0_col, 0)
        r1, c1 = min(region.bottom, h), min(region.right, w)
        if r1 > r0 and c1 > c0:
            out[r0 - region.level0_row:r1 - region.level0_row,
                c0 - region.level0_col:c1 - region.level0_col] = self.rgb[r0:r1, c0:c1]
        k = region.height // out_h
        assert k * out_h == region.height and k * out_w == region.width
        return out.reshape(out_h, k, out_w, k, 3).mean(axis=(1, 3)).round().astype(np.uint8)


def test_what_if_healthy_places_and_scores_what_it_shows():
    """A slide at 0.5 µm/px (two level-0 px per model px): a tumour square is filled."""
    from skimage.transform import resize

    from napari_xhisto.counterfactual import load_inpainter
    from napari_xhisto.counterfactual.whatif import polygon_mask, what_if_healthy
    from napari_xhisto.geometry import Region
    from napari_xhisto.models import load_model
    from napari_xhisto.progress import run_to_end
    from napari_xhisto.synth import generate_tissue
    from napari_xhisto.synth.layout import CODE

    torch.set_num_threads(2)
    t = generate_tissue(192, 192, seed=3, mpp=1.0)
    big = (resize(t.rgb, (384, 384), order=0, preserve_range=True)).astype(np.uint8)
    slide = ArraySlide(big, 0.5)
    model = load_model("demo", device="cpu")
    tum = t.tissue_map == CODE["tumour"]
    # the 40 x 40 model-px square with the most tumour, in level-0 px of the slide
    best = max(((r, c) for r in range(40, 112, 8) for c in range(40, 112, 8)),
               key=lambda rc: tum[rc[0]:rc[0] + 40, rc[1]:rc[1] + 40].mean())
    r, c = 2 * best[0], 2 * best[1]
    poly = np.array([[r, c], [r, c + 80], [r + 80, c + 80], [r + 80, c]], float)
    res = run_to_end(what_if_healthy(slide, poly, model, "demo"))
    assert res.placement.step_row == 2.0 and res.grid_placement.step_row == 128.0
    # the window is the slide as read, the hole is the polygon, outside it nothing changed
    h, w = res.before.shape[:2]
    want = slide.read_scaled(Region(int(res.placement.origin_row), int(res.placement.origin_col),
                                    2 * h, 2 * w), h, w)
    np.testing.assert_array_equal(res.before, want)
    np.testing.assert_array_equal(res.hole, polygon_mask(
        poly, (h, w), origin=(res.placement.origin_row, res.placement.origin_col), step=2.0))
    assert res.hole.sum() == 40 * 40
    np.testing.assert_array_equal(res.after[~res.hole], res.before[~res.hole])
    assert np.any(res.after[res.hole] != res.before[res.hole])
    # the numbers are the model's on the patches as shown
    for p in res.patches:
        reg = Region(int(round(p["level0_row"])), int(round(p["level0_col"])), 128, 128)
        np.testing.assert_allclose(p["p_before"], model.predict_proba(
            slide.read_scaled(reg, 64, 64))[0, 1], rtol=1e-5, atol=1e-6)
        i0 = int(round((p["level0_row"] - res.placement.origin_row) / 2))
        j0 = int(round((p["level0_col"] - res.placement.origin_col) / 2))
        np.testing.assert_allclose(p["p_after"], model.predict_proba(
            res.after[i0:i0 + 64, j0:j0 + 64])[0, 1], rtol=1e-5, atol=1e-6)
        assert res.p_before[p["row"], p["col"]] == p["p_before"]
    # an inpainter of another scale is refused
    inp = load_inpainter("demo")
    other = Inpainter(inp.module, inp.patch_px, 0.5, inp.spec)
    with pytest.raises(ModelError, match="the inpainter was trained on 64 px patches at 0.5"):
        run_to_end(what_if_healthy(slide, poly, model, other))


def test_explain_region_passes_the_models_scale_and_normalisation(fake_inpainter):
    """Through ``explain_region`` (CLI, widget, compare view): the model's µm/px is checked
    against the inpainter's, and its normalisation (not the inpainter's record) is used."""
    from napari_xhisto.explain import explain_region
    from napari_xhisto.geometry import Region
    from napari_xhisto.models import LoadedModel, ModelSpec
    from napari_xhisto.progress import run_to_end

    rng = np.random.default_rng(0)
    slide = ArraySlide(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), 0.5)

    def model(mpp, mean, std):
        spec = ModelSpec("toy", ["normal", "tumour"], patch_size=32, mpp=mpp, mean=mean, std=std)
        return LoadedModel(module=RegionMean().eval(), spec=spec, device=torch.device("cpu"))

    with pytest.raises(ModelError, match="at 1 µm/px but the model uses 32 px at 0.5 µm/px"):
        run_to_end(explain_region(slide, Region(0, 0, 32, 32), model(0.5, (0.5,) * 3, (0.25,) * 3),
                                  "inpaint-occlusion", inpainter="fake", normalize="none"))
    m = model(1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    heat = run_to_end(explain_region(slide, Region(0, 0, 64, 64), m, "inpaint-occlusion",
                                     inpainter="fake", window=8, stride=4, normalize="none"))
    assert heat.provenance["params"]["model_mpp"] == "1.0"
    x = m.preprocess(slide.read_scaled(Region(0, 0, 64, 64), 32, 32))
    want = get_explainer("occlusion").explain(RegionMean(), x, 1, window=8, stride=4,
                                              baseline=0.2)  # 0.2 in this model's units
    np.testing.assert_allclose(heat.values, want[0], rtol=1e-5, atol=1e-6)
