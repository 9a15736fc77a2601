"""Slide-level explanations: Grad-CAM on the slide-level CNN, mapped back onto the slide.

As in seed 004 (section 3.3), Grad-CAM is taken at the first layer of the slide-level CNN (one
value per code cell when its stride is 1), for the logit of the positive label. The map is a
:class:`~napari_xhisto.explain.tiling.Heatmap` like a patch explanation: float values, a
:class:`~napari_xhisto.geometry.Placement` on level 0 (one map pixel per code cell, centred on
the patch the cell encodes) and provenance, so it is written with
:func:`~napari_xhisto.export.heatmap_io.write_heatmap`, shown with the heatmap colormap and
legend, and evaluated with :mod:`napari_xhisto.metrics.localization`. Cells off tissue are NaN.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..errors import ModelError
from ..explain.cam import gradcam_low_res, resolve_target_layer
from ..explain.tiling import Heatmap
from ..geometry import Placement
from .slide_model import SlideCNN, check_grid, dihedral, dihedral_inverse, grid_arrays

METHOD = "gradcam"  # the registry name of Grad-CAM for patch heatmaps


def grid_placement(grid) -> Placement:
    """Where a map with one pixel per code cell lies on level 0: pixel (i, j) is centred on the
    patch of cell (i, j) (``origin + i * stride + (patch - 1) / 2``), one stride wide."""
    shift = (float(grid.patch) - float(grid.stride)) / 2
    return Placement(float(grid.origin[0]) + shift, float(grid.origin[1]) + shift,
                     float(grid.stride), float(grid.stride))


def slide_gradcam(model: SlideCNN, grid, *, layer: str | None = None, augment: bool = False):
    """Grad-CAM of ``grid`` at ``layer`` and ``p(label)``.

    Returns ``(cam (rows', cols') float32, p)``; ``cam`` is at the layer's resolution (the grid's
    at the first layer). With ``augment``, the CAMs of the 8 flips/rotations are mapped back and
    averaged (and so is ``p``).
    """
    check_grid(model, grid)
    codes, tissue = grid_arrays(grid)
    model.eval()
    name = layer or model.spec.cam_layer
    try:
        target = resolve_target_layer(model, name)
    except Exception as exc:  # noqa: BLE001 - any lookup failure is the user's layer name
        names = [n for n, m in model.named_modules() if n.startswith("blocks.") and n.count(".") == 1]
        raise ModelError(f"no layer {name!r} in the slide model; choose one of {names}") from exc
    z = model.standardise(torch.from_numpy(codes)[None], torch.from_numpy(tissue)[None])
    ks = range(8) if augment else (0,)
    cams, probs = [], []
    zero = torch.zeros(1, dtype=torch.long)
    for k in ks:
        x = dihedral(z, k)
        cam = gradcam_low_res(model, x, zero, target)  # (1, h, w)
        cams.append(dihedral_inverse(cam, k)[0])
        with torch.no_grad():
            probs.append(float(torch.sigmoid(model(x))[0, 0]))
    return torch.stack(cams).mean(0).numpy().astype(np.float32), float(np.mean(probs))


def explain_slide(model: SlideCNN, grid, *, layer: str | None = None, augment: bool = False,
                  normalize: bool = True, codes_path=None) -> Heatmap:
    """The slide-wide Grad-CAM heatmap of a compressed slide, placed on level 0.

    Parameters
    ----------
    model : SlideCNN
        From :func:`~napari_xhisto.nic.slide_model.load_slide_model`.
    grid : CodeGrid
        The compressed slide (``read_codes``).
    layer : str, optional
        Grad-CAM layer (default the model's ``cam_layer``, the first block). A layer with stride
        is mapped back with its own, coarser, placement.
    augment : bool
        Average over the 8 flips/rotations.
    normalize : bool
        Divide by the map's maximum ("global-max", as patch heatmaps); the scale is recorded.
    codes_path : str or Path, optional
        Recorded in the provenance.

    Returns
    -------
    Heatmap
        ``values`` (rows', cols') float32 (NaN off tissue), ``placement`` and ``provenance``
        (model, method, layer, target label, ``p_label``, encoder, codes, normalisation).
    """
    start = time.perf_counter()
    cam, p = slide_gradcam(model, grid, layer=layer, augment=augment)
    rows, cols = grid.shape
    fr = rows / cam.shape[0]
    tissue = np.asarray(grid.tissue, bool)
    base = grid_placement(grid)
    if cam.shape == (rows, cols):
        placement = base
        on = tissue
    else:  # after stride-f blocks (3x3, padding 1), map pixel i is centred on cell f * i
        f = _total_stride(model, layer or model.spec.cam_layer, fr)
        step = base.step_row * f
        placement = Placement(base.origin_row + (base.step_row - step) / 2,
                              base.origin_col + (base.step_col - step) / 2, step, step)
        on = _any_block(tissue, cam.shape)
    values = np.where(on, cam, np.nan).astype(np.float32)
    finite = values[np.isfinite(values)]
    scale = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    if normalize:
        values = values / scale
    spec = model.spec
    prov = {
        "kind": "heatmap", "level": "slide", "method": METHOD,
        "layer": layer or spec.cam_layer, "target_class": spec.positive,
        "p_label": p, "label_names": list(spec.label_names),
        "model": getattr(model, "source", None), "model_sha256": getattr(model, "weights_sha256", None),
        "model_kind": spec.kind, "encoder": dict(spec.encoder),
        "codes": None if codes_path is None else str(codes_path),
        "codes_provenance": dict(grid.provenance or {}),
        "augment": bool(augment), "normalize": "global-max" if normalize else "none",
        "scale": scale, "grid_shape": [rows, cols], "stride": int(grid.stride),
        "patch": int(grid.patch), "seconds": time.perf_counter() - start,
        "name": f"{METHOD} slide-level ({spec.positive})",
    }
    return Heatmap(values, placement, prov)


def _total_stride(model, layer: str, fallback: float) -> int:
    """Product of the block strides up to ``layer`` (``blocks.k`` or a module inside it)."""
    parts = str(layer).split(".")
    if len(parts) >= 2 and parts[0] == "blocks" and parts[1].isdigit():
        return int(np.prod([int(s) for s in model.spec.strides[: int(parts[1]) + 1]]))
    return max(1, int(round(fallback)))


def _any_block(mask: np.ndarray, shape) -> np.ndarray:
    rows, cols = mask.shape
    out = np.zeros(shape, bool)
    for i in range(shape[0]):
        for j in range(shape[1]):
            r0, r1 = i * rows // shape[0], max((i + 1) * rows // shape[0], i * rows // shape[0] + 1)
            c0, c1 = j * cols // shape[1], max((j + 1) * cols // shape[1], j * cols // shape[1] + 1)
            out[i, j] = mask[r0:r1, c0:c1].any()
    return out


def resample_to(values: np.ndarray, placement: Placement, target: Placement, shape) -> np.ndarray:
    """Nearest-neighbour lookup of a placed map at the pixel centres of another placed grid
    (level-0 coordinates); NaN where the target pixel falls outside the map."""
    values = np.asarray(values, np.float32)
    rr = target.origin_row + (np.arange(shape[0]) + 0.5) * target.step_row
    cc = target.origin_col + (np.arange(shape[1]) + 0.5) * target.step_col
    i = np.floor((rr - placement.origin_row) / placement.step_row).astype(np.int64)
    j = np.floor((cc - placement.origin_col) / placement.step_col).astype(np.int64)
    ok_i = (i >= 0) & (i < values.shape[0])
    ok_j = (j >= 0) & (j < values.shape[1])
    out = np.full((len(rr), len(cc)), np.nan, np.float32)
    sub = values[np.clip(i, 0, values.shape[0] - 1)][:, np.clip(j, 0, values.shape[1] - 1)]
    out[np.ix_(ok_i, ok_j)] = sub[np.ix_(ok_i, ok_j)]
    return out


def evaluate_against_mask(heat: Heatmap, lesion, *, percentiles=(50, 75, 90)) -> dict:
    """PxAP, and Dice/IoU/Hausdorff/weak localisation at percentile thresholds, of a slide
    heatmap against a lesion mask (:class:`~napari_xhisto.synth.cohort.LesionMask`), on the
    mask's grid. Off-tissue (NaN) pixels of the heatmap are left out."""
    from ..metrics.localization import localization_at_percentiles, pxap

    on_mask = resample_to(heat.values, heat.placement, lesion.placement, lesion.mask.shape)
    truth = np.asarray(lesion.mask, bool)
    valid = np.isfinite(on_mask)
    out = {"pxap": float("nan"), "chance_pxap": float(truth[valid].mean()) if valid.any() else
           float("nan"), "lesion_pixels": int(truth[valid].sum())}
    if truth[valid].any() and (~truth[valid]).any():
        out["pxap"] = float(pxap(on_mask, truth).pxap)
        spacing = (lesion.placement.step_row, lesion.placement.step_col)
        out["at_percentiles"] = localization_at_percentiles(on_mask, truth, percentiles=percentiles,
                                                            spacing=spacing, mpp=lesion.mpp)
    return out
