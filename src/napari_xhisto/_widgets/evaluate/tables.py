"""What Evaluate's tables, captions and files say, from its result dict (no Qt, no viewer).

Every AUC is shown with its 95% interval and the cells it was measured on; comparing heatmaps
adds the paired difference with its interval and DeLong's p; the captions state the conventions
the numbers follow (rectified maps, the disc, the bootstrap, the threshold grid), and the CSV
and JSON files carry the same.
"""

from __future__ import annotations

import numpy as np

from .plots import per_heatmap, threshold_label


def fmt(v) -> str:
    """A number as the tables show it (4 significant digits; NaN and None as "–")."""
    if v is None or (isinstance(v, float | np.floating) and np.isnan(v)):
        return "–"
    return f"{v:.4g}" if isinstance(v, float | np.floating) else str(v)


def interval(entry: dict | None, digits: int = 3) -> str:
    """``[low, high]`` of an interval entry ("–" when there is none)."""
    if not entry or entry.get("low") is None or entry.get("high") is None:
        return "–"
    return f"[{entry['low']:.{digits}f}, {entry['high']:.{digits}f}]"


def auc_rows(result: dict) -> list[list[str]]:
    """``heatmap``, ``AUC [95% interval]`` over ``n = positive + / negative −`` per heatmap,
    then the baselines of the first (two columns: the dock is narrow)."""
    rows = []
    for name, m in per_heatmap(result).items():
        if "roc" not in m:
            continue
        roc = m["roc"]
        rows.append([name, f"{fmt(roc['auc'])} {interval(roc.get('ci'))}\n"
                           f"n = {roc['n_positive']} + / {roc['n_negative']} −"])
    b = result.get("baselines")
    if rows and b:
        rows += [["all-zero map", fmt(b["all_zero"])], ["all-one map", fmt(b["all_one"])],
                 [f"random maps (± {fmt(b['random_std'])})", fmt(b["random_mean"])]]
    return rows


def difference_rows(result: dict) -> list[list[str]]:
    """``B − A`` and ``difference [95% interval]`` over ``p = … (DeLong)`` for every pair
    (two lines each: the dock is narrow)."""
    rows = []
    for c in result.get("auc_comparisons") or ():
        pair = f"{c['b']}\n− {c['a']}"
        if "difference" not in c:
            rows.append([pair, c.get("error", "–")])
            continue
        rows.append([pair, f"{c['difference']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]\n"
                           f"p = {c['delong_p']:.2g} (DeLong)"])
    return rows


def radius_headers(result: dict) -> list[str]:
    """``radius µm`` then one column per heatmap with a sweep (long names wrapped)."""
    names = [n for n, m in per_heatmap(result).items() if m.get("radius_sweep")]
    return ["radius µm"] + [wrap(n) for n in names]


def radius_rows(result: dict) -> list[list[str]]:
    """One row per radius of the sweep: the radius, then ``AUC`` over ``[95% interval]`` of
    each heatmap (the same radii for all)."""
    sweeps = [m["radius_sweep"] for m in per_heatmap(result).values() if m.get("radius_sweep")]
    if not sweeps:
        return []
    return [[f"{entries[0]['radius_um']:g}"]
            + [f"{fmt(e.get('auc'))}\n{interval(e)}" for e in entries]
            for entries in zip(*sweeps)]


def wrap(name: str, width: int = 14) -> str:
    """A long layer name on several lines (the dock is narrow)."""
    import textwrap

    return "\n".join(textwrap.wrap(name, width) or [name])


def localisation_rows(result: dict) -> list[list[str]]:
    """``heatmap, PxAP, percentile, Dice, IoU, hits`` of every heatmap (the heatmap named on
    the first row of its group; the region class is the one chosen, named in the caption)."""
    rows = []
    for name, m in per_heatmap(result).items():
        for loc in (m.get("localization") or {}).values():
            for k, q in enumerate(loc.get("at_percentiles") or [None]):
                first = [wrap(name) if k == 0 else "", fmt(loc["pxap"]) if k == 0 else ""]
                if q is None:
                    rows.append(first + ["", "", "", ""])
                    continue
                rows.append(first + [fmt(q["percentile"]), fmt(q["dice"]), fmt(q["iou"]),
                                     f"{q['weak_hits']}/{q['weak_n_true']}"])
    return rows


def auc_caption(result: dict) -> str:
    """The conventions of the cell AUCs, in plain words."""
    p, conv = result.get("parameters") or {}, result.get("conventions") or {}
    if "roc" not in result:
        skipped = (result.get("cells") or {}).get("roc_skipped")
        return f"No cell AUC: {skipped}." if skipped else ""
    cell_map = (conv.get("cell_scores") or {}).get("map", "rectified")
    ci = result["roc"].get("ci") or {}
    level = 100 * float(ci.get("level", p.get("ci_level", 0.95)))
    text = (f"Cell score: mean of the {cell_map} map (max(v, 0): evidence for the class) over "
            f"a {p.get('radius_um', 0):g} µm disc around each cell. AUC [{level:.0f}% "
            f"interval]: percentile bootstrap over cells ({ci.get('n_boot', p.get('n_boot'))} "
            f"resamples, seed {ci.get('seed', p.get('seed', 0))}); n = positive / negative "
            "cells scored (the same cells for every heatmap).")
    if result.get("auc_comparisons"):
        text += (" Differences: the same cells resampled in pairs; p: DeLong's test of equal "
                 "AUCs.")
    return text


