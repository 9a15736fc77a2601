"""``summary.json`` (every number and each check's pass/fail) and ``summary.md`` (plain words)."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import torch

from .config import SQUARE_ARTEFACT_MIN_ENRICHMENT
from .evaluate import METHOD


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items() if k not in ("mean_maps",
                                                                          "mean_abs_map")}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def build_summary(cfg, models, squares, centre, cells, necrosis, times, files) -> dict:
    """Everything a run measured, with the checks of issue 8."""
    checks = {f"square_{name[len('square-'):]}": bool(v["pass"]) for name, v in squares.items()}
    checks["square_biased_flagged"] = all(v["biased_flagged"] for v in squares.values())
    checks["square_clean_not_flagged"] = all(v["clean_not_flagged"] for v in squares.values())
    checks["centre_profile_steeper"] = bool(centre["pass"])
    checks["centre_offcentre_auc_lower"] = bool(cells["pass"])
    checks["necrosis_positive_only_when_excluded"] = bool(necrosis["pass"])
    return _jsonable({
        "checks": checks,
        "all_pass": all(checks.values()),
        "method": METHOD,
        "config": cfg.to_dict(),
        "thresholds": {"square_min_enrichment": SQUARE_ARTEFACT_MIN_ENRICHMENT,
                       "hotspot_at_square_min_iou": 0.25,
                       "centre_flag_min_enrichment": 2.0},
        "models": {k: {"bias": m.bias, "held_out": m.metrics.get("held_out"),
                       "held_out_with_square": m.metrics.get("held_out_with_square"),
                       "parameters": m.spec.training.get("parameters"),
                       "train_seconds": m.spec.training.get("seconds")}
                   for k, m in models.items()},
        "class_correlated_square": squares,
        "centre_bias": {"steepness": centre["steepness"], "pass": centre["pass"],
                        "patches": centre["patches"],
                        "profiles": {k: centre[k]["profile"] for k in ("clean", "centre-label")},
                        "accuracy": {k: centre[k]["accuracy"] for k in ("clean", "centre-label")},
                        "random_position_patches": {
                            "steepness": centre["random_position"]["steepness"],
                            "pass": centre["random_position"]["pass"]}},
        "cell_level": cells,
        "necrosis": necrosis,
        "seconds": {k: round(v, 1) for k, v in times.items()},
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "cpu": platform.processor() or platform.machine(),
                    "threads": cfg.threads},
        "files": [Path(f).name for f in files] + ["summary.json", "summary.md"],
    })


def _f(value, fmt: str, unit: str = "") -> str:
    return "n/a" if value is None else format(value, fmt) + unit


def _spot(res: dict) -> str:
    h = res.get("hotspot")
    return "none" if not h else f"{h['size']} px at ({h['row']}, {h['col']})"


def _yes(ok) -> str:
    return "yes" if ok else "**NO**"


def summary_markdown(s: dict) -> str:
    """A table a pathologist can read: what was wrong with each model and whether it was caught."""
    lines = ["# Bias lab (seed 000 on synthetic tissue)", "",
             f"Heatmaps: LRP `{s['method']}` for the class 'tumour' (red = evidence for tumour). "
             f"Run {'quick' if s['config']['quick'] else 'full'}, seed {s['config']['seed']}, "
             f"{s['config']['patch_size']} px patches at {s['config']['mpp']} µm/px, "
             f"{s['config']['n_train']} training patches x {s['config']['epochs']} epochs, "
             f"{s['config'].get('necrosis', 'classic')!r} necrosis (`napari_xhisto.synth.necrosis`)"
             ".", "",
             "| Model | What was wrong with its training | Diagnostic | Measured | Clean model "
             "| Caught? |", "|---|---|---|---|---|---|"]
    for name, v in s["class_correlated_square"].items():
        b, c = v["biased"], v["clean"]
        lines.append(
            f"| {name} | {v['square']['description']} on every tumour patch | share of tumour "
            f"relevance in the square / its area share; hotspot scan | {_f(b['enrichment'], '.0f', 'x')},"
            f" hotspot {_spot(b)} | {_f(c['enrichment'], '.1f', 'x')}, hotspot "
            f"{'flagged' if c['flagged'] else 'none at the square'}"
            f" | {_yes(v['pass'])} |")
    st = s["centre_bias"]["steepness"]
    lines.append(
        f"| centre-label | label = class of the centre cell, no shifted patches | relevance in "
        f"the central 10% of the patch / its area share (flag at >= 2x) | {st['biased_centre_enrichment']:.2f}x "
        f"(concentration {st['biased_concentration']:+.2f}) | {st['clean_centre_enrichment']:.2f}x"
        f" ({st['clean_concentration']:+.2f}) | {_yes(s['centre_bias']['pass'])} |")
    oc = s["cell_level"]["offcentre_auc"]
    lines.append(
        f"| centre-label | (same) | cell-level AUC, tumour cells vs others, away from the patch "
        f"centre | {_f(oc['centre-label'], '.3f')} | {_f(oc['clean'], '.3f')} | "
        f"{_yes(s['cell_level']['pass'])} |")
    n = s["necrosis"]
    if "mean_clean" in n:
        regs = n["comparison"]["regions"]
        pos_b = sum(r["mean_no-necrosis"] > 0 for r in regs)
        pos_a = sum(r["mean_clean"] > 0 for r in regs)
        lines.append(
            f"| no-necrosis | necrosis left out of training | mean tumour relevance on "
            f"{n['n_regions']} necrosis regions | {n['mean_no_necrosis']:+.4f} (positive in "
            f"{pos_b} of {len(regs)}) | {n['mean_clean']:+.4f} ({pos_a} of {len(regs)}) | "
            f"{_yes(n['pass'])} |")
    else:
        lines.append(f"| no-necrosis | necrosis left out | - | {n.get('error')} | - | **NO** |")
    lines += ["", "How to read it: a clean model spreads its evidence over the cells; a square "
              f"holding >= {s['thresholds']['square_min_enrichment']:.0f}x its share, relevance "
              "piled up at the patch centre, or positive tumour evidence on necrosis are signs "
              "that the model learnt something other than tumour morphology.", "",
              "Patch accuracy on held-out tissue (square models: with the square on tumour "
              "patches):", "", "| Model | accuracy | AUC |", "|---|---|---|"]
    for k, m in s["models"].items():
        h = m.get("held_out_with_square") or m.get("held_out") or {}
        auc = h.get("auc")
        lines.append(f"| {k} | {h.get('accuracy', float('nan')):.3f} | "
                     f"{'-' if auc is None else f'{auc:.3f}'} |")
    lines += ["", "Checks: " + ", ".join(f"{k} {'pass' if v else 'FAIL'}"
                                         for k, v in s["checks"].items()), "",
              "Figures: " + ", ".join(f for f in s["files"] if f.endswith(".png")), ""]
    return "\n".join(lines)


def write_summary(out_dir, summary: dict) -> list[Path]:
    out_dir = Path(out_dir)
    pj, pm = out_dir / "summary.json", out_dir / "summary.md"
    pj.write_text(json.dumps(summary, indent=1, allow_nan=False))
    pm.write_text(summary_markdown(summary))
    return [pj, pm]
