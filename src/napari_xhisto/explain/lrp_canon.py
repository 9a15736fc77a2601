"""Canonisation for LRP: a private copy of a model that computes the same function in a form
that LRP rules can be attached to.

What is done to the copy (never to the user's model):

* **BatchNorm folded exactly** into the convolution or linear layer that feeds it (found by
  tracing the data flow with ``torch.fx``): ``w' = w * g / sqrt(var + eps)``,
  ``b' = (b - mean) * g / sqrt(var + eps) + beta``, and the BatchNorm replaced by ``Identity``.
  zennit's merge keeps ``eps`` in the emptied BatchNorm, which then still divides by
  ``sqrt(1 + eps)``; the copy made here computes the model's own logits.
* **BatchNorm that follows no convolution** (DenseNet's norm after a concatenation) stays, as a
  per-channel linear layer; the LRP composites give it the epsilon rule.
* **Residual sums** of torchvision ResNet, MobileNetV2/V3 and EfficientNet blocks become a
  ``zennit.layer.Sum`` module (relevance split in proportion to each branch, zennit's ``Norm``).
* **Squeeze-excitation gates** (MobileNetV3, EfficientNet) are treated as constants: relevance
  passes through ``x * gate`` unchanged and none flows into the gate branch.
* **DenseNet's functional tail** (``relu`` + ``adaptive_avg_pool2d``) becomes modules, so the
  pooling gets the ``Norm`` rule like any other average pooling.
* **GoogLeNet / Inception v3 ``transform_input``** (a per-channel affine map of the input)
  becomes an explicit BatchNorm-like layer in front of the network (epsilon rule).

Anything else that joins two branches by ``+`` or ``*`` is refused with a clear message.
"""

from __future__ import annotations

import copy
import operator
import types

import torch
from torch import nn

from ..errors import ModelError

_BN = nn.modules.batchnorm._BatchNorm


class ConstantGate(nn.Module):
    """``x * gate`` whose relevance passes to ``x`` unchanged (the gate is held constant)."""

    def forward(self, x, gate):
        # detached: the gate branch is no part of the backward graph (its layers' LRP hooks
        # never run), and the product passes relevance to x unchanged
        return _GateFunction.apply(x, gate.detach())


class _GateFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gate):
        return x * gate

    @staticmethod
    def backward(ctx, relevance):
        return relevance, None


class DenseNetTail(nn.Module):
    """torchvision DenseNet with its functional ``relu`` / pooling as modules (same function)."""

    def __init__(self, net):
        super().__init__()
        self.features = net.features
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.classifier = net.classifier

    def forward(self, x):
        return self.classifier(self.flatten(self.pool(self.relu(self.features(x)))))


class InputAffine(nn.Sequential):
    """``model(a * x + b)`` per channel, the affine map as a BatchNorm in front (epsilon rule)."""

    def __init__(self, scale, shift, model):
        bn = nn.BatchNorm2d(len(scale), eps=0.0)
        with torch.no_grad():
            bn.weight.copy_(torch.as_tensor(scale))
            bn.bias.copy_(torch.as_tensor(shift))
        ref = next(model.parameters(), None)
        if ref is not None:
            bn = bn.to(device=ref.device, dtype=ref.dtype)
        super().__init__(bn.eval(), model)
        self.input_scale = tuple(float(v) for v in scale)
        self.input_shift = tuple(float(v) for v in shift)


# torchvision's ImageNet re-normalisation inside GoogLeNet / Inception3 (transform_input=True)
_TRANSFORM_SCALE = (0.229 / 0.5, 0.224 / 0.5, 0.225 / 0.5)
_TRANSFORM_SHIFT = ((0.485 - 0.5) / 0.5, (0.456 - 0.5) / 0.5, (0.406 - 0.5) / 0.5)


# ---------------------------------------------------------------------------------------------
# structural rewrites (on the private copy only)

def _sum_forward_mbconv(self, input):
    result = self.block(input)
    if self.use_res_connect:
        if hasattr(self, "stochastic_depth"):
            result = self.stochastic_depth(result)
        result = self.canonizer_sum(torch.stack([input, result], dim=-1))
    return result


def _sum_forward_v2(self, x):
    out = self.conv(x)
    if self.use_res_connect:
        out = self.canonizer_sum(torch.stack([x, out], dim=-1))
    return out


def _gate_forward(self, input):
    return self.canonizer_gate(input, self._scale(input))


def _rewrite_blocks(twin: nn.Module) -> None:
    from torchvision.models import efficientnet, mobilenetv2, mobilenetv3
    from torchvision.models.resnet import BasicBlock, Bottleneck
    from torchvision.ops.misc import SqueezeExcitation
    from zennit.layer import Sum
    from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer

    for m in list(twin.modules()):
        forward = None
        if type(m) is Bottleneck:
            forward = ResNetBottleneckCanonizer.forward
        elif type(m) is BasicBlock:
            forward = ResNetBasicBlockCanonizer.forward
        elif type(m) in (mobilenetv3.InvertedResidual, efficientnet.MBConv,
                         efficientnet.FusedMBConv):
            forward = _sum_forward_mbconv
        elif type(m) is mobilenetv2.InvertedResidual:
            forward = _sum_forward_v2
        elif type(m) is SqueezeExcitation:
            m.canonizer_gate = ConstantGate()
            m.forward = types.MethodType(_gate_forward, m)
            continue
        if forward is not None:
            m.canonizer_sum = Sum()
            m.forward = types.MethodType(forward, m)


