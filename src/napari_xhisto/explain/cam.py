"""CAM family: Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM, Score-CAM, Ablation-CAM, Smooth Grad-CAM++.

Each method weights the activations ``A`` (N, K, h, w) of one target layer, sums over channels,
rectifies, and upsamples bilinearly to the input size. Maps keep their raw scale (no min-max
normalisation) so that region-level normalisation stays meaningful.
"""

from __future__ import annotations

import torch

from ..errors import ModelError
from .registry import Explainer, Param, register_explainer, target_scores, upsample

_LAYER = Param(None, "str", help="dotted module name, e.g. 'layer4.1'; default: last conv block")


# ---------------------------------------------------------------------------------------------
# target layer

def resolve_target_layer(module, name: str | None = None) -> torch.nn.Module:
    """The layer whose activations a CAM weights: ``name`` if given, else a sensible default.

    The default comes from ``napari_xhisto.models.default_target_layer`` when that knows the
    architecture, else :func:`fallback_target_layer`.
    """
    from .vit import vit_target_layer  # ViT: token layers, read as a patch grid

    layer = vit_target_layer(module, name)
    if layer is not None:
        return layer
    if name:
        try:
            return module.get_submodule(name)
        except AttributeError:
            names = [n for n, m in module.named_modules() if n and _contains_conv(m)][-8:]
            raise ValueError(f"the model has no layer {name!r}; layers with convolutions end "
                             f"with: {', '.join(names)}") from None
    try:
        from ..models import default_target_layer
    except ImportError:
        default_target_layer = None
    if default_target_layer is not None:
        try:
            layer = default_target_layer(module)
        except Exception:  # an architecture the models registry does not know
            layer = None
        if isinstance(layer, str):
            layer = module.get_submodule(layer)
        if isinstance(layer, torch.nn.Module):
            return layer
    return fallback_target_layer(module)


def _contains_conv(m) -> bool:
    return any(isinstance(c, torch.nn.Conv2d) for c in m.modules())


def fallback_target_layer(module) -> torch.nn.Module:
    """The last block that contains convolutions.

    Descend through the last convolution-containing child until that child is a convolution
    itself; the module reached is the block (``resnet.layer4[-1]``, ``vgg.features``). When that
    block is the whole model (a flat ``Sequential``), use the activation right after the last
    convolution instead.
    """
    if not _contains_conv(module):
        raise ModelError("the model has no Conv2d layer, so CAM methods cannot pick a target layer; "
                         "pass target_layer='<dotted name>' or use a gradient method")
    current = module
    while True:
        children = [c for c in current.children() if _contains_conv(c)]
        last = children[-1]
        if isinstance(last, torch.nn.Conv2d):
            break
        current = last
    if current is not module:
        return current
    kids = list(module.children())
    i = max(j for j, c in enumerate(kids) if isinstance(c, torch.nn.Conv2d))
    layer = kids[i]
    for c in kids[i + 1:]:
        if isinstance(c, torch.nn.BatchNorm2d | torch.nn.ReLU | torch.nn.LeakyReLU | torch.nn.GELU
                      | torch.nn.SiLU | torch.nn.ELU):
            layer = c
        else:
            break
    return layer


def layer_name(module, layer) -> str:
    for n, m in module.named_modules():
        if m is layer:
            return n
    return "?"


# ---------------------------------------------------------------------------------------------
# activations and gradients of one layer

def _grab_output(layer):
    """Keep ``layer``'s output; the rest of the model runs on a copy of it.

    Models may overwrite a layer's output in place afterwards (DenseNet applies
    ``relu(features, inplace=True)`` to ``features.norm5``); the hook hands the model a clone so
    the kept tensor, and the gradient taken with respect to it, stay those of the layer itself.
    """
    store = {}

    def hook(_m, _i, out):
        from .vit import token_grid  # ViT: (N, T, D) tokens -> (N, D, h, w) patch grid

        as_grid = token_grid(_m, out)
        if as_grid is not None:  # ViT: the layer outputs tokens rebuilt from the grid,
            store["a"], rebuilt = as_grid  # so gradients of the score reach the grid
            return rebuilt
        if not isinstance(out, torch.Tensor) or out.ndim != 4:
            raise ModelError(f"target layer {type(_m).__name__} must output a (N, K, h, w) tensor")
        store["a"] = out
        return out.clone()

    return store, layer.register_forward_hook(hook)


def activations_and_grads(module, x, targets, layer):
    """``A`` (N, K, h, w) of ``layer`` and the gradient of the target logits with respect to it."""
    store, handle = _grab_output(layer)
    try:
        with torch.enable_grad():
            xi = x.detach().requires_grad_(True)
            score = target_scores(module(xi), targets)
            act = store["a"]
            (grad,) = torch.autograd.grad(score.sum(), act)
    finally:
        handle.remove()
    return act.detach(), grad


