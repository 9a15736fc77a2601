"""Counterfactual masks (iterative) and the single-pass attribution network (seed 001), toy sizes.

A stand-in inpainter fills holes with the local mean of the valid pixels around them (it honours
the inpainter contract ``forward(rgb, keep)``, differentiable in ``keep``); the toy classifier
responds to a bright square only, so the right counterfactual mask is known: the square.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from napari_xhisto.counterfactual.attribution_net import (
    THRESHOLD,
    activation_taps,
    build_attribution_net,
    load_attribution_net,
)
from napari_xhisto.counterfactual.attribution_train import (
    TrainConfig,
    save_attribution_net,
    train_attribution_net,
)
from napari_xhisto.counterfactual.mask_opt import (
    Objective,
    compact,
    log_barrier,
    optimise_masks,
    use_inpainter,
)
from napari_xhisto.errors import ModelError
from napari_xhisto.explain import explain_patches, get_explainer, list_explainers
from napari_xhisto.models import SmallCNN
from napari_xhisto.models.loading import LoadedModel
from napari_xhisto.models.spec import ModelSpec
from napari_xhisto.progress import run_to_end


class LocalMeanInpainter(nn.Module):
    """Holes become the Gaussian-weighted mean of the valid pixels near them (global mean far)."""

    def __init__(self, sigma: float = 4.0):
        super().__init__()
        r = int(3 * sigma)
        ax = torch.arange(-r, r + 1.0)
        k = torch.exp(-(ax[:, None] ** 2 + ax[None] ** 2) / (2 * sigma ** 2))
        self.register_buffer("k", (k / k.sum())[None, None])

    def forward(self, x, keep):
        r = self.k.shape[-1] // 2

        def blur(t):
            return F.conv2d(F.pad(t, (r,) * 4, mode="replicate"),
                            self.k.expand(t.shape[1], 1, -1, -1), groups=t.shape[1])

        g = (x * keep).sum((2, 3), keepdim=True) / keep.sum((2, 3), keepdim=True).clamp_min(1e-6)
        fill = (blur(x * keep) + 1e-3 * g) / (blur(keep) + 1e-3)
        return x * keep + fill * (1 - keep)


class BrightSquare(nn.Module):
    """Logit of class 1 rises with the brightest 5 x 5 neighbourhood (a bright square)."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(6.0))

    def forward(self, x):
        local = F.avg_pool2d(x.mean(1, keepdim=True), 5, 1, 2).flatten(1)
        s = torch.logsumexp(8 * local, 1) / 8
        return torch.stack([torch.zeros_like(s), self.gain * (s - 1.6)], 1)


MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def square_patches(n=2, size=40, side=10, seed=0):
    rng = np.random.default_rng(seed)
    rgb = 0.3 + 0.05 * rng.standard_normal((n, 3, size, size))
    truth = np.zeros((n, size, size), bool)
    for i in range(n):
        r, c = rng.integers(4, size - side - 4, 2)
        rgb[i, :, r:r + side, c:c + side] = 0.9
        truth[i, r:r + side, c:c + side] = True
    rgb = torch.tensor(rgb.clip(0, 1), dtype=torch.float32)
    return (rgb - 0.5) / 0.25, truth


def test_optimised_mask_flips_the_class_and_covers_the_square_compactly():
    torch.manual_seed(0)
    x, truth = square_patches()
    clf = BrightSquare().eval()
    obj = Objective(area_weight=1.0, tv_weight=1.0, barrier_t=5.0)  # a tight toy answer
    res = optimise_masks(clf, LocalMeanInpainter(), x, 1, mean=MEAN, std=STD, steps=60, grid=8,
                         objective=obj)
    assert (res.p_before > 0.9).all()
    assert (res.p_after <= 0.5).all() and res.reached.all()
    assert np.allclose(res.drop, res.p_before - res.p_after)
    for m, t in zip(res.mask, truth):
        assert (m & t).sum() >= 0.75 * t.sum()          # the square is (mostly) covered
        assert (m & t).sum() >= 0.6 * m.sum()           # the mask lies on it (measured 0.73)
        assert m.sum() <= 1.5 * t.sum()                 # ... and is small
        assert ndimage.label(m)[1] == 1                 # in one piece
    assert clf.gain.requires_grad and float(clf.gain.detach()) == 6.0  # the classifier is left as it was
    # deterministic by seed
    again = optimise_masks(clf, LocalMeanInpainter(), x, 1, mean=MEAN, std=STD, steps=60, grid=8,
                           objective=obj)
    assert np.array_equal(again.mask, res.mask)


