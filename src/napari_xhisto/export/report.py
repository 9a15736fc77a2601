"""One self-contained HTML report: slide facts, provenance, snapshots, metrics tables and plots.

Images are PNG, base64-embedded, so the single file can be mailed or archived. Metrics are
taken as the dict ``xhisto evaluate`` writes for one heatmap (``roc`` with its interval,
``baselines``, ``per_tile``, ``radius_sweep``, ``regions``, ``localization``, ``conventions``,
optional ``centre_bias``) or for several (``heatmaps``, ``auc_comparisons``): AUCs are shown
with their intervals, the radius sweep and the localisation-vs-threshold curves of every
heatmap as figures (`figures`); anything else is shown as a plain table. The target class is
named, not given as an index.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from .tiled_writer import check_writable

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:left;font-size:.9em}th{background:#f3f3f3}figure{display:inline-block;margin:.5em}
figcaption{font-size:.85em;color:#555}img{max-width:100%}.note{color:#666;font-size:.85em}
"""


def _fmt(value) -> str:
    if isinstance(value, float | np.floating):
        return "NaN" if not math.isfinite(value) else f"{value:.4g}"
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str)[:200]
    return str(value)


def table(rows, *, header=None) -> str:
    """An HTML table from rows (lists) or a dict (two columns: key, value); cells are escaped."""
    if isinstance(rows, dict):
        rows = list(rows.items())
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def png_img(png: bytes, *, caption: str = "", alt: str = "") -> str:
    """A <figure> holding ``png`` as a data URI."""
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return (f'<figure><img alt="{html.escape(alt or caption)}" '
            f'src="data:image/png;base64,{data}"/>{cap}</figure>')


def _figure_png(draw, *, size=(4.2, 3.6)) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    draw(ax)
    fig.tight_layout()
    return figure_png(fig)


