"""LRP beyond zennit's canonisers: DenseNet (BatchNorm after concatenation) and
squeeze-excitation gates (MobileNetV3, EfficientNet).

Each rule set is checked against a slow reference that walks the model by hand and applies
every rule as an explicit formula (BatchNorm folded by hand, convolutions' transposes through
``torch.nn.grad``, max-pooling routed by index), and for conservation: with biases off, the
input relevance sums to the explained logit.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F
from torchvision.models.densenet import _DenseBlock, _DenseLayer
from torchvision.models.mobilenetv3 import InvertedResidual, InvertedResidualConfig, MobileNetV3
from torchvision.ops.misc import SqueezeExcitation

from napari_xhisto.explain import get_explainer
from napari_xhisto.explain.lrp import epsilon_composite, lrp_relevance

torch.set_num_threads(2)
EPS, STAB = 0.05, 1e-6
ACTIVATIONS = (nn.ReLU, nn.Hardswish, nn.SiLU, nn.Hardsigmoid, nn.Sigmoid, nn.Dropout,
               nn.Identity)


# ---------------------------------------------------------------------------------------------
# the slow reference: explicit rules

def stab(z, e):
    return z + ((z == 0).to(z) + z.sign()) * e


def fold(conv, bn):
    """Convolution weights and bias with the BatchNorm after it folded in, by hand."""
    a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    b = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    return conv.weight * a[:, None, None, None], (b - bn.running_mean) * a + bn.bias


def conv_rule(conv, w, b, x, r, rule):
    kw = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
              groups=conv.groups)

    def back(weight, s):
        return torch.nn.grad.conv2d_input(x.shape, weight, s, **kw)

    if rule == "eps":
        z = F.conv2d(x, w, b, **kw)
        return x * back(w, r / stab(z, EPS))
    wp, wn = w.clamp(min=0), w.clamp(max=0)
    xp, xn = x.clamp(min=0), x.clamp(max=0)
    z = F.conv2d(xp, wp, None if b is None else b.clamp(min=0), **kw) + F.conv2d(xn, wn, **kw)
    s = r / stab(z, STAB)
    return xp * back(wp, s) + xn * back(wn, s)


def linear_rule(lin, x, r):
    z = x @ lin.weight.T + (lin.bias if lin.bias is not None else 0)
    return x * ((r / stab(z, EPS)) @ lin.weight)


def bn_rule(bn, x, r):
    """A BatchNorm that follows no convolution: a per-channel linear layer, epsilon rule."""
    a = (bn.weight / torch.sqrt(bn.running_var + bn.eps))[None, :, None, None]
    z = a * x + (bn.bias - bn.running_mean * a[0, :, 0, 0])[None, :, None, None]
    return x * a * r / stab(z, EPS)


def norm_rule(z, x, r, vjp):
    return x * vjp(r / stab(z, STAB))


def adaptive_pool_rule(x, r):
    z = x.mean((2, 3), keepdim=True)
    return norm_rule(z, x, r.view_as(z), lambda g: g.expand_as(x) / (x.shape[2] * x.shape[3]))


def avg_pool2_rule(x, r):
    z = F.avg_pool2d(x, 2)

    def vjp(g):
        up = g.repeat_interleave(2, 2).repeat_interleave(2, 3) / 4
        return F.pad(up, (0, x.shape[3] - up.shape[3], 0, x.shape[2] - up.shape[2]))

    return norm_rule(z, x, r, vjp)


def max_pool_rule(pool, x, r):
    _, idx = F.max_pool2d(x, pool.kernel_size, pool.stride, pool.padding, return_indices=True)
    out = torch.zeros_like(x).flatten(2)
    out.scatter_add_(2, idx.flatten(2), r.flatten(2))
    return out.view_as(x)


def relevance(module, x, r, rule):
    """Relevance at the input of ``module`` given relevance ``r`` at its output."""
    if isinstance(module, nn.Sequential):
        kids, ins = list(module), []
        for k in kids:
            ins.append(x)
            x = k(x)
        i = len(kids) - 1
        while i >= 0:
            k = kids[i]
            if isinstance(k, nn.BatchNorm2d) and i > 0 and isinstance(kids[i - 1], nn.Conv2d):
                w, b = fold(kids[i - 1], k)
                r = conv_rule(kids[i - 1], w, b, ins[i - 1], r, rule)
                i -= 2
                continue
            r = relevance(k, ins[i], r, rule)
            i -= 1
        return r
    if isinstance(module, nn.Conv2d):
        return conv_rule(module, module.weight, module.bias, x, r, rule)
    if isinstance(module, nn.BatchNorm2d):
        return bn_rule(module, x, r)
    if isinstance(module, nn.Linear):
        return linear_rule(module, x, r)
    if isinstance(module, nn.Flatten):
        return r.view_as(x)
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return adaptive_pool_rule(x, r)
    if isinstance(module, nn.AvgPool2d):
        return avg_pool2_rule(x, r)
    if isinstance(module, nn.MaxPool2d):
        return max_pool_rule(module, x, r)
    if isinstance(module, SqueezeExcitation):
        return r  # the gate is a constant: relevance passes to the gated input unchanged
    if isinstance(module, InvertedResidual):
        if not module.use_res_connect:
            return relevance(module.block, x, r, rule)
        branch = module.block(x)
        s = r / stab(branch + x, STAB)
        return x * s + relevance(module.block, x, branch * s, rule)
    if isinstance(module, _DenseLayer):
        w, b = fold(module.conv1, module.norm2)
        inp = x
        n1 = module.norm1(inp)
        r1 = F.relu(n1)
        c1 = F.conv2d(r1, w, b)
        r2 = F.relu(c1)
        rr = conv_rule(module.conv2, module.conv2.weight, None, r2, r, rule)
        rr = conv_rule(module.conv1, w, b, r1, rr, rule)
        return bn_rule(module.norm1, inp, rr)
    if isinstance(module, _DenseBlock):
        feats = [x]
        for layer in module.values():
            feats.append(layer(torch.cat(feats, 1)))
        sizes = [f.shape[1] for f in feats]
        rs = list(torch.split(r, sizes, 1))
        for j in range(len(feats) - 1, 0, -1):  # the last layer first
            layer = list(module.values())[j - 1]
            rin = relevance(layer, torch.cat(feats[:j], 1), rs[j], rule)
            for k, part in enumerate(torch.split(rin, sizes[:j], 1)):
                rs[k] = rs[k] + part
        return rs[0]
    if isinstance(module, ACTIVATIONS):
        return r
    raise NotImplementedError(type(module).__name__)


def one_hot_logit(logits, target):
    """Relevance at the output: each sample's target logit, zero elsewhere."""
    r = torch.zeros_like(logits)
    rows = torch.arange(len(target))
    r[rows, target] = logits[rows, target]
    return r


def slow_lrp(model, x, target, rule):
    with torch.no_grad():
        if isinstance(model, torchvision.models.DenseNet):
            f = model.features(x)
            a = F.relu(f)
            p = a.mean((2, 3))
            logits = model.classifier(p)
            r = one_hot_logit(logits, target)
            r = linear_rule(model.classifier, p, r)
            r = adaptive_pool_rule(a, r)
            return relevance(model.features, x, r, rule).sum(1)
        f = model.features(x)
        p = model.avgpool(f)
        flat = p.flatten(1)
        logits = model.classifier(flat)
        r = one_hot_logit(logits, target)
        r = relevance(model.classifier, flat, r, rule)
        r = adaptive_pool_rule(f, r.view_as(p))
        return relevance(model.features, x, r, rule).sum(1)


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
