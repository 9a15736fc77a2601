"""Layer-wise relevance propagation through zennit composites.

The seed-000 rule set (alpha=1, beta=0 on convolutions, epsilon on dense layers) is zennit's
``EpsilonPlus`` and our default, ``lrp-epsilon-plus``. Models are canonised first: BatchNorm
merged into the preceding convolution, residual sums made explicit. zennit's rules modify
parameters while they run, so each thread works on its own private, canonised copy of the
model (cached while the original's parameters stay unchanged), with parameter gradients off.
"""

from __future__ import annotations

import copy
import operator
import threading
import weakref

import torch

from ..errors import ModelError
from .registry import Explainer, Param, register_explainer

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------------------------
# canonisation

def _graph_merge_batch_norm(module):
    """A zennit ``NamedMergeBatchNorm`` for any fx-traceable model, or a clear refusal.

    Every BatchNorm must directly follow a convolution or linear layer whose output feeds
    nothing else, and the graph must not add or multiply two branches (residual connections),
    which plain LRP rules cannot split.
    """
    from zennit.canonizers import NamedMergeBatchNorm

    norms = [n for n, m in module.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    try:
        graph = torch.fx.symbolic_trace(module).graph
    except Exception as exc:
        if norms:
            raise ModelError(f"LRP cannot canonise {type(module).__name__}: it is not traceable "
                             f"({type(exc).__name__}) and has BatchNorm layers; use a gradient or "
                             "CAM method") from None
        return []
    mods = dict(module.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op == "call_module" and isinstance(mods[node.target], torch.nn.modules.batchnorm._BatchNorm):
            src = node.args[0]
            ok = (isinstance(src, torch.fx.Node) and src.op == "call_module"
                  and isinstance(mods[src.target], torch.nn.Conv2d | torch.nn.Linear)
                  and len(src.users) == 1)
            if not ok:
                raise ModelError(f"LRP cannot canonise {type(module).__name__}: BatchNorm "
                                 f"'{node.target}' does not directly follow a convolution; "
                                 "use a gradient or CAM method")
            pairs.append(((src.target,), node.target))
        joins = (operator.add, operator.iadd, operator.mul, torch.add, torch.mul)
        is_join = (node.op == "call_function" and node.target in joins) or (
            node.op == "call_method" and node.target in ("add", "add_", "mul", "mul_"))
        if is_join and sum(isinstance(a, torch.fx.Node) for a in node.args) >= 2:
            raise ModelError(f"LRP cannot canonise {type(module).__name__}: it joins two branches "
                             f"at '{node.name}' (a residual connection) and has no canonizer; "
                             "supported are torchvision ResNet/VGG and plain CNNs. Use a gradient or "
                             "CAM method")
    return [NamedMergeBatchNorm(pairs)] if pairs else []


def canonizers_for(module) -> list:
    """zennit canonizers for ``module``; ``ModelError`` where it cannot be canonised."""
    from .vit import refuse_vit  # m2 (ViT)

    refuse_vit(module, "these LRP rules are for CNNs; for a vision transformer use 'attnlrp' "
               "(AttnLRP, LRP with attention-aware rules)")  # m2 (ViT)
    from torchvision.models.resnet import BasicBlock, Bottleneck
    from torchvision.models.vgg import VGG
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    mods = list(module.modules())
    if any(isinstance(m, BasicBlock | Bottleneck) for m in mods):
        return [ResNetCanonizer()]
    if any(isinstance(m, VGG) for m in mods):
        return [VGGCanonizer()]
    return _graph_merge_batch_norm(module)


_LOCAL = threading.local()


def _fingerprint(module):
    ps = list(module.parameters()) + list(module.buffers())
    return tuple((p.data_ptr(), p._version, p.dtype, str(p.device)) for p in ps)


def private_copy(module) -> torch.nn.Module:
    """This thread's canonised copy of ``module`` (parameters without gradients), cached.

    The copy is rebuilt when the original's parameters or buffers change (training step,
    ``.to()``, ``.double()``, ``load_state_dict``).
    """
    cache = getattr(_LOCAL, "cache", None)
    if cache is None:
        cache = _LOCAL.cache = {}
    for dead in [k for k, v in cache.items() if v[0]() is None]:
        del cache[dead]  # originals that were garbage collected
    key, fp = id(module), _fingerprint(module)
    hit = cache.get(key)
    if hit is not None and hit[0]() is module and hit[1] == fp:
        return hit[2]
    canonizers = canonizers_for(module)  # refuse before copying
    twin = copy.deepcopy(module).eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    for canonizer in canonizers:
        canonizer.apply(twin)  # permanent on the private copy: never reverted
    cache[key] = (weakref.ref(module), fp, twin)
    return twin


def lrp_relevance(module, x, targets, composite) -> torch.Tensor:
    """Relevance ``(N, C, H, W)`` of each sample's target logit under ``composite``.

    The output relevance is the target logit itself (zero for the other classes), so the
    input relevance sums to the logit where the rules conserve it.
    """
    twin = private_copy(module)
    with composite.context(twin), torch.enable_grad():
        xi = x.detach().requires_grad_(True)
        out = twin(xi)
        start = torch.zeros_like(out).scatter_(1, targets[:, None], out.detach().gather(1, targets[:, None]))
        (rel,) = torch.autograd.grad(out, xi, grad_outputs=start)
    return rel


class _Lrp(Explainer):
    signed = True
    needs = frozenset({"module-hooks", "gradients"})
    native_resolution = "pixel"
    params = {"epsilon": Param(1e-6, "float", 0.0, 1e6, help="epsilon of dense layers"),
              "stabilizer": Param(1e-6, "float", 0.0, 1.0, help="denominator stabiliser of other rules")}

    def _composite(self, x, **params):  # pragma: no cover
        raise NotImplementedError

    def _attribute(self, module, x, targets, **params):
        return lrp_relevance(module, x, targets, self._composite(x, **params)).sum(1)


@register_explainer("lrp-epsilon-plus")
class LrpEpsilonPlus(_Lrp):
    description = "LRP, seed-000 rules: alpha=1/beta=0 (z+) on convolutions, epsilon on dense layers"
    cost = 2.5
    params = {"epsilon": Param(1.0, "float", 0.0, 1e6, help="epsilon of dense layers (seed 000: 1)"),
              "stabilizer": _Lrp.params["stabilizer"]}

    def _composite(self, x, *, epsilon, stabilizer):
        from zennit.composites import EpsilonPlus
        return EpsilonPlus(epsilon=epsilon, stabilizer=stabilizer)


@register_explainer("lrp-epsilon-alpha2-beta1")
class LrpEpsilonAlpha2Beta1(_Lrp):
    description = "LRP: alpha=2/beta=1 on convolutions, epsilon on dense layers"
    cost = 4.5

    def _composite(self, x, *, epsilon, stabilizer):
        from zennit.composites import EpsilonAlpha2Beta1
        return EpsilonAlpha2Beta1(epsilon=epsilon, stabilizer=stabilizer)


@register_explainer("lrp-epsilon-plus-flat")
class LrpEpsilonPlusFlat(_Lrp):
    description = "LRP: flat rule on the first layer, z+ on convolutions, epsilon on dense layers"
    cost = 2.5

    def _composite(self, x, *, epsilon, stabilizer):
        from zennit.composites import EpsilonPlusFlat
        return EpsilonPlusFlat(epsilon=epsilon, stabilizer=stabilizer)


@register_explainer("lrp-epsilon-gamma-box")
class LrpEpsilonGammaBox(_Lrp):
    description = "LRP: z-box on the first layer (pixel bounds), gamma on convolutions, epsilon dense"
    cost = 3.0
    params = {**_Lrp.params,
              "gamma": Param(0.25, "float", 0.0, 100.0),
              "mean": Param(_MEAN, "floats", help="normalisation mean (gives the pixel box)"),
              "std": Param(_STD, "floats", 1e-12, None, help="normalisation std")}

    def _composite(self, x, *, epsilon, stabilizer, gamma, mean, std):
        from zennit.composites import EpsilonGammaBox
        low, high = box_bounds(mean, std, x)
        return EpsilonGammaBox(low=low, high=high, epsilon=epsilon, gamma=gamma, stabilizer=stabilizer)


def box_bounds(mean, std, x):
    """Normalised values of pixel 0 and 1 per channel, ``(1, C, 1, 1)`` each."""
    c = x.shape[1]
    mean = torch.tensor(mean * c if len(mean) == 1 else mean, dtype=x.dtype, device=x.device)
    std = torch.tensor(std * c if len(std) == 1 else std, dtype=x.dtype, device=x.device)
    if mean.numel() != c or std.numel() != c:
        raise ValueError(f"mean/std need {c} values (one per channel)")
    return ((0 - mean) / std).view(1, c, 1, 1), ((1 - mean) / std).view(1, c, 1, 1)
