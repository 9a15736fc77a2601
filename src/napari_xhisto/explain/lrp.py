"""Layer-wise relevance propagation through zennit composites.

The seed-000 rule set (alpha=1, beta=0 on convolutions, epsilon on dense layers) is zennit's
``EpsilonPlus`` and our default, ``lrp-epsilon-plus``. Models are canonised first
(:mod:`.lrp_canon`: BatchNorm folded exactly, residual sums made explicit, squeeze-excitation
gates held constant); BatchNorm that cannot be folded gets the epsilon rule. zennit's rules modify
parameters while they run, so each thread works on its own private, canonised copy of the
model (cached while the original's parameters stay unchanged), with parameter gradients off.
"""

from __future__ import annotations

import threading
import weakref

import torch

from .lrp_canon import canonised_copy, input_affine
from .registry import Explainer, Param, register_explainer

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


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
    from .vit import refuse_vit

    refuse_vit(module, "these LRP rules are for CNNs; for a vision transformer use 'attnlrp' "
               "(AttnLRP, LRP with attention-aware rules)")
    twin = canonised_copy(module)  # permanent on the private copy: never reverted
    cache[key] = (weakref.ref(module), fp, twin)
    return twin


def lrp_relevance(module, x, targets, composite) -> torch.Tensor:
    """Relevance ``(N, C, H, W)`` of each sample's target logit under ``composite``.

    ``composite`` is a zennit composite, or a function ``twin -> composite`` of the canonised
    copy. The output relevance is the target logit itself (zero for the other classes), so the
    input relevance sums to the logit where the rules conserve it.
    """
    twin = private_copy(module)
    if callable(composite) and not hasattr(composite, "context"):
        composite = composite(twin)
    with composite.context(twin), torch.enable_grad():
        xi = x.detach().requires_grad_(True)
        out = twin(xi)
        start = torch.zeros_like(out).scatter_(1, targets[:, None], out.detach().gather(1, targets[:, None]))
        (rel,) = torch.autograd.grad(out, xi, grad_outputs=start)
    return rel


def _extra_rules(epsilon):
    """Rules ahead of each composite's own: BatchNorm left after canonisation (one that follows
    no convolution, as in DenseNet) is a per-channel linear layer under the epsilon rule."""
    from zennit.rules import Epsilon
    from zennit.types import BatchNorm

    return [(BatchNorm, Epsilon(epsilon=epsilon))]


class _Lrp(Explainer):
    signed = True
    needs = frozenset({"module-hooks", "gradients"})
    native_resolution = "pixel"
    params = {"epsilon": Param(1e-6, "float", 0.0, 1e6, help="epsilon of dense layers"),
              "stabilizer": Param(1e-6, "float", 0.0, 1.0, help="denominator stabiliser of other rules")}
    composite_name = ""

    def _composite(self, twin, x, *, epsilon, stabilizer, **extra):
        from zennit import composites

        if self.composite_name == "Epsilon":
            return epsilon_composite(epsilon, stabilizer)
        cls = getattr(composites, self.composite_name)
        return cls(epsilon=epsilon, stabilizer=stabilizer, layer_map=_extra_rules(epsilon),
                   **extra)

    def _attribute(self, module, x, targets, **params):
        def make(twin):
            return self._composite(twin, x, **params)

        return lrp_relevance(module, x, targets, make).sum(1)


@register_explainer("lrp-epsilon-plus")
class LrpEpsilonPlus(_Lrp):
    description = "LRP, seed-000 rules: alpha=1/beta=0 (z+) on convolutions, epsilon on dense layers"
    cost = 2.5
    params = {"epsilon": Param(1.0, "float", 0.0, 1e6, help="epsilon of dense layers (seed 000: 1)"),
              "stabilizer": _Lrp.params["stabilizer"]}
    composite_name = "EpsilonPlus"


@register_explainer("lrp-epsilon-alpha2-beta1")
class LrpEpsilonAlpha2Beta1(_Lrp):
    description = "LRP: alpha=2/beta=1 on convolutions, epsilon on dense layers"
    cost = 4.5
    composite_name = "EpsilonAlpha2Beta1"


@register_explainer("lrp-epsilon-plus-flat")
class LrpEpsilonPlusFlat(_Lrp):
    description = "LRP: flat rule on the first layer, z+ on convolutions, epsilon on dense layers"
    cost = 2.5
    composite_name = "EpsilonPlusFlat"


@register_explainer("lrp-epsilon")
class LrpEpsilon(_Lrp):
    description = ("LRP: epsilon rule on every layer (conserves relevance with SiLU/Hardswish "
                   "networks, where z+ drops negative pre-activations)")
    cost = 2.5
    composite_name = "Epsilon"


def epsilon_composite(epsilon, stabilizer):
    """zennit composite with the epsilon rule on convolutions and dense layers alike."""
    from zennit.composites import LayerMapComposite, layer_map_base
    from zennit.rules import Epsilon
    from zennit.types import Convolution

    return LayerMapComposite(layer_map=_extra_rules(epsilon) + layer_map_base(stabilizer) + [
        (Convolution, Epsilon(epsilon=epsilon)), (torch.nn.Linear, Epsilon(epsilon=epsilon))])


@register_explainer("lrp-epsilon-gamma-box")
class LrpEpsilonGammaBox(_Lrp):
    description = "LRP: z-box on the first layer (pixel bounds), gamma on convolutions, epsilon dense"
    cost = 3.0
    params = {**_Lrp.params,
              "gamma": Param(0.25, "float", 0.0, 100.0),
              "mean": Param(_MEAN, "floats", help="normalisation mean (gives the pixel box)"),
              "std": Param(_STD, "floats", 1e-12, None, help="normalisation std")}
    composite_name = "EpsilonGammaBox"

    def _composite(self, twin, x, *, epsilon, stabilizer, gamma, mean, std):
        low, high = box_bounds(mean, std, x)
        affine = input_affine(twin)
        if affine is not None:  # the first convolution sees the model's re-normalised input
            a = torch.tensor(affine[0], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            b = torch.tensor(affine[1], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            low, high = a * low + b, a * high + b
        return super()._composite(twin, x, epsilon=epsilon, stabilizer=stabilizer, gamma=gamma,
                                  low=low, high=high)


def box_bounds(mean, std, x):
    """Normalised values of pixel 0 and 1 per channel, ``(1, C, 1, 1)`` each."""
    c = x.shape[1]
    mean = torch.tensor(mean * c if len(mean) == 1 else mean, dtype=x.dtype, device=x.device)
    std = torch.tensor(std * c if len(std) == 1 else std, dtype=x.dtype, device=x.device)
    if mean.numel() != c or std.numel() != c:
        raise ValueError(f"mean/std need {c} values (one per channel)")
    return ((0 - mean) / std).view(1, c, 1, 1), ((1 - mean) / std).view(1, c, 1, 1)
