"""The three diagnostics of seed 000 run on the lab's models, with their pass/fail checks.

Heatmaps are LRP with the seed-000 rules (``lrp-epsilon-plus``: z+ on convolutions, epsilon on
the dense layer), through the explain registry; every number comes from
``napari_xhisto.metrics``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..explain import get_explainer
from ..metrics import (
    cell_roc,
    cell_scores,
    centre_bias_profile,
    class_mean_heatmaps,
    compare_region_relevance,
    find_hotspot,
    window_enrichment,
)
from ..models.training import to_tensor
from ..synth import add_square
from .config import SQUARE_ARTEFACT_MIN_ENRICHMENT, SquareArtefact

METHOD = "lrp-epsilon-plus"
CLASS_NAMES = ["non-tumour", "tumour"]
TUMOUR = 1


def predict_and_explain(model, images, *, target=None, batch_size: int = 64):
    """Probabilities (N, 2) and LRP maps (N, H, W) of ``images`` (uint8 NHWC).

    ``target`` None explains each patch's predicted class, an int always that class.
    """
    explainer = get_explainer(METHOD)
    probs, maps = [], []
    for i in range(0, len(images), batch_size):
        x = to_tensor(images[i:i + batch_size], model.spec.mean, model.spec.std)
        with torch.inference_mode():
            p = torch.softmax(model.module(x), 1)
        t = p.argmax(1) if target is None else torch.full((len(x),), int(target))
        probs.append(p.numpy())
        maps.append(explainer.explain(model.module, x, t))
    return np.concatenate(probs), np.concatenate(maps)


def with_square(patches, square: SquareArtefact) -> np.ndarray:
    """Test images with the square on every tumour-labelled patch (as in that model's training)."""
    images = np.array(patches.images, copy=True)
    tumour = np.asarray(patches.labels) == TUMOUR
    if tumour.any():
        images[tumour] = add_square(images[tumour], size=square.size, color=square.color,
                                    position=square.position)
    return images


def _iou(spot, square: SquareArtefact) -> float:
    r0, c0 = square.position
    rr = max(0, min(spot.row + spot.size, r0 + square.size) - max(spot.row, r0))
    cc = max(0, min(spot.col + spot.size, c0 + square.size) - max(spot.col, c0))
    inter = rr * cc
    return inter / (spot.size ** 2 + square.size ** 2 - inter)


def square_diagnostic(model, images, labels, square: SquareArtefact) -> dict:
    """Tumour-class mean heatmap of ``model`` on ``images``: enrichment in the square, hotspot."""
    probs, maps = predict_and_explain(model, images)
    pred = probs.argmax(1)
    means = class_mean_heatmaps(maps, pred, class_names=CLASS_NAMES)
    out = {"accuracy": float(np.mean(pred == labels)), "n_predicted": {
        k: v["count"] for k, v in means.items()}, "mean_maps": {k: v["mean"] for k, v in
                                                               means.items()}}
    if "tumour" not in means:
        out.update(enrichment=None, hotspot=None, hotspot_at_square=False, flagged=False)
        return out
    tumour_mean = means["tumour"]["mean"]
    r, c = square.position
    win = window_enrichment(tumour_mean, row=r, col=c, height=square.size)
    spot = find_hotspot(tumour_mean, sign="positive", label="tumour")
    iou = _iou(spot, square)
    flag = spot.flag()
    out.update(enrichment=float(win["enrichment"]), share_in_square=float(win["share"]),
               area_share=float(win["area_share"]), hotspot=spot.to_dict(), hotspot_iou=iou,
               hotspot_at_square=bool(iou >= 0.25), hotspot_flag=flag,
               flagged=bool(flag is not None and iou >= 0.25))
    return out


def run_square_checks(models: dict, test) -> dict:
    """Check (1) for every square model against the clean model on the same test images."""
    labels = np.asarray(test.labels)
    results = {}
    for name, m in models.items():
        if m.square is None:
            continue
        images = with_square(test, m.square)
        biased = square_diagnostic(m, images, labels, m.square)
        clean = square_diagnostic(models["clean"], images, labels, m.square)
        biased_ok = bool(biased["enrichment"] is not None
                         and biased["enrichment"] >= SQUARE_ARTEFACT_MIN_ENRICHMENT
                         and biased["flagged"])
        clean_ok = bool(clean["enrichment"] is None
                        or (clean["enrichment"] < SQUARE_ARTEFACT_MIN_ENRICHMENT
                            and not clean["flagged"]))
        results[name] = {"square": m.square.__dict__ | {"description": m.square.describe()},
                         "biased": biased, "clean": clean, "biased_flagged": biased_ok,
                         "clean_not_flagged": clean_ok, "pass": biased_ok and clean_ok,
                         "accuracy_without_square": m.metrics.get("held_out", {}).get("accuracy"),
                         "accuracy_with_square": biased["accuracy"]}
    return results


def _profiles(models: dict, patches) -> dict:
    labels = np.asarray(patches.labels)
    out = {}
    for name in ("clean", "centre-label"):
        probs, maps = predict_and_explain(models[name], patches.images)
        share = np.abs(maps) / np.maximum(np.abs(maps).sum((1, 2), keepdims=True), 1e-12)
        out[name] = {"profile": centre_bias_profile(maps).to_dict(), "mean_abs_map": share.mean(0),
                     "accuracy": float(np.mean(probs.argmax(1) == labels))}
    c, b = out["clean"]["profile"], out["centre-label"]["profile"]
    ratio = b["centre_enrichment"] / c["centre_enrichment"]
    out["steepness"] = {"clean_concentration": c["concentration"],
                        "biased_concentration": b["concentration"],
                        "clean_centre_enrichment": c["centre_enrichment"],
                        "biased_centre_enrichment": b["centre_enrichment"],
                        "enrichment_ratio": ratio, "clean_flag": c["flag"], "biased_flag": b["flag"]}
    # the diagnostic's own flag (metrics: centre enrichment >= 2x) must fire for the biased
    # model only, and its profile must be steeper (larger concentration)
    out["pass"] = bool(b["flag"] and not c["flag"] and b["concentration"] > c["concentration"])
    return out


def run_centre_check(models: dict, test, test_centred) -> dict:
    """Check (2a): centre-bias profiles of the clean and the centre-label model.

    Measured on the centre-label model's own kind of patches (held-out, centred on a cell, no
    translation: seed 000's setting) and, for reference, on randomly placed patches.
    """
    out = _profiles(models, test_centred)
    out["patches"] = "held-out patches centred on a cell (the centre-label model's test set)"
    out["random_position"] = _profiles(models, test)
    return out


def tile(rgb: np.ndarray, ps: int) -> np.ndarray:
    """Non-overlapping ps x ps patches of the top-left whole-patch part of an image."""
    n_r, n_c = rgb.shape[0] // ps, rgb.shape[1] // ps
    a = rgb[:n_r * ps, :n_c * ps].reshape(n_r, ps, n_c, ps, -1).transpose(0, 2, 1, 3, 4)
    return a.reshape(n_r * n_c, ps, ps, rgb.shape[2])


def untile(maps: np.ndarray, shape, ps: int) -> np.ndarray:
    """Patch maps back on the image grid; NaN where no whole patch fits."""
    n_r, n_c = shape[0] // ps, shape[1] // ps
    out = np.full(shape[:2], np.nan, np.float32)
    out[:n_r * ps, :n_c * ps] = maps.reshape(n_r, n_c, ps, ps).transpose(0, 2, 1, 3).reshape(
        n_r * ps, n_c * ps)
    return out


def field_heatmaps(models: dict, fields, names, ps: int) -> dict:
    """Tumour-class LRP maps of each model over every tissue field (patch grid, no overlap)."""
    out = {}
    for name in names:
        out[name] = [untile(predict_and_explain(models[name], tile(f.rgb, ps), target=TUMOUR)[1],
                            f.rgb.shape, ps) for f in fields]
    return out


def offcentre_distance(rows, cols, ps: int) -> np.ndarray:
    """Chebyshev distance (px) of each point to the centre pixel of its grid patch."""
    return np.maximum(np.abs(np.floor(rows) % ps - ps // 2), np.abs(np.floor(cols) % ps - ps // 2))


def run_cell_check(heat: dict, fields, *, ps: int, mpp: float, radius_um: float) -> dict:
    """Check (2b): cell-level AUC (tumour vs other cells) on off-centre and centred cells."""
    classes = np.concatenate([np.asarray(f.cells.classes).astype(str) for f in fields])
    dist = np.concatenate([offcentre_distance(f.cells.rows, f.cells.cols, ps) for f in fields])
    groups = {"all": np.ones(dist.size, bool), "off-centre": dist >= ps // 4,
              "centre": dist < ps // 8}
    out = {"groups": {"off-centre": f"cells >= {ps // 4} px (Chebyshev) from their patch centre",
                      "centre": f"cells < {ps // 8} px from their patch centre"}}
    for name in ("clean", "centre-label"):
        scores = np.concatenate([cell_scores(h, f.cells, radius_um=radius_um, mpp=mpp)
                                 for h, f in zip(heat[name], fields)])
        out[name] = {g: cell_roc(scores[m], classes[m], positive=("tumour",)).to_dict(curve=False)
                     for g, m in groups.items()}
    a_clean = out["clean"]["off-centre"]["auc"]
    a_bias = out["centre-label"]["off-centre"]["auc"]
    out["offcentre_auc"] = {"clean": a_clean, "centre-label": a_bias,
                            "difference": a_bias - a_clean}
    out["pass"] = bool(a_bias < a_clean)
    return out


def mosaic(fields, heat: dict, ps: int):
    """Fields side by side: one map per model and necrosis regions shifted into place."""
    from ..annotations import RegionShape

    offsets = np.cumsum([0] + [f.rgb.shape[1] for f in fields[:-1]])
    maps = {k: np.concatenate(v, axis=1) for k, v in heat.items()}
    regions = []
    for f, off in zip(fields, offsets):
        for r in f.regions:
            if r.cls == "necrosis":
                regions.append(RegionShape(r.cls, r.exterior + [0, off],
                                           [h + [0, off] for h in r.holes], r.name, r.id))
    return maps, regions, offsets


def run_necrosis_check(heat: dict, fields, ps: int) -> dict:
    """Check (3): mean tumour relevance on necrosis, clean vs necrosis-excluded model."""
    maps, regions, _ = mosaic(fields, heat, ps)
    if not regions:
        return {"pass": False, "error": "no necrosis region in the tissue fields"}
    scale = {k: float(np.nanmax(np.abs(v))) for k, v in maps.items()}
    cmp = compare_region_relevance(maps["clean"] / scale["clean"],
                                   maps["no-necrosis"] / scale["no-necrosis"], regions,
                                   classes=["necrosis"], label_a="clean", label_b="no-necrosis")
    pc = cmp.per_class.get("necrosis")
    if pc is None:
        return {"pass": False, "error": "necrosis regions lie outside the tiled fields"}
    out = {"comparison": cmp.to_dict(), "normalisation": "each model's map / its global max |R|",
           "mean_clean": pc["mean_clean"], "mean_no_necrosis": pc["mean_no-necrosis"],
           "n_regions": pc["n_regions"], "flags": cmp.flags}
    out["pass"] = bool(pc["mean_no-necrosis"] > 0 and not pc["mean_clean"] > 0)
    return out
