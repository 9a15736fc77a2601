"""A slow LRP reference for tests: the model walked by hand, every rule an explicit formula.

BatchNorm after a convolution is folded by hand; a BatchNorm after anything else is a
per-channel linear layer (epsilon rule); convolutions' transposes come from ``torch.nn.grad``;
max-pooling routes relevance by index; average pooling and residual sums use the ``Norm`` rule
(relevance in proportion to each input); squeeze-excitation gates are constants. ``rule`` is
``"plus"`` (z+ on convolutions, epsilon on dense layers: zennit's EpsilonPlus) or ``"eps"``
(epsilon everywhere). Also: float64 grouped convolutions through unfold (PyTorch's float64
grouped convolution runs one slow kernel per group: ~10 s per EfficientNet-B0 forward).
"""

from __future__ import annotations

import contextlib

import torch
import torchvision
from torch import nn
from torch.nn import functional as F
from torchvision.models.densenet import _DenseBlock, _DenseLayer
from torchvision.models.efficientnet import MBConv
from torchvision.models.mobilenetv3 import InvertedResidual
from torchvision.ops.misc import SqueezeExcitation

EPS, STAB = 0.05, 1e-6
ACTIVATIONS = (nn.ReLU, nn.Hardswish, nn.SiLU, nn.Hardsigmoid, nn.Sigmoid, nn.Dropout,
               nn.Identity)


def grouped_conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """``F.conv2d`` for float64 grouped convolutions, through unfold (same numbers)."""
    if x.dtype != torch.float64 or groups == 1:
        return F.conv2d(x, w, b, stride, padding, dilation, groups)
    n, c, h, wd = x.shape
    kh, kw = w.shape[-2:]
    pair = nn.modules.utils._pair
    stride, padding, dilation = pair(stride), pair(padding), pair(dilation)
    cols = F.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride)
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    cols = cols.view(n, groups, (c // groups) * kh * kw, oh * ow)
    out = torch.einsum("ngkl,gok->ngol", cols, w.reshape(groups, w.shape[0] // groups, -1))
    out = out.reshape(n, w.shape[0], oh, ow)
    return out if b is None else out + b.view(1, -1, 1, 1)


@contextlib.contextmanager
def fast_float64_grouped_convs():
    """Within the block, ``nn.Conv2d`` runs float64 grouped convolutions through unfold."""
    orig = nn.Conv2d._conv_forward

    def forward(self, input, weight, bias):
        if input.dtype != torch.float64 or self.groups == 1 or self.padding_mode != "zeros" \
                or isinstance(self.padding, str):
            return orig(self, input, weight, bias)
        return grouped_conv2d(input, weight, bias, self.stride, self.padding, self.dilation,
                              self.groups)

    nn.Conv2d._conv_forward = forward
    try:
        yield
    finally:
        nn.Conv2d._conv_forward = orig


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
        if conv.groups > 1 and x.dtype == torch.float64:  # the transpose of the same map
            with torch.enable_grad():
                xi = torch.zeros_like(x, requires_grad=True)
                (g,) = torch.autograd.grad(grouped_conv2d(xi, weight, None, **kw), xi, s)
            return g
        return torch.nn.grad.conv2d_input(x.shape, weight, s, **kw)

    if rule == "eps":
        z = grouped_conv2d(x, w, b, **kw)
        return x * back(w, r / stab(z, EPS))
    wp, wn = w.clamp(min=0), w.clamp(max=0)
    xp, xn = x.clamp(min=0), x.clamp(max=0)
    z = grouped_conv2d(xp, wp, None if b is None else b.clamp(min=0), **kw) + \
        grouped_conv2d(xn, wn, **kw)
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
    if isinstance(module, InvertedResidual | MBConv):  # stochastic depth: identity in eval
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
        c1 = grouped_conv2d(r1, w, b)
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
    """Input relevance summed over channels ``(N, H, W)`` of each sample's target logit."""
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
