"""Figures and files of a meta-explanation study (:class:`~napari_xhisto.explain.meta_study.MetaResult`).

- :func:`grid_figure`: the mean map per predicted class (rows) and confidence bin (columns),
  with the number of patches in each cell;
- :func:`embedding_figure`: the t-SNE embedding coloured by k-means cluster, labelled patches
  ringed in their label's colour, confident disagreements crossed, and patch thumbnails; it also
  returns where each point and thumbnail lies on the rendered image, so a viewer can tell which
  patch was clicked;
- :func:`write_meta_outputs`: both PNGs, the per-patch table (CSV and JSON), the confident
  disagreements (CSV and JSON), the summary JSON and the maps (``maps.npz``).

The result is read by attribute only (no torch here).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

DPI = 100
CLUSTER_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
                   "#17becf", "#bcbd22")
LABEL_COLOURS = ("#4c4c4c", "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd")


def _figure(size):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def render(fig) -> np.ndarray:
    """(H, W, 4) uint8 RGBA pixels of ``fig`` as drawn (same layout as its PNG)."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba()).copy()


def grid_figure(result):
    """Mean map per predicted class (rows) x confidence bin (columns); counts in each cell."""
    classes, n_bins = list(result.class_names), int(result.n_bins)
    edges = np.linspace(result.bin_low, 1.0, n_bins + 1)
    means = {(g["class"], g["bin"]): g for g in result.groups}
    peak = max((float(np.abs(g["mean"]).max()) for g in result.groups), default=1.0) or 1.0
    fig = _figure((1.45 * n_bins + 1.2, 1.6 * len(classes) + 0.9))
    axes = fig.subplots(len(classes), n_bins, squeeze=False)
    cmap, lims = ("RdBu_r", (-peak, peak)) if result.signed else ("inferno", (0.0, peak))
    image = None
    for r, cls in enumerate(classes):
        for b in range(n_bins):
            ax = axes[r, b]
            ax.set_xticks([])
            ax.set_yticks([])
            g = means.get((cls, b))
            if g is None:
                ax.set_facecolor("#eeeeee")
                ax.text(0.5, 0.5, "n = 0", ha="center", va="center", transform=ax.transAxes,
                        color="#888888", fontsize=8)
            else:
                image = ax.imshow(g["mean"], cmap=cmap, vmin=lims[0], vmax=lims[1])
                ax.set_xlabel(f"n = {g['count']}", fontsize=8, labelpad=2)
            if r == 0:
                ax.set_title(f"({edges[b]:.2f}, {edges[b + 1]:.2f}]", fontsize=8)
            if b == 0:
                ax.set_ylabel(cls, fontsize=9)
    fig.suptitle(f"{result.method}: mean map by predicted class and confidence "
                 f"({len(result.rows)} patches)", fontsize=10)
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="relevance / own max")
    return fig