def test_compact_mapping_and_log_barrier():
    m = torch.zeros(1, 1, 21, 21)
    m[0, 0, 10, 10] = 1.0
    out = compact(m, sigma_px=2.0, beta=30.0)[0, 0]
    assert float(out[10, 10]) == pytest.approx(1.0, abs=1e-4)   # a peak stays a peak
    assert 0.0 < float(out[10, 12]) < float(out[10, 11]) < 1.0   # and spreads as a blob
    assert float(out.min()) >= 0.0
    z = torch.tensor([-0.5, -0.1, 0.0, 0.2])
    b = log_barrier(z, 5.0)
    assert torch.all(b[1:] > b[:-1])                              # rises towards the limit
    t = 5.0
    edge = torch.tensor([-1.0 / t ** 2 - 1e-6, -1.0 / t ** 2 + 1e-6])
    assert abs(float(log_barrier(edge, t)[0] - log_barrier(edge, t)[1])) < 1e-3  # continuous


def small_cnn():
    torch.manual_seed(1)
    return SmallCNN(2, channels=(4, 8, 8, 16), convs_per_stage=(1, 1, 1, 1)).eval()


def loaded(module, size=32):
    spec = ModelSpec("xhisto_cnn_s", ["non-tumour", "tumour"], patch_size=size, mpp=1.0,
                     mean=MEAN, std=STD)
    return LoadedModel(module=module, spec=spec, device=torch.device("cpu"))


def test_taps_are_the_activations_of_the_last_four_scales():
    # the demo architecture: 7 conv-BN-ReLU in 4 stages (64, 32, 16, 8 px at 64 px input)
    assert activation_taps(SmallCNN(2).eval(), 64) == ["features.2", "features.9", "features.16",
                                                       "features.23"]
    with pytest.raises(ModelError, match="resolution scale"):
        activation_taps(SmallCNN(2, channels=(4, 8), convs_per_stage=(1, 1)).eval(), 32)


