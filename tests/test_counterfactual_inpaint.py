"""Partial convolution, the inpainting U-Net and the bundled inpainter (seed 001, issue #16)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_xhisto.counterfactual import PartialConv2d, PConvUNet, load_inpainter
from napari_xhisto.counterfactual.partial_conv import partial_conv_reference


def _binary_mask(rng, h, w, frac=0.4):
    m = (rng.random((h, w)) > frac).astype(np.float32)
    m[: h // 2 + 3, : w // 2 + 3] = 0  # a large hole: some windows see no valid pixel at all
    return m


@pytest.mark.parametrize("k,stride,pad", [(3, 1, 1), (5, 2, 2), (7, 2, 3)])
def test_partial_conv_equals_slow_reference(k, stride, pad):
    rng = np.random.default_rng(k)
    torch.manual_seed(k)
    conv = PartialConv2d(2, 3, k, stride=stride, padding=pad, bias=True).double()
    with torch.no_grad():
        conv.bias.normal_()
    x = rng.normal(size=(2, 13, 11))
    m = _binary_mask(rng, 13, 11)
    out, new_mask = conv(torch.from_numpy(x)[None], torch.from_numpy(m).double()[None, None])
    ref, ref_mask = partial_conv_reference(x, m, conv.weight.detach().numpy(),
                                           conv.bias.detach().numpy(), stride, pad)
    np.testing.assert_allclose(out[0].detach().numpy(), ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(new_mask[0, 0].numpy(), ref_mask)
    assert 0 < ref_mask.sum() < ref_mask.size  # both cases (renormalised and dead windows) seen


def test_partial_conv_ignores_hole_pixels_exactly():
    rng = np.random.default_rng(1)
    conv = PartialConv2d(3, 4, 5, stride=2, padding=2)
    x = torch.from_numpy(rng.normal(size=(1, 3, 16, 16))).float()
    m = torch.from_numpy(_binary_mask(rng, 16, 16))[None, None]
    y1, m1 = conv(x, m)
    x2 = torch.where(m.bool(), x, torch.from_numpy(rng.normal(size=(1, 3, 16, 16)) * 1e3).float())
    y2, m2 = conv(x2, m)
    assert torch.equal(y1, y2) and torch.equal(m1, m2)
    # and a whole U-Net: the raw prediction does not depend on what the hole held
    net = PConvUNet((8, 16, 16, 16)).eval()
    with torch.no_grad():
        r1 = net.raw(x.sigmoid(), m)
        r2 = net.raw(x2.sigmoid(), m)
    assert torch.equal(r1, r2)


def test_partial_conv_soft_mask_is_differentiable():
    conv = PartialConv2d(3, 2, 3, padding=1)
    x = torch.rand(1, 3, 8, 8)
    m = torch.full((1, 1, 8, 8), 0.3, requires_grad=True)
    y, _ = conv(x, m)
    y.sum().backward()
    assert torch.isfinite(m.grad).all() and m.grad.abs().sum() > 0


def test_unet_keeps_valid_pixels_and_is_differentiable_in_mask():
    torch.manual_seed(0)
    net = PConvUNet((8, 16, 16, 16)).eval()
    x = torch.rand(2, 3, 40, 36)  # not a multiple of 16: padded inside, cropped back
    mask = torch.ones(2, 1, 40, 36)
    mask[:, :, 10:25, 5:20] = 0
    y = net(x, mask)
    assert y.shape == x.shape
    keep = mask.bool().expand_as(x)
    assert torch.equal(y[keep], x[keep])
    soft = mask.clone().requires_grad_(True)
    net(x, soft).sum().backward()
    assert soft.grad.abs().sum() > 0


def test_bundled_inpainter_reproduces_unmasked_pixels_exactly():
    inp = load_inpainter("demo", device="cpu")
    assert (inp.patch_px, inp.mpp) == (64, 1.0)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    hole = np.zeros((3, 64, 64), bool)
    hole[:, 20:40, 10:50] = True
    out = inp.inpaint(rgb, hole)
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    np.testing.assert_array_equal(out[~hole], rgb[~hole])
    assert np.any(out[hole] != rgb[hole])
    prov = inp.provenance()
    assert prov["patch_px"] == 64 and len(prov["weights_sha256"]) == 64


def test_inpainter_refuses_another_scale():
    from napari_xhisto.errors import ModelError

    inp = load_inpainter("demo", device="cpu")
    with pytest.raises(ModelError, match="trained on 64 px patches at 1 µm/px"):
        inp.check_scale(64, 0.5)
    with pytest.raises(ModelError, match="no inpainter at"):
        load_inpainter("/nonexistent/inp.yaml")


def test_bundled_inpainter_fills_healthy_holes_in_domain():
    """p(tumour) of the demo classifier on held-out healthy patches with holes filled stays within
    0.05 of the original on average; a grey filling (out of domain) moves it far more."""
    from napari_xhisto.counterfactual.inpaint_train import healthy_patches, random_holes
    from napari_xhisto.models import load_model

    torch.set_num_threads(2)
    model = load_model("demo", device="cpu")
    inp = load_inpainter("demo", device="cpu")
    pats = healthy_patches(1, patch_px=64, field_px=256, seed=31_000, stride=32)[:48]
    assert len(pats) >= 8
    holes = random_holes(len(pats), 64, np.random.default_rng(7), min_frac=0.2, max_frac=0.5)
    p0 = model.predict_proba(pats)[:, 1]
    p_inp = model.predict_proba(inp.inpaint(pats, holes))[:, 1]
    p_grey = model.predict_proba(np.where(holes[..., None], np.uint8(128), pats))[:, 1]
    assert np.mean(np.abs(p_inp - p0)) < 0.05
    assert np.mean(np.abs(p_grey - p0)) > 3 * np.mean(np.abs(p_inp - p0))