def _rewrite_root(twin: nn.Module) -> nn.Module:
    from torchvision.models import DenseNet, GoogLeNet, Inception3

    if type(twin) is DenseNet:
        twin = DenseNetTail(twin)
    if type(twin) in (GoogLeNet, Inception3) and twin.transform_input:
        twin.transform_input = False
        twin = InputAffine(_TRANSFORM_SCALE, _TRANSFORM_SHIFT, twin)
    return twin


# ---------------------------------------------------------------------------------------------
# exact BatchNorm folding and the join check, on the traced data flow

class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, m, qualname):
        from zennit.layer import Sum

        return isinstance(m, ConstantGate | Sum) or super().is_leaf_module(m, qualname)


def fold_batch_norm(layer: nn.Module, bn: _BN) -> None:
    """Fold ``bn`` into the preceding ``layer`` (Conv or Linear) exactly, eps included."""
    inv_std = 1 / torch.sqrt(bn.running_var + bn.eps)
    scale = bn.weight * inv_std if bn.affine else inv_std
    beta = bn.bias if bn.affine else torch.zeros_like(scale)
    w = layer.weight.data
    bias = layer.bias.data if layer.bias is not None else torch.zeros_like(bn.running_mean)
    layer.weight = nn.Parameter(w * scale.detach().reshape((-1,) + (1,) * (w.ndim - 1)).to(w))
    layer.bias = nn.Parameter(((bias - bn.running_mean) * scale + beta).detach().to(w))


def _foldable_into(layer, bn) -> bool:
    plain = isinstance(layer, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear)
    return plain and layer.weight.shape[0] == bn.num_features


def _set_submodule(root: nn.Module, dotted: str, new: nn.Module) -> None:
    parent, _, name = dotted.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, new)


_JOINS = (operator.add, operator.iadd, operator.mul, operator.imul, torch.add, torch.mul)


def _fold_and_check(twin: nn.Module) -> list[str]:
    """Fold every BatchNorm that directly follows a conv/linear; refuse residual joins.

    Returns the names of BatchNorm layers left in place (they get the epsilon rule).
    """
    norms = [n for n, m in twin.named_modules() if isinstance(m, _BN)]
    name = type(twin).__name__
    try:
        graph = _Tracer().trace(twin)
    except Exception as exc:
        if norms:
            raise ModelError(f"LRP cannot canonise {name}: it is not traceable with torch.fx "
                             f"({type(exc).__name__}) and has BatchNorm layers; use a gradient or "
                             "CAM method") from None
        return []
    mods = dict(twin.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    kept = []
    for node in graph.nodes:
        is_join = (node.op == "call_function" and node.target in _JOINS) or (
            node.op == "call_method" and node.target in ("add", "add_", "mul", "mul_"))
        if is_join and sum(isinstance(a, torch.fx.Node) for a in node.args) >= 2:
            raise ModelError(f"LRP cannot canonise {name}: it joins two branches at "
                             f"'{node.name}' (a residual sum or a gate) that no canonizer "
                             "covers; supported are torchvision VGG, ResNet, DenseNet, "
                             "GoogLeNet/Inception, MobileNet and EfficientNet and plain CNNs. "
                             "Use a gradient or CAM method")
        if node.op != "call_module" or not isinstance(mods[node.target], _BN):
            continue
        if mods[node.target].running_mean is None:
            raise ModelError(f"LRP cannot canonise {name}: BatchNorm '{node.target}' keeps no "
                             "running statistics (it normalises each batch by itself)")
        src = node.args[0]
        layer = mods.get(src.target) if isinstance(src, torch.fx.Node) and \
            src.op == "call_module" else None
        foldable = (layer is not None and _foldable_into(layer, mods[node.target])
                    and len(src.users) == 1 and calls[src.target] == 1
                    and calls[node.target] == 1)
        if foldable:
            fold_batch_norm(layer, mods[node.target])
            _set_submodule(twin, node.target, nn.Identity())
        else:
            kept.append(node.target)
    return kept


def canonised_copy(module: nn.Module) -> nn.Module:
    """A canonised deep copy of ``module`` for LRP (eval mode, parameters without gradients).

    Its logits equal ``module``'s up to rounding; :class:`ModelError` where the model has a
    structure LRP rules cannot be attached to.
    """
    twin = copy.deepcopy(module).eval()
    _rewrite_blocks(twin)
    twin = _rewrite_root(twin)
    twin.lrp_unfolded_batch_norms = _fold_and_check(twin)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


def input_affine(twin: nn.Module):
    """``(scale, shift)`` of an :class:`InputAffine` front of the canonised copy, else None."""
    if isinstance(twin, InputAffine):
        return twin.input_scale, twin.input_shift
    return None
