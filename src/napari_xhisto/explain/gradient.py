"""Gradient family: saliency, SmoothGrad, integrated gradients, guided backprop, guided Grad-CAM.

All maps are signed gradients (or gradient x input) summed over the colour channels, so the map
keeps the sign of the evidence for the target class.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from .registry import Explainer, Param, register_explainer, target_scores


def input_gradient(module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Gradient of each sample's target logit with respect to its input, ``(N, C, H, W)``.

    Only the input gradient is computed (no parameter gradients are accumulated).
    """
    with torch.enable_grad():
        xi = x.detach().requires_grad_(True)
        score = target_scores(module(xi), targets)
        (grad,) = torch.autograd.grad(score.sum(), xi)
    return grad


_SMOOTHGRAD_BATCH = 128  # patches per forward pass when batching noisy copies


@register_explainer("saliency")
class Saliency(Explainer):
    description = "input gradient of the class logit, summed over colour channels"
    signed = True
    needs = frozenset({"gradients"})
    native_resolution = "pixel"
    cost = 1.0
    params = {"abs": Param(False, "bool", help="sum |gradient| instead of the signed gradient")}

    def _attribute(self, module, x, targets, *, abs):
        grad = input_gradient(module, x, targets)
        return (grad.abs() if abs else grad).sum(1)


@register_explainer("smoothgrad")
class SmoothGrad(Explainer):
    description = "saliency averaged over noisy copies of the patch (Smilkov et al. 2017)"
    signed = True
    needs = frozenset({"gradients", "many-forwards"})
    native_resolution = "pixel"
    cost = 16.0
    params = {
        "n_samples": Param(16, "int", 1, 1000, help="noisy copies per patch"),
        "noise": Param(0.15, "float", 0.0, 10.0, help="noise std as a fraction of the patch's value range"),
        "seed": Param(0, "int", 0, 2**31 - 1),
    }

    def _attribute(self, module, x, targets, *, n_samples, noise, seed):
        gen = torch.Generator(device=x.device).manual_seed(seed)
        span = (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))).view(-1, 1, 1, 1)
        total = torch.zeros_like(x)
        n = x.shape[0]
        # several noisy copies per pass (as captum's NoiseTunnel does): small models are
        # dominated by per-call overhead, so one pass per copy was 2x slower than the reference
        per_pass = max(1, min(n_samples, _SMOOTHGRAD_BATCH // max(n, 1)))
        done = 0
        while done < n_samples:
            k = min(per_pass, n_samples - done)
            eps = torch.randn((k, *x.shape), generator=gen, device=x.device, dtype=x.dtype)
            noisy = (x.unsqueeze(0) + eps * noise * span.unsqueeze(0)).reshape(k * n, *x.shape[1:])
            grads = input_gradient(module, noisy, targets.repeat(k))
            total += grads.reshape(k, *x.shape).sum(0)
            done += k
        return (total / n_samples).sum(1)


@register_explainer("integrated-gradients")
class IntegratedGradients(Explainer):
    description = "integrated gradients from a constant baseline (right Riemann sum)"
    signed = True
    needs = frozenset({"gradients", "many-forwards"})
    native_resolution = "pixel"
    cost = 32.0
    params = {
        "steps": Param(32, "int", 2, 1024, help="Riemann steps along the path"),
        "baseline": Param(0.0, "float", help="baseline value in normalised units (0 = dataset mean)"),
        "internal_batch_size": Param(64, "int", 1, 4096, help="path points per forward pass"),
    }

    def _attribute(self, module, x, targets, *, steps, baseline, internal_batch_size):
        base = torch.full_like(x, baseline)
        diff = x - base
        alphas = torch.linspace(1.0 / steps, 1.0, steps, dtype=torch.float64).tolist()
        n = x.shape[0]
        per_call = max(1, internal_batch_size // max(n, 1))
        total = torch.zeros_like(x)
        for i in range(0, steps, per_call):
            chunk = alphas[i:i + per_call]
            points = torch.cat([base + a * diff for a in chunk])
            grads = input_gradient(module, points, targets.repeat(len(chunk)))
            total += grads.view(len(chunk), *x.shape).sum(0)
        return (diff * total / steps).sum(1)


def _positive(grad):
    return grad.clamp(min=0)


@contextmanager
def guided_relus(module):
    """Within the block, every ``nn.ReLU`` of ``module`` back-propagates guided gradients.

    A hook on each ReLU's output keeps only the positive part of the gradient arriving there;
    the ReLU's own backward then passes it where the input was positive. (A tensor hook, not
    an extra autograd function per ReLU: guided backprop costs what a plain gradient costs.)
    An in-place ReLU's output is its input, rewritten: the hook sees the gradient with respect
    to the rectified values, as for any ReLU.
    """

    def hook(_mod, _inp, out):
        if out.requires_grad:
            out.register_hook(_positive)

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, torch.nn.ReLU)]
    try:
        yield len(handles)
    finally:
        for h in handles:
            h.remove()


def guided_gradient(module, x, targets) -> torch.Tensor:
    from .vit import refuse_vit  # ViT: GELU, no ReLU to guide: it would be plain saliency

    refuse_vit(module, "guided backpropagation guides ReLUs; a vision transformer has none (GELU), "
               "so it would be plain saliency: use saliency or a CAM method")
    with guided_relus(module):
        return input_gradient(module, x, targets)


@register_explainer("guided-backprop")
class GuidedBackprop(Explainer):
    description = "guided backpropagation (positive gradients through ReLUs), summed over channels"
    signed = True
    needs = frozenset({"gradients", "module-hooks"})
    native_resolution = "pixel"
    cost = 1.0
    params = {}

    def _attribute(self, module, x, targets):
        return guided_gradient(module, x, targets).sum(1)


@register_explainer("guided-gradcam")
class GuidedGradCam(Explainer):
    description = "guided backprop times the upsampled Grad-CAM map (Selvaraju et al.)"
    signed = True
    needs = frozenset({"gradients", "module-hooks"})
    native_resolution = "pixel"
    cost = 2.0
    params = {"target_layer": Param(None, "str", help="dotted module name; default: last conv block")}

    def _attribute(self, module, x, targets, *, target_layer):
        from .cam import gradcam_low_res, resolve_target_layer
        from .registry import upsample

        layer = resolve_target_layer(module, target_layer)
        cam = gradcam_low_res(module, x, targets, layer)
        guided = guided_gradient(module, x, targets)
        return (guided * upsample(cam, x.shape[-2:])[:, None]).sum(1)
