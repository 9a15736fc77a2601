"""CAM, SS-CAM, IS-CAM and EigenCAM against pytorch-grad-cam and slow per-mask references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from napari_xhisto.errors import ModelError
from napari_xhisto.explain import get_explainer

torch.set_num_threads(2)


class TinyGapNet(torch.nn.Module):
    """Conv blocks, global average pooling, one linear layer (CAM's architecture)."""

    def __init__(self, k=6, classes=3):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(8, k, 3, padding=1), torch.nn.ReLU())
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(k, classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return TinyGapNet().double().eval()


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(2)
    return torchvision.models.resnet18(num_classes=3).double().eval()


TARGET = torch.tensor([1, 2])


def ours(name, model, x, target=TARGET, **params):
    return get_explainer(name).attribute(model, x, target, **params).numpy()


def minmax(m):
    m = np.asarray(m, np.float64)
    lo, hi = m.min(axis=(-2, -1), keepdims=True), m.max(axis=(-2, -1), keepdims=True)
    return (m - lo) / (hi - lo)


def upsample(maps, size):
    return torch.nn.functional.interpolate(maps[:, None], size=size, mode="bilinear",
                                           align_corners=False)[:, 0]


def features_of(model, x):
    return model.features(x).detach()


def slow_masks(act_i, size):
    """Each channel alone: upsampled (align_corners=True, as pytorch-grad-cam), min-max scaled."""
    out = []
    for a in act_i:
        m = torch.nn.functional.interpolate(a[None, None], size=size, mode="bilinear",
                                            align_corners=True)[0, 0]
        out.append((m - m.min()) / (m.max() - m.min() + 1e-8))
    return out


def test_cam_is_the_classifier_weighted_sum_and_gradcam_times_area(tiny, x):
    act = features_of(tiny, x)  # (2, 6, 8, 8)
    w = tiny.fc.weight.detach()
    ref = torch.stack([sum(w[int(t), k] * act[i, k] for k in range(act.shape[1]))
                       for i, t in enumerate(TARGET)]).clamp(min=0)
    got = ours("cam", tiny, x, target_layer="features.4")
    np.testing.assert_allclose(got, upsample(ref, (16, 16)).numpy(), rtol=1e-12, atol=1e-14)
    # with GAP + linear, Grad-CAM's weights are w / (h w): CAM = h w x Grad-CAM
    grad = ours("gradcam", tiny, x, target_layer="features.4")
    np.testing.assert_allclose(got, 64 * grad, rtol=1e-9, atol=1e-12)


def test_cam_works_on_resnet_and_refuses_other_heads(resnet, x):
    got = ours("cam", resnet, x)  # default target layer: the block before avgpool + fc
    assert got.shape == (2, 16, 16) and got.max() > 0
    torch.manual_seed(3)
    flat_head = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                    torch.nn.Flatten(), torch.nn.Linear(4 * 16 * 16, 3)).double()
    with pytest.raises(ModelError, match="linear"):
        ours("cam", flat_head, x, target_layer="1")
    mlp_head = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                   torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                   torch.nn.Linear(4, 4), torch.nn.ReLU(),
                                   torch.nn.Linear(4, 3)).double()
    with pytest.raises(ModelError, match="global average"):
        ours("cam", mlp_head, x, target_layer="1")
    with pytest.raises(ModelError, match="global average"):
        ours("cam", resnet, x, target_layer="layer3")  # not the layer feeding the pooling


@pytest.mark.parametrize("name, params", [("iscam", {"n_samples": 1}),
                                          ("sscam", {"n_samples": 2, "sigma": 0.0})])
def test_degenerate_iscam_sscam_equal_pytorch_grad_cam_scorecam(name, params, tiny, x):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = pytorch_grad_cam.ScoreCAM(model=tiny, target_layers=[tiny.features[4]])
    cam.batch_size = 64
    want = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in TARGET])
    got = ours(name, tiny, x, target_layer="features.4", **params)
    np.testing.assert_allclose(minmax(got), want, atol=1e-5)


