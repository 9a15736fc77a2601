"""LRP beyond zennit's canonisers: DenseNet (BatchNorm after concatenation) and
squeeze-excitation gates (MobileNetV3, EfficientNet).

Each rule set is checked against a slow reference that walks the model by hand and applies
every rule as an explicit formula (``lrp_reference.py``), and for conservation: with biases
off, the input relevance sums to the explained logit.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torchvision
from lrp_reference import EPS, STAB, slow_lrp
from torch import nn
from torchvision.models.mobilenetv3 import InvertedResidualConfig, MobileNetV3

from napari_xhisto.explain import get_explainer
from napari_xhisto.explain.lrp import epsilon_composite, lrp_relevance

torch.set_num_threads(2)


# ---------------------------------------------------------------------------------------------
# small models of both families

def randomise(model, seed, *, biases=True):
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.3 if biases else 0)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.3 if biases else 0)
        elif isinstance(m, nn.Conv2d | nn.Linear) and m.bias is not None:
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1 if biases else 0)
    return model.double().eval()


def tiny_densenet(biases=True):
    torch.manual_seed(0)
    net = torchvision.models.DenseNet(growth_rate=4, block_config=(2, 2), num_init_features=8,
                                      bn_size=2, num_classes=3)
    return randomise(net, 1, biases=biases)


def tiny_mobilenet(biases=True):
    torch.manual_seed(2)
    cnf = partial(InvertedResidualConfig, width_mult=1.0)
    setting = [cnf(8, 3, 8, 8, True, "RE", 2, 1),     # SE, no residual (stride 2)
               cnf(8, 3, 16, 8, True, "HS", 1, 1),    # expand, SE, residual
               cnf(8, 5, 24, 12, False, "HS", 2, 1)]  # no SE
    return randomise(MobileNetV3(setting, last_channel=32, num_classes=3), 3, biases=biases)


MODELS = {"densenet": tiny_densenet, "mobilenet": tiny_mobilenet}


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 3, 40, 40, generator=torch.Generator().manual_seed(5),
                       dtype=torch.float64)


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("family", sorted(MODELS))
@pytest.mark.parametrize("method,rule", [("lrp-epsilon-plus", "plus"), ("lrp-epsilon", "eps")])
def test_lrp_equals_the_slow_reference(family, method, rule, x):
    model = MODELS[family]()
    target = torch.tensor([1, 2])
    want = slow_lrp(model, x, target, rule)
    got = get_explainer(method).attribute(model, x, target, epsilon=EPS, stabilizer=STAB)
    assert want.abs().max() > 0
    assert rel_err(got, want) < 1e-9


@pytest.mark.parametrize("family", sorted(MODELS))
def test_lrp_conserves_relevance_with_biases_off(family, x):
    model = MODELS[family](biases=False)
    with torch.no_grad():
        logits = model(x)
    target = logits.argmax(1)
    logit = logits.gather(1, target[:, None])[:, 0]
    rel = lrp_relevance(model, x, target, epsilon_composite(1e-13, 1e-13)).sum((1, 2, 3))
    assert torch.allclose(rel, logit, rtol=1e-6, atol=0)
    if family == "densenet":  # ReLU only: z+ conserves too
        rel = get_explainer("lrp-epsilon-plus").attribute(model, x, target, epsilon=1e-13,
                                                          stabilizer=1e-13).sum((1, 2))
        assert torch.allclose(rel, logit, rtol=1e-6, atol=0)