def figure_png(fig) -> bytes:
    """A matplotlib Figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def roc_png(roc: dict, baselines: dict | None = None) -> bytes:
    """The cell-level ROC curve with the chance diagonal."""
    def draw(ax):
        ci = _ci_text(roc.get("ci")).split(" (")[0]
        ax.plot(roc["fpr"], roc["tpr"], color="C3", lw=2,
                label=f"heatmap (AUC {roc['auc']:.3f} {ci})".replace(" )", ")"))
        ax.plot([0, 1], [0, 1], color="0.6", ls="--", label="chance")
        if baselines and baselines.get("random_mean") is not None:
            ax.plot([], [], " ", label=f"random heatmaps {baselines['random_mean']:.3f}")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_title("cell-level ROC")
        ax.legend(loc="lower right", fontsize=8)
    return _figure_png(draw)


def centre_bias_png(profile: dict) -> bytes:
    """Share of relevance vs share of area in nested squares around the patch centre."""
    def draw(ax):
        sides = np.asarray(profile["sides"], float)
        ax.plot(sides, profile["area_share"], color="0.5", ls="--", marker="o", ms=3, label="area share")
        ax.plot(sides, profile["relevance_share"], color="C0", marker="o", ms=3, label="relevance share")
        ax.set_xlabel("side of the centred square (fraction of patch)")
        ax.set_ylabel("cumulative share")
        ax.set_title("centre-bias profile")
        ax.legend(fontsize=8)
    return _figure_png(draw)


def slide_facts(slide) -> dict:
    """The facts a reader needs about a slide (accepts a Slide or a dict of facts)."""
    if slide is None:
        return {}
    if isinstance(slide, dict):
        return dict(slide)
    facts = {"file": Path(str(getattr(slide, "path", ""))).name,
             "backend": getattr(slide, "backend", None), "vendor": getattr(slide, "vendor", None),
             "level-0 size (rows x cols)": " x ".join(str(n) for n in getattr(slide, "dimensions", ())),
             "levels": getattr(slide, "level_count", None),
             "µm per pixel": getattr(slide, "mpp", None)}
    dims = getattr(slide, "dimensions", None)
    mpp = getattr(slide, "mpp", None)
    if dims and mpp:
        facts["size in mm"] = f"{dims[0] * mpp / 1000:.2f} x {dims[1] * mpp / 1000:.2f}"
    return {k: v for k, v in facts.items() if v not in (None, "")}


def heatmap_facts(source) -> dict:
    """Provenance and geometry of a heatmap (a tile source or a HeatmapFile)."""
    if source is None:
        return {}
    facts = {}
    prov = dict(getattr(source, "provenance", {}) or {})
    name = target_name(prov)
    prov.pop("target_class", None)
    for key in ("kind", "model", "method", "target", "normalize", "params", "parameters", "region",
                "stored_dtype"):
        if key in prov:
            facts[key] = prov.pop(key)
    if name is not None:
        facts["target"] = name
    for key, value in prov.items():
        facts[key] = value
    p = getattr(source, "placement", None)
    shape = getattr(source, "shape", None) or getattr(getattr(source, "values", None), "shape", None)
    if shape is not None:
        facts["map size (rows x cols)"] = " x ".join(str(n) for n in shape)
    if p is not None:
        facts["origin on level 0 (row, col)"] = f"{p.origin_row:g}, {p.origin_col:g}"
        facts["level-0 px per map px"] = f"{p.step_row:g} x {p.step_col:g}"
    if getattr(source, "mpp", None):
        facts["slide µm per pixel"] = source.mpp
    return facts


def target_name(provenance: dict) -> str | None:
    """The target class by name, its index in brackets ("tumour (class 1)"), from provenance.

    Examples
    --------
    >>> target_name({"target": 1, "target_class": "tumour"})
    'tumour (class 1)'
    >>> target_name({"target": 1, "model": {"class_names": ["stroma", "tumour"]}})
    'tumour (class 1)'
    """
    prov = provenance or {}
    index, name = prov.get("target"), prov.get("target_class")
    if name is None and isinstance(index, int | np.integer):
        classes = (prov.get("model") or {}).get("class_names") if isinstance(
            prov.get("model"), dict) else prov.get("class_names")
        if classes and 0 <= int(index) < len(classes):
            name = classes[int(index)]
    if name is None:
        return None if index is None else f"class index {index} (class names not recorded)"
    return str(name) if index is None else f"{name} (class {index})"


def annotation_counts(annotations) -> list[list]:
    """Rows ``[kind, class, count]`` for cells and regions of an AnnotationSet."""
    rows = []
    if annotations is None:
        return rows
    for cls, n in sorted(Counter(np.asarray(annotations.cells.classes).astype(str).tolist()).items()):
        rows.append(["cells", cls, n])
    for cls, n in sorted(Counter(r.cls for r in annotations.regions).items()):
        rows.append(["regions", cls, n])
    return rows


def _ci_text(ci: dict | None) -> str:
    if not ci or ci.get("low") is None:
        return ""
    return (f"[{ci['low']:.3f}, {ci['high']:.3f}] ({100 * ci['level']:.0f}% bootstrap, "
            f"n_boot {ci['n_boot']}, seed {ci['seed']})")


def _figures(metrics: dict) -> list[str]:
    from .figures import (
        radius_sweep_figure,
        sweeps_of,
        threshold_curves_figure,
        threshold_curves_of,
    )

    parts = []
    sweeps = sweeps_of(metrics)
    if sweeps:
        parts.append("<h3>AUC against disc radius</h3>" + png_img(
            figure_png(radius_sweep_figure(sweeps)), caption="cell AUC against the disc radius, "
            "with bootstrap intervals", alt="radius sweep"))
    region, curves = threshold_curves_of(metrics)
    if curves:
        parts.append("<h3>Localisation against threshold</h3>" + png_img(
            figure_png(threshold_curves_figure(curves, region_class=region)),
            caption=f"Dice and TP/FP/FN/TN rates against the threshold, '{region}'",
            alt="threshold curves"))
    return parts


def _comparison_sections(metrics: dict) -> list[str]:
    rows = []
    for label, m in metrics["heatmaps"].items():
        roc = m.get("roc") or {}
        loc = m.get("localization") or {}
        rows.append([label, roc.get("auc"), _ci_text(roc.get("ci")), roc.get("n_positive"),
                     roc.get("n_negative"), "; ".join(f"{k} {v.get('pxap'):.3f}"
                                                     for k, v in loc.items())])
    parts = ["<h3>Heatmaps</h3>" + table(rows, header=["heatmap", "cell AUC", "interval",
                                                       "positive", "negative", "PxAP"])]
    comps = [[c["b"] + " - " + c["a"], c.get("difference"),
              f"[{c['low']:+.3f}, {c['high']:+.3f}]" if "low" in c else c.get("error", ""),
              c.get("delong_p")] for c in metrics.get("auc_comparisons", [])]
    if comps:
        parts.append("<h3>AUC differences (same cells)</h3>" + table(
            comps, header=["difference", "AUC difference", "paired bootstrap interval",
                           "DeLong p"]))
    parts += _figures(metrics)
    for label, m in metrics["heatmaps"].items():
        parts.append(f"<h3>{html.escape(label)}</h3>")
        parts += _single_sections(m, figures=False)
    return parts


def metrics_sections(metrics: dict) -> list[str]:
    """HTML for an ``xhisto evaluate`` metrics dict (one heatmap or several)."""
    if isinstance(metrics.get("heatmaps"), dict):
        return _comparison_sections(metrics)
    return _single_sections(metrics)


def _single_sections(metrics: dict, *, figures: bool = True) -> list[str]:
    """Summary, ROC, tiles, regions, localisation, figures of one heatmap's metrics."""
    parts, m = [], dict(metrics)
    roc = m.pop("roc", None)
    baselines = m.pop("baselines", None)
    cells = m.pop("cells", None)
    if roc:
        summary = {"cell AUC": roc["auc"], "interval": _ci_text(roc.get("ci")),
                   "positive cells": roc.get("n_positive"),
                   "negative cells": roc.get("n_negative"), "positive classes": roc.get("positive")}
        if cells:
            summary["cells off the heatmap"] = cells.get("n_off_heatmap")
        for key, value in (baselines or {}).items():
            summary[f"baseline: {key}"] = value
        parts.append("<h3>Cell-level ROC</h3>" + table(summary))
        if roc.get("fpr") and roc.get("tpr"):
            parts.append(png_img(roc_png(roc, baselines), caption="cell-level ROC", alt="ROC curve"))
    elif cells and cells.get("roc_skipped"):
        parts.append("<h3>Cell-level ROC</h3><p>Not computed: "
                     f"{html.escape(cells['roc_skipped'])}.</p>")
    tiles = m.pop("per_tile", None)
    if tiles:
        keys = list(tiles[0])
        worst = sorted(tiles, key=lambda t: (t.get("auc") is None or not math.isfinite(t.get("auc", 0)),
                                             t.get("auc", 0)))[:15]
        parts.append("<h3>Per-tile AUC (worst first)</h3>" + table([[t.get(k) for k in keys] for t in worst],
                                                                      header=keys))
    regions = m.pop("regions", None)
    if regions:
        keys = list(regions[0])
        parts.append("<h3>Relevance per region</h3>" + table([[r.get(k) for k in keys] for r in regions],
                                                             header=keys))
    loc = m.pop("localization", None)
    if loc:
        rows = [[name, e.get("pxap"), e.get("threshold_step"), e.get("convention"),
                 _fmt(e.get("mean_rates"))] for name, e in loc.items()]
        parts.append("<h3>Localisation</h3>" + table(rows, header=[
            "region class", "PxAP", "threshold step", "convention", "mean rates"]))
        pct = [[name, q["percentile"], q["threshold"], q["dice"], q["iou"], q["hausdorff"],
                q.get("hausdorff_um")] for name, e in loc.items() for q in e.get("at_percentiles", [])]
        if pct:
            parts.append(table(pct, header=["region class", "percentile", "threshold", "Dice", "IoU",
                                            "Hausdorff (level-0 px)", "Hausdorff (µm)"]))
    sweep = m.pop("radius_sweep", None)
    if figures:
        parts += _figures({"radius_sweep": sweep, "localization": loc})
    conventions = m.pop("conventions", None)
    if conventions:
        parts.append("<h3>Conventions</h3>" + table(
            [[k, v.get("map", ""), v.get("how", "")] for k, v in conventions.items()],
            header=["metric", "map read as", "how"]))
    m.pop("units", None)
    for key in ("centre_bias", "center_bias", "centre_bias_profile"):
        profile = m.pop(key, None)
        if profile and "sides" in profile:
            rest = {k: v for k, v in profile.items() if k not in ("sides", "area_share", "relevance_share")}
            parts.append("<h3>Centre bias</h3>" + table(rest)
                         + png_img(centre_bias_png(profile), caption="centre-bias profile", alt="centre bias"))
    m.pop("inputs", None)
    for key, value in m.items():
        if isinstance(value, dict):
            parts.append(f"<h3>{html.escape(key)}</h3>" + table(value))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            keys = list(value[0])
            parts.append(f"<h3>{html.escape(key)}</h3>" + table([[v.get(k) for k in keys] for v in value],
                                                                 header=keys))
        else:
            parts.append(table({key: value}))
    return parts