def slow_iscam(model, x, target, n):
    act = features_of(model, x)
    out = []
    for i in range(x.shape[0]):
        scores = []
        for mask in slow_masks(act[i], x.shape[-2:]):
            s = 0.0
            for step in range(1, n + 1):
                with torch.no_grad():
                    s += float(model(x[i:i + 1] * mask * (step / n))[0, int(target[i])])
            scores.append(s / n)
        w = torch.softmax(torch.tensor(scores, dtype=x.dtype), 0)
        out.append(sum(w[k] * act[i, k] for k in range(act.shape[1])))
    return upsample(torch.stack(out).clamp(min=0), x.shape[-2:]).numpy()


def slow_sscam(model, x, target, n, sigma, seed):
    act = features_of(model, x)
    gen = torch.Generator().manual_seed(seed)
    masks = torch.stack([torch.stack(slow_masks(act[i], x.shape[-2:])) for i in range(x.shape[0])])
    noises = [torch.randn(masks.shape, generator=gen, dtype=x.dtype) for _ in range(n)]
    out = []
    for i in range(x.shape[0]):
        scores = []
        for k in range(masks.shape[1]):
            s = 0.0
            for noise in noises:
                with torch.no_grad():
                    s += float(model(x[i:i + 1] * (masks[i, k] + sigma * noise[i, k]))
                               [0, int(target[i])])
            scores.append(s / n)
        w = torch.softmax(torch.tensor(scores, dtype=x.dtype), 0)
        out.append(sum(w[k] * act[i, k] for k in range(act.shape[1])))
    return upsample(torch.stack(out).clamp(min=0), x.shape[-2:]).numpy()


def test_iscam_equals_slow_per_mask_reference(tiny, x):
    got = ours("iscam", tiny, x, target_layer="features.4", n_samples=4, forward_batch=4)
    np.testing.assert_allclose(got, slow_iscam(tiny, x, TARGET, 4), rtol=1e-10, atol=1e-12)


def test_sscam_equals_slow_per_mask_reference_and_is_seeded(tiny, x):
    got = ours("sscam", tiny, x, target_layer="features.4", n_samples=3, sigma=0.5, seed=7,
               forward_batch=5)
    ref = slow_sscam(tiny, x, TARGET, 3, 0.5, 7)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
    other = ours("sscam", tiny, x, target_layer="features.4", n_samples=3, sigma=0.5, seed=8)
    assert not np.allclose(got, other)


def test_eigencam_equals_pytorch_grad_cam_up_to_the_component_sign(resnet, x):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    act = resnet.layer3(resnet.layer2(resnet.layer1(resnet.maxpool(resnet.relu(resnet.bn1(
        resnet.conv1(x))))))).detach()
    proj = get_2d_projection(act.numpy())  # float32 projection, arbitrary sign
    mean_act = act.mean(1).numpy()
    sign = np.sign((proj * mean_act).sum(axis=(1, 2)))[:, None, None]
    want_low = np.maximum(sign * proj, 0)  # our sign convention applied to the reference
    got = ours("eigencam", resnet, x, target_layer="layer3")
    np.testing.assert_allclose(got, upsample(torch.tensor(want_low, dtype=torch.float64),
                                             (16, 16)).numpy(), rtol=1e-4, atol=1e-4)
    # where the reference's own sign agrees with ours, its final maps equal ours min-max scaled
    with pytorch_grad_cam.EigenCAM(model=resnet, target_layers=[resnet.layer3]) as cam:
        ref = cam(input_tensor=x, targets=None)
    for i in np.flatnonzero(sign[:, 0, 0] > 0):
        np.testing.assert_allclose(minmax(got[i]), ref[i], atol=2e-4)
    # class-agnostic
    np.testing.assert_allclose(ours("eigencam", resnet, x, target=0, target_layer="layer3"), got)


def test_new_cams_are_listed_with_their_needs():
    from napari_xhisto.explain import list_explainers

    info = {m["name"]: m for m in list_explainers()}
    assert {"cam", "sscam", "iscam", "eigencam"} <= set(info)
    assert "gradients" not in info["cam"]["needs"] and "many-forwards" in info["sscam"]["needs"]
    assert info["sscam"]["params"]["n_samples"].startswith("35")
