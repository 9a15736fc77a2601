"""Explain a slide region: overlapping patches at the model's µm/px, stitched into one heatmap.

Patches overlap by ``overlap`` of their side and are blended by overlap-weighted averaging (a
weight that ramps down across the overlap band), so constant relevance stays constant and no
seams appear. The heatmap lies on the model's pixel grid; its :class:`Placement` maps it onto
level 0 of the slide (``step`` = model µm/px over slide µm/px).

A patch that shows a damaged tile of the slide (``Slide.damage_mask``) is left out of the
stitching and of the normalisation; heatmap pixels on a damaged tile, or covered by no intact
patch, are NaN, and the provenance lists the damaged tiles.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import ModelError
from ..geometry import Placement, Region
from .registry import get_explainer, is_torchscript

NORMALIZE_MODES = ("global-max", "per-patch", "percentile", "none")


@dataclass
class Heatmap:
    """A stitched explanation map of a region.

    Attributes
    ----------
    values : ndarray (H, W) float32
        Relevance on the model's pixel grid (normalised as ``provenance["normalize"]`` says);
        NaN on damaged tiles of the slide and where only patches showing them reached.
    placement : Placement
        Where ``values`` lies on level 0.
    provenance : dict
        Model, method, parameters, target, region, overlap, normalisation and its scale.
    """

    values: np.ndarray
    placement: Placement
    provenance: dict = field(default_factory=dict)


def patch_starts(length: int, patch: int, stride: int) -> list[int]:
    """Start offsets of patches covering ``[0, length)``; the last one ends at ``length``."""
    if length <= patch:
        return [0]
    starts = list(range(0, length - patch, stride))
    return starts + [length - patch]


def blend_weights(patch: int, stride: int) -> np.ndarray:
    """Separable weights ``(patch, patch)``: 1 inside, ramping to ~0 across the overlap band."""
    margin = patch - stride
    t = np.arange(patch, dtype=np.float64) + 0.5
    ramp = np.ones(patch) if margin <= 0 else np.minimum(1.0, np.minimum(t, patch - t) / margin)
    return np.outer(ramp, ramp)


def resolve_target(model, target) -> int:
    """Class index from an index, a class name, or ``None`` (the model's positive class)."""
    names = list(model.spec.class_names)
    if target is None:
        return int(model.spec.positive_index)
    if isinstance(target, str) and not target.lstrip("-").isdigit():
        if target not in names:
            raise ModelError(f"target class {target!r} is not one of the model's classes {names}")
        return names.index(target)
    index = int(target)
    if not 0 <= index < len(names):
        raise ModelError(f"target class index {index} is out of range for classes {names}")
    return index


def model_defaults(explainer, model, params: dict) -> dict:
    """``params`` with what the model's spec decides filled in where the user gave nothing:
    a calibrated spec's ``temperature`` for explainers that report probabilities, and the
    model's µm/px, mean and std for explainers that declare ``model_mpp``/``model_mean``/
    ``model_std``."""
    params = dict(params)
    declared = getattr(explainer, "params", {})
    spec = getattr(model, "spec", None)
    if "temperature" in declared and "temperature" not in params:
        params["temperature"] = float(getattr(spec, "temperature", 1.0))
    for key, attr in (("model_mpp", "mpp"), ("model_mean", "mean"), ("model_std", "std")):
        # the scale and normalisation of the model, for explainers that check them against
        # their own networks' (the inpainter, seed 001)
        if key in declared and params.get(key) is None and spec is not None:
            params[key] = ",".join(str(v) for v in np.ravel(getattr(spec, attr)))
    return params


def explain_patches(model, images_uint8, method: str, target=None, *, batch_size: int = 16,
                    **params) -> np.ndarray:
    """Explain a batch of uint8 RGB patches ``(N, H, W, 3)`` with a loaded model.

    Returns
    -------
    ndarray (N, h, w) float32
        One map per patch at the network's input resolution.
    """
    explainer = get_explainer(method)
    params = explainer.check_params(**model_defaults(explainer, model, params))
    index = resolve_target(model, target)
    images = np.asarray(images_uint8)
    if images.ndim == 3:
        images = images[None]
    out = []
    for i in range(0, len(images), batch_size):
        x = model.preprocess(images[i:i + batch_size])
        out.append(explainer.explain(model.module, x, index, **params))
    return np.concatenate(out) if out else np.zeros((0,) + images.shape[1:3], np.float32)


def explain_region(slide, region: Region, model, method: str, *, target=None, overlap: float = 0.1,
                   normalize: str = "global-max", batch_size: int = 16, percentile: float = 99.5,
                   **params):
    """Explain ``region`` of ``slide``: a generator of ``(done, total)`` returning a Heatmap.

    Parameters
    ----------
    slide : Slide
        Needs ``mpp``, ``dimensions`` and ``read_scaled(region, out_h, out_w)``.
    region : Region
        Level-0 pixels; clipped to the slide.
    model : LoadedModel
        ``module``, ``spec`` (patch_size, mpp, class names), ``preprocess``.
    method : str
        A registered explainer name (see ``xhisto methods``).
    target : int or str, optional
        Class index or name; default the model's positive class.
    overlap : float
        Fraction of a patch side shared with its neighbour, in [0, 0.9].
    normalize : {"global-max", "per-patch", "percentile", "none"}
        ``global-max`` divides by the largest |R| over all patch maps of this run (seed 000);
        ``per-patch`` divides each patch map by its own largest |R| (display only);
        ``percentile`` clips at the ``percentile``-th |R| of the stitched map and divides by it.
    batch_size : int
        Patches per explainer call.
    **params
        Parameters of the method.

    Stopping the iteration early (cancel) leaves nothing behind: hooks live only within one
    explainer call.
    """
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got {normalize!r}")
    if not 0.0 <= overlap <= 0.9:
        raise ValueError(f"overlap must be in [0, 0.9], got {overlap}")
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    explainer = get_explainer(method)
    if "mean" in explainer.params and "mean" not in params:  # z-box bounds from the normalisation
        params = {**params, "mean": tuple(model.spec.mean), "std": tuple(model.spec.std)}
    if "target_layer" in explainer.params and not params.get("target_layer"):
        params = {**params, "target_layer": getattr(model.spec, "target_layer", None)}
    params = explainer.check_params(**model_defaults(explainer, model, params))
    index = resolve_target(model, target)
    if "module-hooks" in explainer.needs and is_torchscript(model.module):
        raise ModelError(f"{method} needs hooks on the model's layers; {model.spec.name} is "
                         "TorchScript. Load a module-based model or choose a gradient-free method")
    if slide.mpp is None:
        raise ModelError("the slide has no µm/px in its metadata; open it with "
                         "open_slide(path, mpp=...) (CLI: --mpp) so patches match the model")
    region = region.clip(*slide.dimensions)
    spec = model.spec
    size = int(spec.network_input_size)
    footprint = spec.patch_size * spec.mpp / float(slide.mpp)  # level-0 px under one patch
    step = footprint / size  # level-0 px per heatmap px
    out_h = max(1, math.ceil(region.height / step - 1e-9))
    out_w = max(1, math.ceil(region.width / step - 1e-9))
    stride = max(1, int(round(size * (1.0 - overlap))))
    rows, cols = patch_starts(out_h, size, stride), patch_starts(out_w, size, stride)
    jobs = [(r, c) for r in rows for c in cols]
    canvas_h, canvas_w = max(out_h, size), max(out_w, size)
    acc = np.zeros((canvas_h, canvas_w), np.float64)
    wsum = np.zeros((canvas_h, canvas_w), np.float64)
    weight = blend_weights(size, stride)
    global_max = 0.0
    n_damaged = 0
    started = time.perf_counter()
    total = len(jobs)
    yield 0, total
    for k in range(0, total, batch_size):
        chunk = jobs[k:k + batch_size]
        corners = [(region.level0_row + r * step, region.level0_col + c * step)
                   for r, c in chunk]
        images = np.stack([_read_patch(slide, top, left, footprint, size)
                           for top, left in corners])
        damaged = [_patch_damaged(slide, top, left, footprint, size) for top, left in corners]
        n_damaged += sum(damaged)
        with torch.no_grad():
            x = model.preprocess(images)
        maps = explainer.explain(model.module, x, index, **params).astype(np.float64)
        for (r, c), m, bad in zip(chunk, maps, damaged):
            if bad:  # its relevance was computed on stripes: not evidence of anything
                continue
            peak = float(np.abs(m).max())
            global_max = max(global_max, peak)
            if normalize == "per-patch" and peak > 0:
                m = m / peak
            acc[r:r + size, c:c + size] += weight * m
            wsum[r:r + size, c:c + size] += weight
        yield min(k + batch_size, total), total
    values = np.divide(acc, wsum, out=np.full_like(acc, np.nan), where=wsum > 0)[:out_h, :out_w]
    on_damage = _heatmap_damage(slide, region, step, out_h, out_w)
    if on_damage is not None:
        values[on_damage] = np.nan
    scale = 1.0
    if normalize == "global-max":
        scale = global_max
    elif normalize == "percentile":
        finite = np.abs(values[np.isfinite(values)])
        scale = float(np.percentile(finite, percentile)) if finite.size else 0.0
        values = np.clip(values, -scale, scale)
    if scale > 0:
        values = values / scale
    provenance = {
        "kind": "explanation", "method": method, "params": _jsonable(params),
        "signed": explainer.signed, "native_resolution": explainer.native_resolution,
        "target": index, "target_class": spec.class_names[index],
        "region": list(region.as_tuple()), "overlap": overlap, "normalize": normalize,
        "normalization_scale": scale, "percentile": percentile if normalize == "percentile" else None,
        "patch_px": size, "patch_stride_px": stride, "n_patches": total,
        "heatmap_mpp": step * float(slide.mpp), "seconds": time.perf_counter() - started,
        "slide": str(getattr(slide, "path", "")),
        "n_damaged_patches": n_damaged, "damaged_tiles": _damage_in_region(slide, region),
    }
    if hasattr(model, "provenance"):
        provenance["model"] = model.provenance()
    placement = Placement(float(region.level0_row), float(region.level0_col), step, step)
    return Heatmap(values.astype(np.float32), placement, provenance)


def _patch_region(top: float, left: float, footprint: float) -> Region:
    side = max(1, int(round(footprint)))
    return Region(int(round(top)), int(round(left)), side, side)


def _read_patch(slide, top: float, left: float, footprint: float, size: int) -> np.ndarray:
    return slide.read_scaled(_patch_region(top, left, footprint), size, size)


def _patch_damaged(slide, top: float, left: float, footprint: float, size: int) -> bool:
    """Whether the patch :func:`_read_patch` just read shows a damaged tile."""
    if not getattr(slide, "failed_tiles", None):
        return False
    return slide.damage_mask(_patch_region(top, left, footprint), size, size) is not None


def _heatmap_damage(slide, region: Region, step: float, out_h: int, out_w: int):
    """bool (out_h, out_w) of heatmap pixels on damaged tiles, or None."""
    if not getattr(slide, "failed_tiles", None):
        return None
    covered = Region(region.level0_row, region.level0_col, max(1, math.ceil(out_h * step)),
                     max(1, math.ceil(out_w * step)))
    return slide.damage_mask(covered, out_h, out_w)


def _damage_in_region(slide, region: Region) -> list[dict]:
    from ..models.inference import damage_in_region

    return damage_in_region(slide, region)


def _jsonable(params: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()}