def _spread(embedding: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Up to ``n`` indices spread over the embedding (one per occupied cell of a grid)."""
    if len(embedding) == 0 or n <= 0:
        return np.zeros(0, int)
    side = max(1, int(np.ceil(np.sqrt(n))))
    lo, hi = embedding.min(axis=0), embedding.max(axis=0)
    cell = np.floor((embedding - lo) / np.maximum(hi - lo, 1e-9) * (side - 1e-6)).astype(int)
    key = cell[:, 0] * side + cell[:, 1]
    order = np.random.default_rng(seed).permutation(len(embedding))
    _, first = np.unique(key[order], return_index=True)
    return np.sort(order[first])[:n]


def embedding_figure(result, *, thumbnails: int = 36, size=(6.8, 5.6)):
    """t-SNE scatter coloured by cluster, with thumbnails; returns ``(fig, hits)``.

    ``hits`` holds ``points`` ((N, 2) x, y image px of each patch's marker, origin top-left)
    and ``thumbs`` (list of ``(x0, y0, x1, y1, index)`` image px boxes), for the figure as
    :func:`render` draws it.
    """
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    emb = np.asarray(result.embedding, float)
    fig = _figure(size)
    ax = fig.add_axes([0.04, 0.04, 0.74, 0.88])
    clusters = np.asarray(result.clusters)
    for k in np.unique(clusters):
        m = clusters == k
        ax.scatter(emb[m, 0], emb[m, 1], s=10, color=CLUSTER_COLOURS[k % len(CLUSTER_COLOURS)],
                   label=f"cluster {k}", zorder=2, linewidths=0)
    labels = np.asarray(result.labels)
    for c, name in enumerate(result.class_names):
        m = labels == c
        if m.any():
            ax.scatter(emb[m, 0], emb[m, 1], s=26, facecolors="none", linewidths=0.6,
                       edgecolors=LABEL_COLOURS[c % len(LABEL_COLOURS)], zorder=1,
                       label=f"label {name}")
    dis = [d["index"] for d in result.disagreements]
    if dis:
        ax.scatter(emb[dis, 0], emb[dis, 1], marker="x", s=40, color="red", zorder=4,
                   label=f"disagrees\n(p > {result.threshold:g})")
    boxes = []
    for i in _spread(emb, thumbnails):
        box = AnnotationBbox(OffsetImage(result.thumbnails[i], zoom=0.75), emb[i], frameon=True,
                             pad=0.1, zorder=3, bboxprops={"edgecolor": CLUSTER_COLOURS[
                                 clusters[i] % len(CLUSTER_COLOURS)], "linewidth": 1.2})
        ax.add_artist(box)
        boxes.append((box, int(i)))
    ax.set_xticks([])
    ax.set_yticks([])
    purity = ("" if result.purity is None else
              f"; purity {result.purity:.2f} (chance {result.purity_chance:.2f})")
    ax.set_title(f"t-SNE of {len(emb)} {result.method} maps, k-means k = "
                 f"{len(result.class_names)}{purity}", fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    fig.canvas.draw()
    height = fig.canvas.get_width_height()[1]
    xy = ax.transData.transform(emb) if len(emb) else np.zeros((0, 2))
    points = np.stack([xy[:, 0], height - xy[:, 1]], axis=1)
    renderer = fig.canvas.get_renderer()
    thumbs = []
    for box, i in boxes:
        ext = box.get_window_extent(renderer)
        thumbs.append((float(ext.x0), float(height - ext.y1), float(ext.x1),
                       float(height - ext.y0), i))
    return fig, {"points": points, "thumbs": thumbs}


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


PATCH_COLUMNS = ["index", "row_px", "col_px", "y_um", "x_um", "predicted", "confidence", "bin",
                 "cluster", "tsne_x", "tsne_y", "label", "label_source"]
DISAGREEMENT_COLUMNS = ["index", "row_px", "col_px", "y_um", "x_um", "label", "predicted", "p",
                        "p_label"]


def write_meta_outputs(result, out_dir) -> dict[str, Path]:
    """Write figures, tables and the summary into ``out_dir`` (must exist); returns the paths."""
    out = Path(out_dir)
    files = {}
    grid = grid_figure(result)
    files["grid"] = out / "meta_grid.png"
    grid.savefig(files["grid"], dpi=DPI)
    emb, _ = embedding_figure(result)
    files["embedding"] = out / "meta_embedding.png"
    emb.savefig(files["embedding"], dpi=DPI)
    patches = result.records()
    disagreements = result.disagreement_records()
    files["patches_csv"] = _write_csv(out / "patches.csv", patches, PATCH_COLUMNS)
    files["disagreements_csv"] = _write_csv(out / "disagreements.csv", disagreements,
                                            DISAGREEMENT_COLUMNS)
    files["patches_json"] = out / "patches.json"
    files["patches_json"].write_text(json.dumps(patches, indent=1), encoding="utf-8")
    files["disagreements_json"] = out / "disagreements.json"
    files["disagreements_json"].write_text(json.dumps(disagreements, indent=1), encoding="utf-8")
    files["maps"] = out / "maps.npz"
    np.savez_compressed(files["maps"], maps=result.maps.astype(np.float16), probs=result.probs,
                        rows=result.rows, cols=result.cols, labels=result.labels,
                        clusters=result.clusters, embedding=result.embedding,
                        thumbnails=result.thumbnails)
    summary = {**result.summary(), "files": {k: v.name for k, v in files.items()}}
    files["summary"] = out / "meta.json"
    files["summary"].write_text(json.dumps(summary, indent=2, default=_plain), encoding="utf-8")
    return files


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
