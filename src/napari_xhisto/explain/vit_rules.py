"""LRP rules for transformers as backward passes (gradient x input), after lxt's "efficient" AttnLRP.

Each rule is a module or an autograd function whose forward is the layer's own function and
whose backward hands on ``relevance / input`` instead of the gradient, so that gradient x input
at the model's input is the relevance (Achtibat et al. 2024; lxt ``lxt.efficient``):

- :class:`GammaLinear`, :class:`GammaConv2d`: zennit's generalised gamma rule, as lxt's patched
  zennit hooks apply it (output relevance = gradient x output; input relevance divided by the
  input stabilised by 1e-10);
- :class:`IdentityRule`: element-wise activations pass relevance on unchanged;
- :class:`LrpLayerNorm`, :class:`LrpRmsNorm`: the standard deviation is a constant (identity rule
  on the division, epsilon rule on the mean subtraction);
- :func:`divide_gradient`: the uniform rule on a product (relevance split evenly between factors).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def stabilize(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``z + epsilon * sign(z)`` with sign(0) = +1 (zennit's ``stabilize``)."""
    eps = torch.tensor(epsilon, dtype=z.dtype, device=z.device)
    return z + torch.where(z < 0, -eps, eps)


class Rules:
    """Rule settings shared by the modules of one LRP copy (set per call)."""

    def __init__(self):
        self.linear_gamma = 0.0
        self.conv_gamma = 0.0
        self.stabilizer = 1e-6
        self.attention = "attnlrp"


def _gamma_relevance(layer, x, w, b, out, grad, gamma, stabilizer):
    """Input relevance ``R_in / x`` of one layer ``out = op(x, w) + b`` under zennit's
    generalised gamma rule, given the gradient at its output (relevance ``grad * out``).

    Positive outputs take their relevance back through the positive contributions (weights
    ``w + gamma w+`` on positive inputs, ``w + gamma w-`` on negative ones), negative outputs
    through the negative ones. zennit evaluates four modified layers forward and backward; the
    same sums follow from three products, with ``x+ w+ + x- w- = (x w + |x| |w|) / 2``:
    ``op(|x|, |w|)`` for the denominators, ``op_t(s, w)`` and ``op_t(s sign(out), |w|)`` back.
    As lxt's patched zennit hooks, the result is divided by the input stabilised by 1e-10.
    """
    sign = out.sign()
    if gamma == 0.0:
        s = grad * out / stabilize(out, stabilizer) * sign.abs()
        return x * layer.op_t(s, w) / stabilize(x, 1e-10)
    x_abs = x.abs()
    half = out if b is None else out - layer.as_output(b)  # op(x, w)
    half = (half + sign * layer.op(x_abs, w.abs(), None)) / 2  # positive or negative part
    if b is not None:  # b+ for positive outputs, b- for negative ones
        bias = layer.as_output(b)
        half = half + torch.where(out > 0, bias.clamp(min=0), bias.clamp(max=0))
    s_signed = grad * out / stabilize(out + gamma * half, stabilizer) * sign
    sw = layer.op_t(s_signed * sign, w)
    dw = layer.op_t(s_signed, w.abs())
    # x+ (sw + dw) / 2 + x- (sw - dw) / 2 = (x sw + |x| dw) / 2
    rel = torch.add(x * sw, x_abs * dw, alpha=gamma / (2 + gamma)) * (1 + gamma / 2)
    return rel / stabilize(x, 1e-10)


class _GammaFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, layer):
        out = layer.op(x, weight, bias)
        ctx.save_for_backward(x, weight, bias, out)
        ctx.layer = layer
        return out

    @staticmethod
    def backward(ctx, grad):
        x, w, b, out = ctx.saved_tensors
        layer = ctx.layer
        grad_in = _gamma_relevance(layer, x, w, b, out, grad, layer.gamma(),
                                   layer.rules.stabilizer)
        return grad_in, None, None, None


class GammaLinear(nn.Module):
    """``nn.Linear`` whose backward applies the gamma rule (``rules.linear_gamma``)."""

    def __init__(self, linear: nn.Linear, rules: Rules):
        super().__init__()
        self.weight, self.bias, self.rules = linear.weight, linear.bias, rules

    def gamma(self):
        return self.rules.linear_gamma

    @staticmethod
    def op(x, w, b):
        return F.linear(x, w, b)

    @staticmethod
    def op_t(g, w):
        return g @ w

    @staticmethod
    def as_output(b):
        return b

    def forward(self, x):
        return _GammaFn.apply(x, self.weight, self.bias, self)


class GammaConv2d(nn.Module):
    """``nn.Conv2d`` (zero padding) whose backward applies the gamma rule (``rules.conv_gamma``)."""

    def __init__(self, conv: nn.Conv2d, rules: Rules):
        super().__init__()
        self.weight, self.bias, self.rules = conv.weight, conv.bias, rules
        self.kw = {"stride": conv.stride, "padding": conv.padding, "dilation": conv.dilation,
                   "groups": conv.groups}
        self._shape = None

    def gamma(self):
        return self.rules.conv_gamma

    def op(self, x, w, b):
        self._shape = x.shape
        return F.conv2d(x, w, b, **self.kw)

    def op_t(self, g, w):
        return torch.nn.grad.conv2d_input(self._shape, w, g, **self.kw)

    @staticmethod
    def as_output(b):
        return b.view(-1, 1, 1)

    def forward(self, x):
        return _GammaFn.apply(x, self.weight, self.bias, self)


class _IdentityFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, fn):
        out = fn(x)
        ctx.save_for_backward(out / (x + 1e-10))
        return out

    @staticmethod
    def backward(ctx, grad):
        (ratio,) = ctx.saved_tensors
        return grad * ratio, None


def identity_rule(fn, x):
    """``fn(x)`` for an element-wise ``fn`` whose relevance passes on unchanged."""
    return _IdentityFn.apply(x, fn)


class IdentityRule(nn.Module):
    """An element-wise activation module under the identity rule."""

    def __init__(self, act: nn.Module):
        super().__init__()
        if hasattr(act, "inplace"):
            act.inplace = False  # the rule keeps the input
        self.act = act

    def forward(self, x):
        return identity_rule(self.act, x)


class _DivideFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad / ctx.factor, None


def divide_gradient(x, factor: float):
    """``x`` whose backward divides the relevance by ``factor`` (uniform rule on products)."""
    return _DivideFn.apply(x, factor)


class LrpLayerNorm(nn.Module):
    """LayerNorm over the last dimension with the standard deviation detached."""

    def __init__(self, norm: nn.LayerNorm):
        super().__init__()
        if len(norm.normalized_shape) != 1:
            raise ValueError("only LayerNorm over the last dimension is supported")
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
        y = (x - mean) / (var + self.eps).sqrt().detach()
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y


class LrpRmsNorm(nn.Module):
    """RMSNorm over the last dimension with the root mean square detached."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.weight, self.eps = getattr(norm, "weight", None), norm.eps

    def forward(self, x):
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps).detach()
        return y if self.weight is None else y * self.weight
