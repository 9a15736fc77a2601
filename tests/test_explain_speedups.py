"""The faster paths give the reference's numbers: Ablation-CAM through the head only (with a
skip connection across the cut, and the whole-network fallback), Score-CAM with dead channels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from test_explain_inplace import ZeroAblation, minmax, rel_err

from napari_xhisto.explain import get_explainer
from napari_xhisto.explain.cam import _head_for, resolve_target_layer

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3)
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model.double().eval()


class Untraceable(torch.nn.Module):
    """Control flow on tensor values: torch.fx cannot split it (whole-network fallback)."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU())
        self.block = torch.nn.Sequential(torch.nn.Conv2d(6, 5, 3, padding=1), torch.nn.ReLU())
        self.head = torch.nn.Linear(5, 3)

    def forward(self, x):
        a = self.block(self.stem(x))
        if a.sum() > 0:
            a = a * 1.0
        return self.head(a.mean((2, 3)))


def pgc_ablation(model, layer, x, target):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = pytorch_grad_cam.AblationCAM(model=model, target_layers=[layer],
                                       ablation_layer=ZeroAblation.make())
    cam.batch_size = 32
    return cam(input_tensor=x, targets=[ClassifierOutputTarget(target)] * x.shape[0])


@pytest.mark.slow
@pytest.mark.parametrize("layer_name,head", [("layer3.0.conv2", True)])
def test_ablation_cam_runs_only_the_head_and_equals_pytorch_grad_cam(resnet, layer_name, head):
    """A layer inside a residual block: the block's shortcut crosses the cut (the layer
    after it, layer2.1 in test_explain_methods, has none)."""
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    layer = resolve_target_layer(resnet, layer_name)
    split = _head_for(resnet, layer, x)
    assert (split is not None) == head
    if layer_name == "layer3.0.conv2":
        assert split.n_frontier == 1  # the block's shortcut crosses the cut
    got = get_explainer("ablationcam").attribute(resnet, x, 1, target_layer=layer_name,
                                                 forward_batch=100).numpy()
    want = pgc_ablation(resnet, layer, x, 1)
    assert np.ptp(want) > 0
    assert rel_err(minmax(got), want) < 1e-5  # pytorch-grad-cam returns float32


def test_ablation_cam_falls_back_to_the_whole_network():
    torch.manual_seed(3)
    model = Untraceable().double().eval()
    x = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    assert _head_for(model, model.block, x) is None
    got = get_explainer("ablationcam").attribute(model, x, 2, target_layer="block").numpy()
    assert rel_err(minmax(got), pgc_ablation(model, model.block, x, 2)) < 1e-5


def test_score_cam_with_dead_channels_equals_pytorch_grad_cam():
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(5)
    model = Untraceable().double().eval()
    with torch.no_grad():  # two filters that never fire: constant (zero) channels
        model.block[0].weight[:2] = 0
        model.block[0].bias[:2] = -1
    x = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    cam = pytorch_grad_cam.ScoreCAM(model=model, target_layers=[model.block])
    want = cam(input_tensor=x, targets=[ClassifierOutputTarget(1)] * 2)
    got = get_explainer("scorecam").attribute(model, x, 1, target_layer="block",
                                              forward_batch=2).numpy()
    assert rel_err(minmax(got), want) < 1e-5  # pytorch-grad-cam returns float32
