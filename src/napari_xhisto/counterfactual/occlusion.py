"""``inpaint-occlusion``: occlusion whose baseline is in-domain healthy tissue (seed 001).

Each sliding window is filled by the inpainter, conditioned on the rest of the patch, instead
of a constant; the map is the target score drop averaged per pixel, as for ``occlusion``.
A drop then means "this would score lower if this region looked like healthy tissue", without
the out-of-domain grey squares of the classic method.

Needs a trained inpainter at the model's scale (default: the bundled one for the demo model).
"""

from __future__ import annotations

import threading

import torch

from ..errors import ModelError
from ..explain.perturbation import occlusion_map
from ..explain.registry import Explainer, Param, register_explainer
from .inpainter import Inpainter, load_inpainter

_CACHE: dict = {}
_LOCK = threading.Lock()


def cached_inpainter(name_or_path, device) -> Inpainter:
    """``load_inpainter`` once per (name, device) for the process."""
    key = (str(name_or_path or "demo"), str(device))
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = load_inpainter(name_or_path or "demo", device=device)
        return _CACHE[key]


def _triple(value, name: str):
    if value is None:
        return None
    if isinstance(value, str):
        parts = [p for p in value.strip("()[] ").replace(" ", "").split(",") if p]
    else:
        parts = list(value)
    try:
        out = tuple(float(p) for p in parts)
    except ValueError:
        out = ()
    if len(out) != 3:
        raise ValueError(f"parameter {name!r} must be three numbers 'r,g,b', got {value!r}")
    return out


def normalisation(inp: Inpainter, mean, std):
    """The classifier's (mean, std): given ones, else those recorded with the inpainter."""
    rec = inp.spec.get("classifier", {}) or {}
    mean = _triple(mean, "model_mean") or tuple(rec.get("mean", (0.5, 0.5, 0.5)))
    std = _triple(std, "model_std") or tuple(rec.get("std", (0.25, 0.25, 0.25)))
    return mean, std


@register_explainer("inpaint-occlusion")
class InpaintOcclusion(Explainer):
    description = ("score drop when a sliding square is replaced by inpainted healthy tissue "
                   "(needs a trained inpainter; default the bundled demo one)")
    signed = True
    needs = frozenset({"many-forwards"})
    native_resolution = "pixel"
    cost = 120.0
    requires = ("a trained inpainter at the model's scale (default: the bundled demo one; "
                "`xhisto train-inpainter`)",)
    params = {
        "window": Param(16, "int", 1, 4096, help="side of the inpainted square, px"),
        "stride": Param(8, "int", 1, 4096, help="step between squares, px (<= window)"),
        "inpainter": Param(None, "str", help="inpainter spec YAML or 'demo' (bundled, 64 px at "
                                             "1 µm/px; train others with xhisto train-inpainter)"),
        "forward_batch": Param(64, "int", 1, 4096, help="inpainted copies per forward pass"),
        "model_mpp": Param(None, "str", help="the model's µm/px (filled by explain_region; "
                                             "checked against the inpainter's)"),
        "model_mean": Param(None, "str", help="the model's normalisation mean 'r,g,b' (default: "
                                              "the one recorded with the inpainter)"),
        "model_std": Param(None, "str", help="the model's normalisation std 'r,g,b'"),
    }

    def info(self) -> dict:
        return {**super().info(), "requires": list(self.requires)}

    def _attribute(self, module, x, targets, *, window, stride, inpainter, forward_batch,
                   model_mpp, model_mean, model_std):
        if stride > window:
            raise ValueError(f"inpaint-occlusion stride ({stride}) must not exceed the window "
                             f"({window})")
        n, c, h, w = x.shape
        if c != 3:
            raise ModelError(f"inpaint-occlusion needs RGB patches, got {c} channels")
        inp = cached_inpainter(inpainter, x.device)
        if h != w or h != inp.patch_px:
            raise ModelError(f"the inpainter was trained on {inp.patch_px} px patches but the "
                             f"model sees {h} x {w} px; train one at that size with `xhisto "
                             f"train-inpainter OUT --patch-size {h}`")
        if model_mpp is not None:
            try:
                mpp = float(model_mpp)
            except ValueError:
                raise ValueError(f"parameter 'model_mpp' must be a number, got {model_mpp!r}") \
                    from None
            inp.check_scale(h, mpp)
        mean, std = normalisation(inp, model_mean, model_std)
        mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        rgb = (x * std_t + mean_t).clamp(0.0, 1.0)

        def fill(i, chunk):
            masks = torch.ones(len(chunk), 1, h, w, dtype=x.dtype, device=x.device)
            for k, ((r0, r1), (c0, c1)) in enumerate(chunk):
                masks[k, :, r0:r1, c0:c1] = 0.0
            filled = inp.fill(rgb[i:i + 1].expand(len(chunk), -1, -1, -1), masks)
            with torch.no_grad():
                batch = (filled.to(x.dtype) - mean_t) / std_t
                # outside the window the patch is the model's input exactly
                return torch.where(masks.bool(), x[i:i + 1], batch)

        return occlusion_map(module, x, targets, window, stride, forward_batch, fill)
