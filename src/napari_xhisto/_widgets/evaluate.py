"""Docked "Evaluate" widget: score a heatmap layer against cell points and region shapes.

Thin: it reads layers, converts them to level-0 pixels, calls `napari_xhisto.metrics` and shows
the numbers (ROC plot, AUC table with baselines, per-tile table, region table, centre-bias
profile, model A vs B). Clicking a per-tile row selects its cells; a region row selects the shape.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..annotations import CellPoints, points_data_to_cells, shapes_data_to_regions
from ..errors import XhistoError
from ..geometry import Placement
from ..metrics import (
    centre_bias_profile,
    class_mean_heatmaps,
    compare_region_relevance,
    find_hotspot,
)
from ..metrics._common import level0_to_map, map_to_level0
from ..metrics.report import iter_evaluate_heatmap, jsonable
from ..progress import run_to_end

NONE = "(none)"


# ---- layers -> level-0 pixels (no Qt) ------------------------------------------------------

def _world(data, layer) -> np.ndarray:
    """Layer data coordinates (last two axes) to world µm: data * scale + translate."""
    data = np.asarray(data, dtype=np.float64).reshape(-1, np.shape(data)[-1])[:, -2:]
    return data * np.asarray(layer.scale)[-2:] + np.asarray(layer.translate)[-2:]


def heatmap_from_layer(layer, *, mpp: float | None = None):
    """``(values, placement, mpp)`` of an image layer.

    Uses ``metadata["xhisto"]`` (placement, mpp) when present; otherwise the layer's
    scale/translate with ``mpp`` µm per level-0 pixel. Multiscale layers give their finest level.
    """
    meta = layer.metadata.get("xhisto", {}) if isinstance(layer.metadata, dict) else {}
    data = layer.data[0] if layer.multiscale else layer.data
    if "placement" in meta and meta.get("mpp"):
        return data, Placement.from_dict(meta["placement"]), float(meta["mpp"])
    mpp = float(mpp or meta.get("mpp") or 1.0)
    scale, translate = np.asarray(layer.scale)[-2:], np.asarray(layer.translate)[-2:]
    step = scale / mpp
    origin = translate / mpp - (step - 1) / 2
    return data, Placement(origin[0], origin[1], step[0], step[1]), mpp


def crop_to(data, placement: Placement, rows, cols, *, margin: float):
    """The part of a (possibly lazy, slide-wide) heatmap around level-0 points, and its placement."""
    H, W = data.shape[-2:]
    if len(rows) == 0:
        return np.asarray(data[:, :], dtype=np.float64), placement
    r0 = int(np.floor((np.min(rows) - margin - placement.origin_row) / placement.step_row)) - 1
    r1 = int(np.ceil((np.max(rows) + margin - placement.origin_row) / placement.step_row)) + 2
    c0 = int(np.floor((np.min(cols) - margin - placement.origin_col) / placement.step_col)) - 1
    c1 = int(np.ceil((np.max(cols) + margin - placement.origin_col) / placement.step_col)) + 2
    r0, r1, c0, c1 = max(r0, 0), min(r1, H), max(c0, 0), min(c1, W)
    if r1 <= r0 or c1 <= c0:
        raise XhistoError("the annotations do not overlap the heatmap layer")
    values = np.asarray(data[r0:r1, c0:c1], dtype=np.float64)
    return values, Placement(placement.origin_row + r0 * placement.step_row,
                             placement.origin_col + c0 * placement.step_col,
                             placement.step_row, placement.step_col)


def _layer_class(layer) -> str:
    meta = layer.metadata.get("xhisto", {}) if isinstance(layer.metadata, dict) else {}
    return str(meta.get("class") or layer.name)


def mask_uncovered(values, placement: Placement, pastes) -> np.ndarray:
    """NaN where no explained region was pasted (slide-wide canvas layers hold 0 there).

    ``pastes`` is ``metadata["xhisto"]["pastes"]``: each provenance carries its level-0
    ``region`` (row, col, height, width). Unchanged when a region is missing.
    """
    boxes = [(p.get("provenance") or {}).get("region") for p in pastes or ()]
    if not boxes or any(b is None for b in boxes):
        return values
    r, c = map_to_level0(np.arange(values.shape[0]), np.arange(values.shape[1]), placement)
    covered = np.zeros(values.shape, dtype=bool)
    for r0, c0, h, w in boxes:
        covered |= ((r >= r0) & (r < r0 + h))[:, None] & ((c >= c0) & (c < c0 + w))[None, :]
    return np.where(covered, values, np.nan)


def cells_from_layers(layers, mpp: float):
    """Cells (level-0 px) of Points layers, and ``(layer, index)`` of each cell.

    The class comes from the "class" feature, else from ``metadata["xhisto"]["class"]`` (one
    layer per class, as the Annotate widget makes them), else the layer name.
    """
    parts, source = [], []
    for layer in layers:
        c = points_data_to_cells(_world(layer.data, layer), layer.features, mpp,
                                 default_class=_layer_class(layer))
        parts.append(c)
        source += [(layer, i) for i in range(len(c.rows))]
    if not parts:
        return None, []
    cells = CellPoints(np.concatenate([c.rows for c in parts]), np.concatenate([c.cols for c in parts]),
                       np.concatenate([c.classes for c in parts]))
    return cells, source


def regions_from_layers(layers, mpp: float):
    """Regions (level-0 px) of Shapes layers (holes from ``metadata["xhisto"]["holes"]``)."""
    regions, source = [], []
    for layer in layers:
        meta = layer.metadata.get("xhisto", {}) if isinstance(layer.metadata, dict) else {}
        holes = {k: [_world(h, layer) for h in v] for k, v in meta.get("holes", {}).items()}
        found = shapes_data_to_regions([_world(d, layer) for d in layer.data],
                                       list(layer.shape_type), layer.features, mpp, holes=holes,
                                       default_class=_layer_class(layer))
        regions += found
        source += [(layer, i) for i in range(len(found))]
    return regions, source


def patches_of(values, size: int, *, offset=(0, 0)):
    """Non-overlapping ``size`` x ``size`` patches that are finite and not all zero.

    ``offset`` is the grid index of ``values[0, 0]`` in the full layer, so patches stay aligned
    with multiples of ``size`` there (the model's patch grid). Returns the patches (K, s, s) and
    their top-left indices in ``values`` (K, 2).
    """
    skip_r, skip_c = (-int(offset[0])) % size, (-int(offset[1])) % size
    v = values[skip_r:, skip_c:]
    n_r, n_c = v.shape[0] // size, v.shape[1] // size
    if n_r == 0 or n_c == 0:
        raise XhistoError(f"the heatmap ({values.shape[0]} x {values.shape[1]}) holds no whole "
                          f"{size} px patch: lower the patch size")
    p = v[:n_r * size, :n_c * size].reshape(n_r, size, n_c, size).swapaxes(1, 2)
    p = p.reshape(-1, size, size)
    corners = np.stack(np.meshgrid(np.arange(n_r) * size + skip_r, np.arange(n_c) * size + skip_c,
                                   indexing="ij"), -1).reshape(-1, 2)
    keep = np.isfinite(p).all(axis=(1, 2)) & (np.abs(p).sum(axis=(1, 2)) > 0)
    if not keep.any():
        raise XhistoError("no complete patch with relevance: lower the patch size")
    return p[keep], corners[keep]


def patch_classes(corners, size: int, placement: Placement, prob_layer, mpp: float) -> np.ndarray:
    """Predicted class of each patch: the probability layer's value at the patch centre >= 0.5."""
    data, p_place, _ = heatmap_from_layer(prob_layer, mpp=mpp)
    meta = prob_layer.metadata.get("xhisto", {}) if isinstance(prob_layer.metadata, dict) else {}
    name = str(meta.get("class_name") or prob_layer.name)
    r, c = map_to_level0(corners[:, 0] + (size - 1) / 2, corners[:, 1] + (size - 1) / 2, placement)
    i, j = level0_to_map(r, c, p_place)
    i, j = np.floor(i + 0.5).astype(int), np.floor(j + 0.5).astype(int)
    ok = (i >= 0) & (i < data.shape[-2]) & (j >= 0) & (j < data.shape[-1])
    prob = np.full(len(corners), np.nan)
    if ok.any():
        block = np.asarray(data[i[ok].min():i[ok].max() + 1, j[ok].min():j[ok].max() + 1])
        prob[ok] = block[i[ok] - i[ok].min(), j[ok] - j[ok].min()]
    return np.where(np.isnan(prob), "unknown", np.where(prob >= 0.5, name, f"not {name}"))


# ---- the widget ------------------------------------------------------------------------------

def _table(headers) -> QTableWidget:
    t = QTableWidget(0, len(headers))
    t.setHorizontalHeaderLabels(headers)
    t.setEditTriggers(QTableWidget.NoEditTriggers)
    t.setSelectionBehavior(QTableWidget.SelectRows)
    return t


def _fill(table: QTableWidget, rows) -> None:
    table.setRowCount(len(rows))
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            text = f"{v:.4g}" if isinstance(v, float | np.floating) else str(v)
            table.setItem(i, j, QTableWidgetItem(text))


class EvaluateWidget(QWidget):
    """Cell ROC, region relevance and bias diagnostics of heatmap layers."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.result: dict | None = None
        self.comparison = None
        self.profile = None
        self._tile_rows: list[dict] = []
        self._cells: CellPoints | None = None
        self._cell_source: list = []
        self._region_source: list = []

        form = QFormLayout()
        self.heatmap_box, self.heatmap_b_box, self.prob_box = QComboBox(), QComboBox(), QComboBox()
        self.class_means: dict = {}
        self.hotspots: dict = {}
        self.points_list, self.shapes_list = QListWidget(), QListWidget()
        for w in (self.points_list, self.shapes_list):
            w.setMaximumHeight(90)
        self.positive_edit = QLineEdit("tumour")
        self.localize_edit = QLineEdit("tumour area")
        self.radius_spin = self._spin(0.1, 1000, 8.0, " µm")
        self.tile_spin = self._spin(1, 100000, 256.0, " µm")
        self.mpp_spin = self._spin(0.01, 100, 0.5, " µm/px")
        self.random_spin = QSpinBox()
        self.random_spin.setRange(0, 1000)
        self.random_spin.setValue(10)
        self.patch_spin = QSpinBox()
        self.patch_spin.setRange(4, 4096)
        self.patch_spin.setValue(64)
        for label, w in (("heatmap (A)", self.heatmap_box), ("cells (Points)", self.points_list),
                         ("regions (Shapes)", self.shapes_list),
                         ("positive classes", self.positive_edit), ("disc radius", self.radius_spin),
                         ("localise region classes", self.localize_edit),
                         ("tile size", self.tile_spin), ("random runs", self.random_spin),
                         ("µm/px if no metadata", self.mpp_spin),
                         ("heatmap B (compare)", self.heatmap_b_box),
                         ("bias patch size (px)", self.patch_spin),
                         ("predicted class from", self.prob_box)):
            form.addRow(label, w)
        self.run_button = QPushButton("Evaluate")
        self.run_button.clicked.connect(self._on_run)
        buttons = QHBoxLayout()
        for text, slot in (("Export JSON", self._ask_json), ("Export CSV", self._ask_csv),
                           ("Save plots", self._ask_png)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            buttons.addWidget(b)

        self.roc_figure, self.bias_figure = Figure(figsize=(4, 3)), Figure(figsize=(4, 3))
        self.auc_table = _table(["curve", "AUC", "positive", "negative", "excluded"])
        self.tile_table = _table(["tile row", "tile col", "AUC", "positive", "negative"])
        self.region_table = _table(["#", "class", "name", "pixels", "mean", "total", "mean +"])
        self.loc_figure = Figure(figsize=(4, 3))
        self.loc_table = _table(["class", "PxAP", "percentile", "threshold", "Dice", "IoU",
                                 "Hausdorff (px)", "weak hits", "map area"])
        self.compare_table = _table(["#", "class", "mean A", "mean B", "B - A"])
        self.tile_table.cellClicked.connect(self.select_tile)
        self.region_table.cellClicked.connect(self.select_region)
        self.bias_label = QLabel("")
        self.bias_label.setWordWrap(True)
        self.tabs = QTabWidget()
        roc_tab = QWidget()
        lay = QVBoxLayout(roc_tab)
        for w in (FigureCanvasQTAgg(self.roc_figure), self.auc_table, QLabel("per tile (worst first)"),
                  self.tile_table):
            lay.addWidget(w)
        bias_tab = QWidget()
        lay = QVBoxLayout(bias_tab)
        for w in (FigureCanvasQTAgg(self.bias_figure), self.bias_label, self.compare_table):
            lay.addWidget(w)
        self.tabs.addTab(roc_tab, "ROC")
        self.tabs.addTab(self.region_table, "Regions")
        loc_tab = QWidget()
        lay = QVBoxLayout(loc_tab)
        lay.addWidget(FigureCanvasQTAgg(self.loc_figure))
        lay.addWidget(self.loc_table)
        self.tabs.addTab(loc_tab, "Localisation")
        self.tabs.addTab(bias_tab, "Bias")

        main = QVBoxLayout(self)
        main.addLayout(form)
        main.addWidget(self.run_button)
        main.addLayout(buttons)
        main.addWidget(self.tabs)
        for ev in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            ev.connect(self.refresh_layers)
        self.refresh_layers()

    @staticmethod
    def _spin(lo, hi, value, suffix) -> QDoubleSpinBox:
        s = QDoubleSpinBox()
        s.setRange(lo, hi)
        s.setDecimals(3)
        s.setValue(value)
        s.setSuffix(suffix)
        return s

    # -- layer choices --
    def refresh_layers(self, *_):
        """Refill the layer choices; take µm/px from a slide layer's metadata when there is one."""
        from napari.layers import Image, Points, Shapes

        for lyr in self.viewer.layers:
            meta = lyr.metadata.get("xhisto", {}) if isinstance(lyr.metadata, dict) else {}
            if meta.get("slide_path") and meta.get("mpp") and "placement" not in meta:
                self.mpp_spin.setValue(float(meta["mpp"]))
                break

        def names(kind, first=None):
            layers = [lyr for lyr in self.viewer.layers if isinstance(lyr, kind)]
            if first:
                layers.sort(key=lambda lyr: not first(lyr))
            return [lyr.name for lyr in layers]

        def xkind(lyr):
            meta = lyr.metadata.get("xhisto", {}) if isinstance(lyr.metadata, dict) else {}
            return meta.get("kind")

        def is_heat(lyr):
            return xkind(lyr) == "heatmap"

        def annotated(lyr):
            meta = lyr.metadata.get("xhisto", {}) if isinstance(lyr.metadata, dict) else {}
            return "class" in getattr(lyr.features, "columns", ()) or "class" in meta

        for lst, kind in ((self.points_list, Points), (self.shapes_list, Shapes)):
            checked = {name for name in self._checked_names(lst)}
            lst.clear()
            for name in names(kind):
                item = QListWidgetItem(name)
                item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
                on = name in checked or annotated(self.viewer.layers[name])
                item.setCheckState(Qt.Checked if on else Qt.Unchecked)
                lst.addItem(item)
        for box, items in ((self.heatmap_box, names(Image, is_heat)),
                           (self.heatmap_b_box, [NONE, *names(Image, is_heat)]),
                           (self.prob_box, [NONE, *[n for n in names(Image)
                                                    if xkind(self.viewer.layers[n]) == "probability"]])):
            current = box.currentText()
            box.blockSignals(True)
            box.clear()
            box.addItems(items)
            if current in items:
                box.setCurrentText(current)
            elif box is self.heatmap_b_box and len(items) > 2:
                box.setCurrentIndex(2)  # second heatmap, if any
            elif box is self.prob_box and len(items) > 1:
                box.setCurrentIndex(1)
            box.blockSignals(False)

    @staticmethod
    def _checked_names(lst) -> list[str]:
        return [lst.item(i).text() for i in range(lst.count())
                if lst.item(i).checkState() == Qt.Checked]

    def set_checked(self, lst, names) -> None:
        """Check exactly the layers ``names`` in ``lst`` (points_list or shapes_list)."""
        for i in range(lst.count()):
            lst.item(i).setCheckState(Qt.Checked if lst.item(i).text() in names else Qt.Unchecked)

    def _checked_layers(self, lst) -> list:
        return [self.viewer.layers[n] for n in self._checked_names(lst) if n in self.viewer.layers]

    def _layer(self, box):
        name = box.currentText()
        return None if name in ("", NONE) or name not in self.viewer.layers else self.viewer.layers[name]

    # -- compute --
    def _on_run(self):
        """Evaluate in a worker thread (progress in the activity dock); fill the tabs at the end."""
        from ._workers import notify_error, start_generator

        try:
            job = self._prepare()
        except (XhistoError, ValueError) as exc:
            notify_error(exc)
            return
        self.run_button.setEnabled(False)
        self._worker = start_generator(
            lambda: iter_evaluate_heatmap(job["values"], **job["options"]), label="Evaluate",
            on_result=lambda result: self._show(job, result),
            on_finished=lambda _cancelled: self.run_button.setEnabled(True))

    def evaluate(self) -> dict:
        """Compute everything for the chosen layers and fill the tabs; returns the metrics dict."""
        job = self._prepare()
        return self._show(job, run_to_end(iter_evaluate_heatmap(job["values"], **job["options"])))

    def _prepare(self) -> dict:
        """Read the chosen layers (GUI thread): heatmap crop, cells, regions, options."""
        heat_layer = self._layer(self.heatmap_box)
        if heat_layer is None:
            raise XhistoError("pick a heatmap image layer first")
        data, base, mpp = heatmap_from_layer(heat_layer, mpp=self.mpp_spin.value())
        points, shapes = self._checked_layers(self.points_list), self._checked_layers(self.shapes_list)
        cells, cell_source = cells_from_layers(points, mpp)
        regions, region_source = regions_from_layers(shapes, mpp)
        if cells is not None and len(cells.rows) == 0:
            cells = None
        if cells is None and not regions:
            raise XhistoError("check a Points layer (cells) or a Shapes layer (regions) with classes")
        rows = np.concatenate([cells.rows if cells is not None else []] + [r.exterior[:, 0] for r in regions])
        cols = np.concatenate([cells.cols if cells is not None else []] + [r.exterior[:, 1] for r in regions])
        values, placement = crop_to(data, base, rows, cols, margin=self.radius_spin.value() / mpp)
        meta = heat_layer.metadata.get("xhisto", {}) if isinstance(heat_layer.metadata, dict) else {}
        if meta.get("canvas"):
            values = mask_uncovered(values, placement, meta.get("pastes"))
        positive = tuple(c.strip() for c in self.positive_edit.text().split(",") if c.strip())
        return {"values": values, "cells": cells, "regions": regions, "cell_source": cell_source,
                "region_source": region_source,
                "offset": (round((placement.origin_row - base.origin_row) / base.step_row),
                           round((placement.origin_col - base.origin_col) / base.step_col)),
                "layers": {"heatmap": heat_layer.name, "points": [lyr.name for lyr in points],
                           "shapes": [lyr.name for lyr in shapes]},
                "options": dict(placement=placement, mpp=mpp, cells=cells, regions=regions,
                                radius_um=self.radius_spin.value(), positive=positive or ("tumour",),
                                tile_um=self.tile_spin.value(), n_random=self.random_spin.value(),
                                localize=[c.strip() for c in self.localize_edit.text().split(",")
                                          if c.strip()])}

    def _show(self, job: dict, result: dict) -> dict:
        self.result, self._cells = result, job["cells"]
        self._cell_source, self._region_source = job["cell_source"], job["region_source"]
        self.result["layers"] = job["layers"]
        self._show_roc()
        self._show_regions()
        self._show_localization()
        self._show_bias(job["values"], job["options"]["placement"], job["regions"], job["offset"])
        return self.result

    def _show_roc(self):
        r = self.result
        fig = self.roc_figure
        fig.clear()
        ax = fig.add_subplot(111)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="baselines (0.5)")
        rows = []
        if "roc" in r:
            roc, b = r["roc"], r["baselines"]
            ax.plot(roc["fpr"], roc["tpr"], color="C3", label=f"heatmap AUC {roc['auc']:.3f}")
            rows = [["heatmap", roc["auc"], roc["n_positive"], roc["n_negative"], roc["n_excluded"]],
                    ["all-zero", b["all_zero"], "", "", ""], ["all-one", b["all_one"], "", "", ""],
                    [f"random (mean ± {b['random_std']:.3f})", b["random_mean"], "", "", ""]]
        ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1))
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        fig.canvas.draw_idle()
        _fill(self.auc_table, rows)
        tiles = r.get("per_tile", [])
        self._tile_rows = sorted(tiles, key=lambda t: (np.isnan(t["auc"]), t["auc"]))
        _fill(self.tile_table, [[t["tile_row"], t["tile_col"], t["auc"], t["n_positive"],
                                 t["n_negative"]] for t in self._tile_rows])

    def _show_localization(self):
        fig = self.loc_figure
        fig.clear()
        ax = fig.add_subplot(111)
        rows = []
        for name, loc in self.result.get("localization", {}).items():
            curve = loc["curve"]
            for key, style in (("iou", "-"), ("dice", "--"), ("precision", ":"), ("recall", "-.")):
                ax.plot(curve["thresholds"], curve[key], style, label=f"{name}: {key}")
            rows += [[name, loc["pxap"], q["percentile"], q["threshold"], q["dice"], q["iou"],
                      q["hausdorff"], f"{q['weak_hits']}/{q['weak_n_true']}", q["map_fraction"]]
                     for q in loc["at_percentiles"]]
        ax.set(xlabel="threshold (min-max normalised map)", ylabel="score", xlim=(0, 1), ylim=(0, 1))
        if rows:
            ax.legend(fontsize=6)
        fig.tight_layout()
        fig.canvas.draw_idle()
        _fill(self.loc_table, rows)

    def _show_regions(self):
        _fill(self.region_table, [[g["index"], g["cls"], g["name"] or "", g["n_pixels"], g["mean"],
                                   g["total"], g["mean_positive"]]
                                  for g in self.result.get("regions", [])])

    def _show_bias(self, values, placement, regions, offset):
        fig = self.bias_figure
        fig.clear()
        flags, size = [], self.patch_spin.value()
        try:
            patches, corners = patches_of(values, size, offset=offset)
            self.profile = centre_bias_profile(patches)
        except (XhistoError, ValueError) as exc:
            self.profile = None
            flags.append(f"centre bias not computed: {exc}")
        self.class_means, self.hotspots = {}, {}
        if self.profile is not None:
            prob_layer = self._layer(self.prob_box)
            labels = (np.full(len(patches), "all patches") if prob_layer is None else
                      patch_classes(corners, size, placement, prob_layer, self.result["heatmap"]["mpp"]))
            self.class_means = class_mean_heatmaps(patches, labels)
            n = 1 + len(self.class_means)
            ax = fig.add_subplot(1, n, 1)
            ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8, label="uniform")
            ax.plot(self.profile.area_share, self.profile.relevance_share, color="C3",
                    label=f"{self.profile.n_patches} patches")
            ax.set(xlabel="area share of centred square", ylabel="share of mean |R|")
            ax.legend(fontsize=7)
            flags += [f for f in [self.profile.flag()] if f]
            for k, (name, entry) in enumerate(self.class_means.items()):
                ax = fig.add_subplot(1, n, k + 2)
                m = float(np.nanmax(np.abs(entry["mean"]))) or 1.0
                ax.imshow(entry["mean"], cmap="bwr", vmin=-m, vmax=m)
                ax.set_title(f"{name} ({entry['count']})", fontsize=8)
                ax.set_axis_off()
                try:
                    spot = self.hotspots[name] = find_hotspot(entry["mean"], label=name)
                except ValueError:  # an all-zero mean map has no hotspot
                    continue
                ax.add_patch(Rectangle((spot.col - 0.5, spot.row - 0.5), spot.size, spot.size,
                                       fill=False, ec="k"))
                flags += [f for f in [spot.flag()] if f]
            self.result["bias"] = {
                "patch_size": size, "centre_bias": self.profile.to_dict(),
                "classes": {k: {"count": v["count"],
                                "hotspot": self.hotspots[k].to_dict() if k in self.hotspots else None}
                            for k, v in self.class_means.items()}}
        fig.tight_layout()
        fig.canvas.draw_idle()
        self.comparison = None
        layer_b = self._layer(self.heatmap_b_box)
        if layer_b is not None and regions:
            data_b, placement_b, _ = heatmap_from_layer(layer_b, mpp=self.mpp_spin.value())
            rows = np.concatenate([r.exterior[:, 0] for r in regions])
            cols = np.concatenate([r.exterior[:, 1] for r in regions])
            values_b, placement_b = crop_to(data_b, placement_b, rows, cols, margin=0)
            meta_b = layer_b.metadata.get("xhisto", {}) if isinstance(layer_b.metadata, dict) else {}
            if meta_b.get("canvas"):
                values_b = mask_uncovered(values_b, placement_b, meta_b.get("pastes"))
            self.comparison = compare_region_relevance(
                values, values_b, regions, placement_a=placement, placement_b=placement_b,
                label_a=self.heatmap_box.currentText(), label_b=layer_b.name)
            self.result["comparison"] = self.comparison.to_dict()
            flags += self.comparison.flags
            _fill(self.compare_table, [[a.index, a.cls, a.mean, b.mean, b.mean - a.mean]
                                       for a, b in zip(self.comparison.a, self.comparison.b)])
        self.bias_label.setText("\n".join(flags) or "no bias flag raised")

    # -- table clicks select in the viewer --
    def select_tile(self, row: int, *_):
        """Select the cells of the clicked per-tile row and centre the view on the tile."""
        if self._cells is None or not 0 <= row < len(self._tile_rows):
            return
        t = self._tile_rows[row]
        c = self._cells
        inside = ((c.rows >= t["row0"]) & (c.rows < t["row0"] + t["size"])
                  & (c.cols >= t["col0"]) & (c.cols < t["col0"] + t["size"]))
        chosen: dict = {}
        for k in np.flatnonzero(inside):
            layer, index = self._cell_source[k]
            chosen.setdefault(layer.name, (layer, set()))[1].add(index)
        layers = {lyr.name: lyr for lyr, _ in self._cell_source}
        for name, layer in layers.items():
            layer.selected_data = chosen.get(name, (None, set()))[1]
        if chosen:
            layer = next(iter(chosen.values()))[0]
            self.viewer.layers.selection.active = layer
            layer.mode = "select"
        mpp = self.result["heatmap"]["mpp"]
        self.viewer.scene.camera.center = ((t["row0"] + t["size"] / 2) * mpp, (t["col0"] + t["size"] / 2) * mpp)

    def select_region(self, row: int, *_):
        """Select the shape of the clicked region row."""
        regions = (self.result or {}).get("regions", [])
        if not 0 <= row < len(regions):
            return
        layer, index = self._region_source[int(regions[row]["index"])]
        self.viewer.layers.selection.active = layer
        layer.mode = "select"
        layer.selected_data = {index}

    # -- exports --
    def export_json(self, path) -> Path:
        if self.result is None:
            raise XhistoError("nothing to export: press Evaluate first")
        data = {k: v for k, v in self.result.items() if k != "cells"}
        data["cells"] = {k: v for k, v in self.result.get("cells", {}).items() if k != "scores"}
        Path(path).write_text(json.dumps(jsonable(data), indent=1, allow_nan=False))
        return Path(path)

    def export_csv(self, path) -> Path:
        """One row per table row (AUCs, tiles, regions, A-vs-B), with a ``table`` column."""
        if self.result is None:
            raise XhistoError("nothing to export: press Evaluate first")
        r, out = self.result, []
        if "roc" in r:
            out.append({"table": "auc", "name": "heatmap", "auc": r["roc"]["auc"],
                        "n_positive": r["roc"]["n_positive"], "n_negative": r["roc"]["n_negative"]})
            for k in ("all_zero", "all_one", "random_mean"):
                out.append({"table": "auc", "name": k, "auc": r["baselines"][k]})
        out += [{"table": "tile", **t} for t in r.get("per_tile", [])]
        out += [{"table": "region", **g} for g in r.get("regions", [])]
        if self.comparison is not None:
            out += [{"table": "comparison", **row} for row in self.comparison.rows()]
        fields = list(dict.fromkeys(k for row in out for k in row))
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            w.writerows(jsonable(out))
        return Path(path)

    def save_plots(self, folder) -> list[Path]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / "roc.png", folder / "bias.png", folder / "localisation.png"]
        for fig, path in zip((self.roc_figure, self.bias_figure, self.loc_figure), paths):
            fig.savefig(path, dpi=120)
        return paths

    def _ask_json(self):
        path, _ = QFileDialog.getSaveFileName(self, "Export metrics JSON", "metrics.json", "*.json")
        if path:
            self.export_json(path)

    def _ask_csv(self):
        path, _ = QFileDialog.getSaveFileName(self, "Export metrics CSV", "metrics.csv", "*.csv")
        if path:
            self.export_csv(path)

    def _ask_png(self):
        folder = QFileDialog.getExistingDirectory(self, "Folder for roc.png and bias.png")
        if folder:
            self.save_plots(folder)
