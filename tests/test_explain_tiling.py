"""Region explanation: patch placement, seamless stitching, normalisation modes, cancel, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_xhisto.explain import explain_patches, explain_region
from napari_xhisto.geometry import Region
from napari_xhisto.models import LoadedModel, ModelSpec
from napari_xhisto.progress import run_to_end

torch.set_num_threads(2)


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


class HalfSquare(torch.nn.Module):
    """Logit 1 = sum(x^2)/2, so its input gradient is x itself (saliency = channel sum of x)."""

    def forward(self, x):
        s = (x**2).sum(dim=(1, 2, 3)) / 2
        return torch.stack([-s, s], dim=1)


class MeanLogit(torch.nn.Module):
    """Logit 1 = mean(x): constant saliency everywhere."""

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([-m, m], dim=1)


def loaded(module, *, patch=32, mpp=0.5):
    spec = ModelSpec("test", ["normal", "tumour"], patch_size=patch, mpp=mpp,
                     mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    return LoadedModel(module=module.eval(), spec=spec, device=torch.device("cpu"))


@pytest.fixture(scope="module")
def slide():
    rng = np.random.default_rng(0)
    return ArraySlide(rng.integers(0, 256, (300, 260, 3), dtype=np.uint8), mpp=0.5)


def test_stitched_map_equals_the_image_under_it(slide):
    region = Region(17, 23, 150, 130)
    heat = run_to_end(explain_region(slide, region, loaded(HalfSquare()), "saliency", target=1,
                                     overlap=0.25, normalize="none", batch_size=5))
    want = slide.rgb[17:167, 23:153].astype(np.float64).sum(-1) / 255
    assert heat.values.shape == (150, 130)
    np.testing.assert_allclose(heat.values, want, rtol=1e-5, atol=1e-5)
    assert heat.placement.to_dict() == {"origin_row": 17.0, "origin_col": 23.0, "step_row": 1.0,
                                        "step_col": 1.0}
    assert heat.provenance["normalize"] == "none" and heat.provenance["target_class"] == "tumour"


def test_constant_relevance_stitches_without_seams(slide):
    heat = run_to_end(explain_region(slide, Region(0, 0, 200, 180), loaded(MeanLogit()), "saliency",
                                     target="tumour", overlap=0.3))
    assert heat.provenance["n_patches"] > 20
    np.testing.assert_allclose(heat.values, 1.0, rtol=1e-6)  # global max of a constant map


def test_heatmap_at_model_resolution_is_placed_with_a_step(slide):
    model = loaded(HalfSquare(), patch=16, mpp=1.0)  # slide 0.5 µm/px -> step 2
    heat = run_to_end(explain_region(slide, Region(10, 20, 101, 64), model, "saliency", target=1,
                                     normalize="none"))
    assert heat.placement.step_row == 2.0 and heat.values.shape == (51, 32)
    want = slide.read_scaled(Region(10, 20, 102, 64), 51, 32).astype(np.float64).sum(-1) / 255
    np.testing.assert_allclose(heat.values, want, rtol=1e-5, atol=1e-5)
    assert heat.provenance["heatmap_mpp"] == 1.0


def test_normalisation_modes(slide):
    region = Region(0, 0, 96, 96)
    model = loaded(HalfSquare())
    raw = run_to_end(explain_region(slide, region, model, "saliency", target=0, normalize="none"))
    glob = run_to_end(explain_region(slide, region, model, "saliency", target=0))
    assert raw.values.min() < 0
    np.testing.assert_allclose(glob.values, raw.values / np.abs(raw.values).max(), rtol=1e-5)
    assert glob.provenance["normalization_scale"] == pytest.approx(np.abs(raw.values).max(), rel=1e-5)
    pct = run_to_end(explain_region(slide, region, model, "saliency", target=0,
                                    normalize="percentile", percentile=90))
    p90 = np.percentile(np.abs(raw.values), 90)
    np.testing.assert_allclose(pct.values, np.clip(raw.values, -p90, p90) / p90, rtol=1e-4, atol=1e-6)
    per = run_to_end(explain_region(slide, region, model, "saliency", target=0, normalize="per-patch",
                                    overlap=0.0))
    for r in range(0, 96, 32):  # no overlap: every 32 px patch has its own max |R| = 1
        for c in range(0, 96, 32):
            assert np.abs(per.values[r:r + 32, c:c + 32]).max() == pytest.approx(1.0, rel=1e-6)
    with pytest.raises(ValueError, match="normalize"):
        next(explain_region(slide, region, model, "saliency", normalize="max"))


def test_cancel_leaves_no_hooks_behind(slide):
    model = loaded(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                                       torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                       torch.nn.Linear(4, 2)))
    gen = explain_region(slide, Region(0, 0, 200, 200), model, "gradcam", batch_size=2)
    next(gen), next(gen)
    gen.close()
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.module.modules())


def test_explain_patches_matches_the_explainer(slide):
    from napari_xhisto.explain import get_explainer

    model = loaded(HalfSquare())
    imgs = slide.rgb[:64, :64].reshape(2, 32, 64, 3)[:, :, :32]
    got = explain_patches(model, imgs, "saliency", "tumour", batch_size=1)
    want = get_explainer("saliency").explain(model.module, model.preprocess(imgs), 1)
    np.testing.assert_allclose(got, want)


def test_cli_methods_and_explain_write_a_heatmap(tmp_path, capsys):
    from napari_xhisto.cli import main
    from napari_xhisto.export.heatmap_io import read_heatmap
    from napari_xhisto.models import build_architecture, save_model
    from napari_xhisto.synth.writer import write_slide

    assert main(["methods"]) == 0
    table = capsys.readouterr().out
    assert "lrp-epsilon-plus" in table and "scorecam" in table and "many-forwards" in table

    slide_path, _ = write_slide(tmp_path / "s.svs", size=512, seed=1, mpp=0.5, ground_truth=False)
    torch.manual_seed(0)
    net = build_architecture("xhisto_cnn_xs", 2).eval()
    spec = ModelSpec("xhisto_cnn_xs", ["normal", "tumour"], patch_size=32, mpp=1.0)
    spec_path = save_model(net, spec, tmp_path / "m.json")
    out = tmp_path / "heat.ome.tif"
    code = main(["explain", str(slide_path), "--model", str(spec_path), "--method", "saliency",
                 "--region", "64,32,128,96", "--out", str(out), "--target", "tumour"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    back = read_heatmap(out)
    assert back.values.shape == (64, 48) == tuple(summary["shape"])
    assert back.placement.step_row == 2.0 and back.placement.origin_row == 64.0
    assert back.provenance["method"] == "saliency" and back.provenance["normalize"] == "global-max"
    assert 0.5 < np.nanmax(np.abs(back.values)) <= 1.0  # blending can lower the peak patch value
    assert main(["explain", str(slide_path), "--model", str(spec_path), "--method", "saliency",
                 "--region", "0,0,64,64", "--out", str(out) + ".2", "--param", "abs=maybe=1",
                 "--param", "stepz=3"]) == 1
    assert "stepz" in capsys.readouterr().err