def activations(module, x, layer):
    store, handle = _grab_output(layer)
    try:
        with torch.no_grad():
            logits = module(x)
    finally:
        handle.remove()
    return store["a"].detach(), logits


def gradcam_low_res(module, x, targets, layer) -> torch.Tensor:
    """Rectified Grad-CAM at the layer's resolution, ``(N, h, w)``."""
    act, grad = activations_and_grads(module, x, targets, layer)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    return (weights * act).sum(1).clamp(min=0)


def _gradcam_pp_weights(act, g1, g2, g3):
    sum_act = act.sum(dim=(2, 3), keepdim=True)
    alpha = g2 / (2 * g2 + sum_act * g3 + 1e-6)
    alpha = torch.where(g1 != 0, alpha, torch.zeros_like(alpha))
    return (g1.clamp(min=0) * alpha).sum(dim=(2, 3), keepdim=True)


class _Cam(Explainer):
    signed = False
    needs = frozenset({"module-hooks", "gradients"})
    native_resolution = "feature-map"
    cost = 1.0
    params = {"target_layer": _LAYER}

    def _attribute(self, module, x, targets, *, target_layer, **params):
        layer = resolve_target_layer(module, target_layer)
        cam = self._low_res(module, x, targets, layer, **params)
        return upsample(cam.clamp(min=0), x.shape[-2:])


@register_explainer("gradcam")
class GradCam(_Cam):
    description = "Grad-CAM: activations weighted by their spatially averaged gradients"

    def _low_res(self, module, x, targets, layer):
        return gradcam_low_res(module, x, targets, layer)


@register_explainer("gradcam++")
class GradCamPlusPlus(_Cam):
    description = "Grad-CAM++: higher-order gradient weighting of positive gradients"

    def _low_res(self, module, x, targets, layer):
        act, g = activations_and_grads(module, x, targets, layer)
        return (_gradcam_pp_weights(act, g, g**2, g**3) * act).sum(1)


@register_explainer("xgradcam")
class XGradCam(_Cam):
    description = "XGrad-CAM: gradients weighted by normalised activations (axiom-based)"

    def _low_res(self, module, x, targets, layer):
        act, g = activations_and_grads(module, x, targets, layer)
        sum_act = act.sum(dim=(2, 3), keepdim=True)
        weights = (g * act / (sum_act + 1e-7)).sum(dim=(2, 3), keepdim=True)
        return (weights * act).sum(1)


@register_explainer("layercam")
class LayerCam(_Cam):
    description = "LayerCAM: activations weighted element-wise by positive gradients"

    def _low_res(self, module, x, targets, layer):
        act, g = activations_and_grads(module, x, targets, layer)
        return (g.clamp(min=0) * act).sum(1)


@register_explainer("smooth-gradcam++")
class SmoothGradCamPlusPlus(_Cam):
    description = "Smooth Grad-CAM++: Grad-CAM++ with gradient moments averaged over noisy inputs"
    needs = frozenset({"module-hooks", "gradients", "many-forwards"})
    cost = 8.0
    params = {"target_layer": _LAYER,
              "n_samples": Param(8, "int", 1, 256, help="noisy copies per patch"),
              "noise": Param(0.15, "float", 0.0, 10.0, help="noise std, fraction of the value range"),
              "seed": Param(0, "int", 0, 2**31 - 1)}

    def _low_res(self, module, x, targets, layer, *, n_samples, noise, seed):
        gen = torch.Generator(device=x.device).manual_seed(seed)
        span = (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))).view(-1, 1, 1, 1)
        act, _ = activations(module, x, layer)
        g1 = g2 = g3 = 0
        for _ in range(n_samples):
            eps = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
            _, g = activations_and_grads(module, x + eps * noise * span, targets, layer)
            g1, g2, g3 = g1 + g, g2 + g**2, g3 + g**3
        g1, g2, g3 = g1 / n_samples, g2 / n_samples, g3 / n_samples
        return (_gradcam_pp_weights(act, g1, g2, g3) * act).sum(1)