def localisation_caption(result: dict) -> str:
    """The conventions of the localisation numbers and curves."""
    loc = (result.get("conventions") or {}).get("localization") or {}
    if not any(m.get("localization") for m in per_heatmap(result).values()):
        return ""
    step = (result.get("parameters") or {}).get("threshold_step", 0.001)
    region = next(iter(result.get("localization") or {}), None)
    return ((f"Region to outline: {region}. " if region else "") + f"Maps read {loc.get('map', 'rectified')} (max(v, 0)), then min-max scaled to "
            f"[0, 1] over the explained pixels; PxAP and the curves on thresholds every {step:g} "
            "(the WSOL evaluator's grid); percentiles of the rectified values. "
            f"X axis: {threshold_label(result)}.")


def radius_caption(result: dict) -> str:
    if not radius_rows(result):
        return ""
    ci = (result.get("roc") or {}).get("ci") or {}
    return ("Cell AUC against the neighbourhood radius (the disc a cell's score averages "
            f"over), each heatmap on the same cells; bands: {100 * ci.get('level', 0.95):.0f}% "
            "bootstrap intervals. Method rankings can change with the radius.")


def csv_rows(result: dict, comparison=None) -> list[dict]:
    """One dict per row for the CSV: AUCs with intervals, differences, the radius sweep,
    localisation, tiles, regions, the per-region comparison and the conventions."""
    out: list[dict] = []
    for name, m in per_heatmap(result).items():
        if "roc" in m:
            ci = m["roc"].get("ci") or {}
            out.append({"table": "auc", "heatmap": name, "name": "heatmap", "auc": m["roc"]["auc"],
                        "low": ci.get("low"), "high": ci.get("high"), "level": ci.get("level"),
                        "n_boot": ci.get("n_boot"), "n_positive": m["roc"]["n_positive"],
                        "n_negative": m["roc"]["n_negative"]})
            for k in ("all_zero", "all_one", "random_mean"):
                out.append({"table": "auc", "heatmap": name, "name": k,
                            "auc": m["baselines"][k]})
        for e in m.get("radius_sweep") or ():
            out.append({"table": "radius_sweep", "heatmap": name, "radius_um": e["radius_um"],
                        "auc": e.get("auc"), "low": e.get("low"), "high": e.get("high"),
                        "level": e.get("level"), "n_scored": e.get("n_scored")})
        for cls, loc in (m.get("localization") or {}).items():
            out.append({"table": "localisation", "heatmap": name, "name": cls,
                        "pxap": loc["pxap"], **{f"mean_{k}": v for k, v in
                                                (loc.get("mean_rates") or {}).items()}})
    for c in result.get("auc_comparisons") or ():
        out.append({"table": "auc_difference", "heatmap": c["b"], "name": f"minus {c['a']}",
                    "difference": c.get("difference"), "low": c.get("low"),
                    "high": c.get("high"), "delong_p": c.get("delong_p")})
    out += [{"table": "tile", **t} for t in result.get("per_tile", [])]
    out += [{"table": "region", **g} for g in result.get("regions", [])]
    if comparison is not None:
        out += [{"table": "comparison", **row} for row in comparison.rows()]
    for metric, conv in (result.get("conventions") or {}).items():
        out.append({"table": "convention", "name": metric, "map": conv.get("map"),
                    "how": conv.get("how")})
    return out


TOP_LEVEL = ("explained_area", "bias", "comparison", "layers")


def without_scores(result: dict) -> dict:
    """The result for the JSON file, without the per-cell score arrays: one heatmap as
    ``xhisto evaluate`` writes one; several in its multi-heatmap form (``labels``,
    ``heatmaps``, ``auc_comparisons``), so the report and other tools read both alike."""
    def strip(m: dict) -> dict:
        data = {k: v for k, v in m.items()
                if k not in ("cells", "compared", "auc_comparisons")}
        if "cells" in m:
            data["cells"] = {k: v for k, v in m["cells"].items() if k != "scores"}
        return data

    if not result.get("compared"):
        return strip(result)
    heatmaps = {name: strip(m) for name, m in per_heatmap(result).items()}
    first = next(iter(heatmaps.values()))
    top = {k: first.pop(k) for k in TOP_LEVEL if k in first}
    return {"labels": list(heatmaps), "heatmaps": heatmaps,
            "auc_comparisons": result.get("auc_comparisons", []), **top}