def toy_images(n=8, size=32, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(60, 200, (n, size, size, 3)).astype(np.uint8)
    img[: n // 2, 8:20, 8:20] = 240
    return img


def test_attribution_net_forward_is_a_ratio_and_training_leaves_the_classifier_alone(tmp_path):
    clf = small_cnn()
    model = loaded(clf)
    before = {k: v.clone() for k, v in clf.state_dict().items()}
    net = build_attribution_net(clf, 32)
    x = model.preprocess(toy_images())
    with torch.no_grad():
        a, c = net(x), net.channels(x).abs()
    assert a.shape == (8, 32, 32) and float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.allclose(a, c[:, 0] / (c[:, 0] + c[:, 1] + 1e-6))
    assert set(net.state_dict()) == {f"decoder.{k}" for k in net.decoder.state_dict()}
    cfg = TrainConfig(steps=3, batch_size=4, seed=0, warm_steps=1, n_donors=2)  # 1 paste step
    trained, history = run_to_end(train_attribution_net(model, LocalMeanInpainter(), cfg,
                                                        images=toy_images()))
    after = clf.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)            # encoder frozen
    assert all(p.requires_grad for p in clf.parameters())                    # and given back
    assert trained.taps == net.taps and "loss" in history[0]
    assert [h["phase"] for h in history[:-1]] == ["paste", "inpaint"]  # steps 0 and 2 logged
    # the files record both networks and load back onto the same classifier only
    spec_path = save_attribution_net(trained, tmp_path / "net", model=model,
                                     inpainter_info={"name": "local-mean"}, config=cfg,
                                     history=history, target=1)
    again = load_attribution_net(spec_path, clf)
    assert torch.allclose(again(x), trained(x))
    assert again.spec["inpainter"]["name"] == "local-mean"
    assert again.spec["weights_sha256"] and again.spec["classifier"]["fingerprint"]
    with pytest.raises(ModelError, match="exists"):
        save_attribution_net(trained, tmp_path / "net", model=model, inpainter_info={},
                             config=cfg, history=history, target=1)
    other = small_cnn()
    with torch.no_grad():
        other.classifier.weight.add_(1.0)
    with pytest.raises(ModelError, match="train-attribution-net"):
        load_attribution_net(spec_path, other)


def test_training_step_changes_only_the_decoder():
    clf = small_cnn()
    model = loaded(clf)
    torch.manual_seed(0)
    ref = build_attribution_net(clf, 32)  # what train_attribution_net builds with seed 0
    cfg = TrainConfig(steps=2, batch_size=4, seed=0, warm_steps=0)
    torch.manual_seed(0)
    trained, _ = run_to_end(train_attribution_net(model, LocalMeanInpainter(), cfg,
                                                  images=toy_images()))
    changed = [k for k, v in trained.decoder.state_dict().items()
               if not torch.equal(v, ref.decoder.state_dict()[k])]
    assert changed


def test_both_explainers_are_registered_and_run_through_explain_patches(tmp_path):
    names = {m["name"]: m for m in list_explainers()}
    for name in ("counterfactual-mask", "attribution-net"):
        assert not names[name]["signed"] and names[name]["requires"]
    clf = BrightSquare().eval()
    model = loaded(clf, 40)
    x, truth = square_patches()
    images = ((x * 0.25 + 0.5).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    use_inpainter("test-local-mean", LocalMeanInpainter())
    drop = explain_patches(model, images, "counterfactual-mask", target=1,
                           inpainter="test-local-mean", steps=60)
    mask = explain_patches(model, images, "counterfactual-mask", target=1,
                           inpainter="test-local-mean", steps=60, output="mask")
    assert drop.shape == (2, 40, 40) and drop.dtype == np.float32
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert np.all((drop > 0) == (mask > 0)) and drop.max() > 0.4    # mask x probability drop
    ex = get_explainer("counterfactual-mask")
    ex.explain(model.module, model.preprocess(images), 1, inpainter="test-local-mean", steps=5)
    assert ex.last_result.p_before.shape == (2,)
    # attribution-net: a network trained (briefly) for this classifier, loaded from its file
    cnn = small_cnn()
    cnn_model = loaded(cnn)
    cfg = TrainConfig(steps=2, batch_size=4, warm_steps=0)
    net, hist = run_to_end(train_attribution_net(cnn_model, LocalMeanInpainter(), cfg,
                                                 images=toy_images()))
    spec = save_attribution_net(net, tmp_path / "a", model=cnn_model, inpainter_info={},
                                config=cfg, history=hist, target=1)
    imgs = toy_images(4)
    a = explain_patches(cnn_model, imgs, "attribution-net", network=str(spec))
    m = explain_patches(cnn_model, imgs, "attribution-net", network=str(spec), output="mask")
    assert a.shape == (4, 32, 32) and a.min() >= 0 and a.max() <= 1
    assert np.array_equal(m, (a > THRESHOLD).astype(np.float32))
    with pytest.raises(ModelError, match="explains class"):
        explain_patches(cnn_model, imgs, "attribution-net", target=0, network=str(spec))
    with pytest.raises(ModelError, match="not on this one"):  # another classifier's weights
        explain_patches(loaded(_shifted(small_cnn())), imgs, "attribution-net", network=str(spec))


def _shifted(module):
    with torch.no_grad():
        module.classifier.bias.add_(0.5)
    return module


def test_objective_defaults_are_recorded():
    obj = Objective()
    assert obj.as_dict()["theta"] == 0.5 and obj.as_dict()["delta"] == 0.5
    params = get_explainer("counterfactual-mask").check_params()
    assert params["theta"] == obj.theta and params["delta"] == obj.delta