@register_explainer("scorecam")
class ScoreCam(_Cam):
    description = "Score-CAM: each channel weighted by the class score of the patch masked by it"
    needs = frozenset({"module-hooks", "many-forwards"})
    cost = 200.0
    params = {"target_layer": _LAYER,
              "forward_batch": Param(64, "int", 1, 4096, help="masked patches per forward pass")}

    def _low_res(self, module, x, targets, layer, *, forward_batch):
        act, _ = activations(module, x, layer)
        n, k = act.shape[:2]
        # masks: each channel upsampled bilinearly (align_corners=True, as Wang et al.'s
        # release and pytorch-grad-cam) and min-max normalised at input resolution, one batch
        # of channels at a time (all of them at once would hold K full-size copies)
        flat = act.flatten(2)
        lo, hi = flat.min(-1)[0], flat.max(-1)[0]
        scores = torch.empty(n, k, dtype=x.dtype, device=x.device)
        with torch.no_grad():
            for i in range(n):
                # a constant channel (a dead ReLU) masks the whole patch to zero: one pass
                flat_ch = (hi[i] == lo[i]).nonzero()[:, 0]
                live = (hi[i] != lo[i]).nonzero()[:, 0]
                if len(flat_ch):
                    zero = torch.zeros_like(x[i:i + 1])
                    scores[i, flat_ch] = target_scores(module(zero), targets[i:i + 1])[0]
                for j in range(0, len(live), forward_batch):
                    ch = live[j:j + forward_batch]
                    masks = torch.nn.functional.interpolate(
                        act[i:i + 1, ch], size=x.shape[-2:], mode="bilinear",
                        align_corners=True)[0]
                    m_lo = masks.flatten(1).min(-1)[0][:, None, None]
                    m_hi = masks.flatten(1).max(-1)[0][:, None, None]
                    masks = (masks - m_lo) / (m_hi - m_lo + 1e-8)
                    batch = x[i:i + 1] * masks[:, None]
                    scores[i, ch] = target_scores(module(batch), targets[i].expand(len(ch)))
        weights = torch.softmax(scores, dim=1)[..., None, None]
        return (weights * act).sum(1)


@register_explainer("ablationcam")
class AblationCam(_Cam):
    """Ablation-CAM (Ramaswamy & Desai 2020): ``w_k = (y - y_k) / y``.

    ``y_k`` is the target logit with channel ``k`` of the target layer set to **zero**, the
    paper's convention, also on layers whose activations can be negative (BatchNorm outputs
    such as DenseNet's ``features.norm5``). pytorch-grad-cam sets the channel to
    ``min(A) - 1e7`` instead when the activations' minimum is not zero; the two agree on
    rectified layers. Only the part of the network after the target layer runs for the
    ablated copies (split with ``torch.fx``; the whole network where fx cannot trace it).
    """

    description = "Ablation-CAM: each channel weighted by the score drop when it is zeroed"
    needs = frozenset({"module-hooks", "many-forwards"})
    cost = 100.0
    params = {"target_layer": _LAYER,
              "forward_batch": Param(64, "int", 1, 4096, help="ablated copies per forward pass")}

    def _low_res(self, module, x, targets, layer, *, forward_batch):
        from .vit import grid_as_layer_output, is_vit

        # a ViT layer's output is tokens, its activations the token grid: no fx split there
        head = None if is_vit(module) else _head_for(module, layer, x)
        if head is not None:
            act, logits = head.prepare(x)
        else:
            act, logits = activations(module, x, layer)
        base = target_scores(logits, targets)
        n, k = act.shape[:2]
        ablated = torch.empty(n, k, dtype=x.dtype, device=x.device)
        replacement = {}
        handle = None if head is not None else layer.register_forward_hook(
            lambda m, _i, out: grid_as_layer_output(m, replacement["a"], out))  # ViT: tokens
        try:
            with torch.no_grad():
                for i in range(n):
                    for j in range(0, k, forward_batch):
                        m = min(forward_batch, k - j)
                        rep = act[i:i + 1].repeat(m, 1, 1, 1)
                        rep[torch.arange(m), torch.arange(j, j + m)] = 0
                        if head is not None:
                            out = head(rep, i)
                        else:
                            replacement["a"] = rep
                            out = module(x[i:i + 1].expand(m, -1, -1, -1))
                        ablated[i, j:j + m] = target_scores(out, targets[i].expand(m))
        finally:
            if handle is not None:
                handle.remove()
        weights = (base[:, None] - ablated) / base[:, None]
        return (weights[..., None, None] * act).sum(1)


def _head_for(module, layer, x):
    """The network after ``layer`` (see :mod:`.cam_head`) when it reproduces the logits."""
    from .cam_head import split_at

    name = layer_name(module, layer)
    head = split_at(module, name) if name not in ("?", "") else None
    if head is None:
        return None
    try:
        act, logits = head.prepare(x[:1])
        with torch.no_grad():
            full = module(x[:1])
        ok = torch.allclose(logits, full, rtol=1e-5, atol=1e-6 * float(full.abs().max()) + 1e-12)
    except Exception:
        ok = False
    return head if ok else None