def build_report(*, title: str = "napari-xhisto report", slide=None, heatmap=None, snapshots=(),
                 metrics: dict | None = None, annotations=None, notes: str = "") -> str:
    """The report as an HTML string (see :func:`write_report` for the parameters)."""
    from .. import __version__

    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [f"<h1>{html.escape(title)}</h1>",
            f'<p class="note">napari-xhisto {html.escape(__version__)}, {now}</p>']
    if notes:
        body.append(f"<p>{html.escape(notes)}</p>")
    facts = slide_facts(slide)
    if facts:
        body.append("<h2>Slide</h2>" + table(facts))
    hfacts = heatmap_facts(heatmap)
    if hfacts:
        body.append("<h2>Model and method</h2>" + table(hfacts))
    if snapshots:
        body.append("<h2>Snapshots</h2>")
        for snap in snapshots:
            caption, png = snap if isinstance(snap, tuple) else (getattr(snap, "title", ""), snap)
            png = getattr(png, "png", png)
            if isinstance(png, str | Path):
                png = Path(png).read_bytes()
            body.append(png_img(png, caption=caption))
    if metrics:
        body.append("<h2>Metrics</h2>")
        body.extend(metrics_sections(metrics))
    counts = annotation_counts(annotations)
    if counts:
        body.append("<h2>Annotations</h2>" + table(counts, header=["kind", "class", "count"]))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_report(path, *, title: str = "napari-xhisto report", slide=None, heatmap=None, snapshots=(),
                 metrics: dict | None = None, annotations=None, notes: str = "",
                 overwrite: bool = False) -> Path:
    """Write one self-contained HTML report.

    Parameters
    ----------
    path : str or Path
        Output ``.html``; an existing file is refused unless ``overwrite``.
    slide : Slide or dict, optional
        Slide facts (file, backend, size, levels, µm/px).
    heatmap : ArrayTiles, HeatmapTileReader or HeatmapFile, optional
        Its provenance (model, method, normalisation ...) and placement.
    snapshots : sequence
        ``SnapshotLayout`` objects, PNG bytes/paths, or ``(caption, png)`` pairs.
    metrics : dict, optional
        As written by ``xhisto evaluate``.
    annotations : AnnotationSet, optional
        Cells and regions to count per class.
    """
    path = check_writable(path, overwrite=overwrite)
    text = build_report(title=title, slide=slide, heatmap=heatmap, snapshots=snapshots,
                        metrics=metrics, annotations=annotations, notes=notes)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
