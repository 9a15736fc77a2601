"""What the Evaluate widget offers and does, without a window (napari's layer model only).

:class:`EvaluateController` lists the layers and classes to choose from (heatmap and
probability layers only, newest first), turns the user's :class:`Settings` into an
:class:`~.core.EvaluateJob`, keeps the outcome, gives the rows of each table, and acts on the
viewer when a row is clicked (select cells or a region, draw and centre a bias hotspot).
"""

from __future__ import annotations

import csv
import json
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import XhistoError
from ...metrics.report import jsonable
from . import tables
from .core import EvaluateOutcome, EvaluateRequest
from .layerdata import HeatmapInput, PointsInput, ShapesInput, class_names, is_heatmap_layer, xmeta
from .tables import fmt

HOTSPOT_LAYER = "bias hotspots"
HOTSPOT_KIND = "bias hotspots"
MAX_HOTSPOT_BOXES = 16  # napari adds shapes one by one: more boxes, a longer freeze
NONE = "(none)"


@dataclass
class Settings:
    """The user's choices, as the view holds them (layer names, classes, numbers)."""

    heatmap: str | None
    points: list[str] = field(default_factory=list)
    shapes: list[str] = field(default_factory=list)
    positive: str | None = None
    localize: str | None = None
    radius_um: float = 8.0
    tile_um: float = 256.0
    n_random: int = 10
    patch_um: float | None = None
    compare: list[str] = field(default_factory=list)
    prob: str | None = None
    radius_sweep: bool = True
    sweep_from_um: float = 1.0
    sweep_to_um: float = 12.0
    n_boot: int = 1000


def sweep_radii(start: float, stop: float) -> tuple[float, ...]:
    """Radii of the sweep: every µm from ``start`` to ``stop`` (at most 24, evenly spaced)."""
    from ... import options

    start = options.radius_um(start, "sweep from")
    stop = options.radius_um(stop, "sweep to")
    if stop < start:
        raise XhistoError(f"the radius sweep ends ({stop:g} µm) before it starts "
                          f"({start:g} µm): swap them")
    n = int(np.floor(stop - start + 1e-9)) + 1
    radii = np.linspace(start, stop, min(max(n, 2), 24)) if stop > start else np.array([start])
    return tuple(round(float(r), 4) for r in radii)


class EvaluateController:
    """Choices, job, outcome and viewer actions of the Evaluate widget."""

    def __init__(self, viewer):
        self.viewer = viewer
        self.outcome: EvaluateOutcome | None = None
        self._seen: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._count = 0
        for layer in viewer.layers:
            self.note_inserted(layer)

    # ---- layers and classes on offer
    def note_inserted(self, layer) -> None:
        """Remember when a layer arrived (the newest heatmap is the default)."""
        self._count += 1
        try:
            self._seen[layer] = self._count
        except TypeError:  # pragma: no cover - an unhashable layer type
            pass

    def _of_type(self, kind: str) -> list:
        return [ly for ly in self.viewer.layers if getattr(ly, "_type_string", "") == kind]

    def heatmap_names(self) -> list[str]:
        """Heatmap and probability layers (ours or heatmap files), newest first."""
        layers = [ly for ly in self.viewer.layers if is_heatmap_layer(ly)]
        layers.sort(key=lambda ly: -self._seen.get(ly, 0))
        return [ly.name for ly in layers]

    def is_unpainted_canvas(self, name: str) -> bool:
        """A slide-wide canvas made ahead of any click (nothing explained on it yet)."""
        meta = xmeta(self.viewer.layers[name]) if name in self.viewer.layers else {}
        return bool(meta.get("canvas")) and not meta.get("pastes")

    def probability_names(self) -> list[str]:
        return [n for n in self.heatmap_names() if xmeta(self.viewer.layers[n]).get("kind") == "probability"]

    def points_names(self) -> list[str]:
        return [ly.name for ly in self._of_type("points")]

    def shapes_names(self) -> list[str]:
        """Shapes layers (not the hotspot boxes this widget draws)."""
        return [ly.name for ly in self._of_type("shapes") if xmeta(ly).get("kind") != HOTSPOT_KIND]

    def checked_by_default(self, name: str) -> bool:
        """Annotation layers with classes (a "class" feature or one class per layer)."""
        layer = self.viewer.layers[name]
        return ("class" in getattr(layer.features, "columns", ()) and len(layer.features) > 0
                or "class" in xmeta(layer))

    def _layers(self, names) -> list:
        return [self.viewer.layers[n] for n in names if n in self.viewer.layers]

    def model_classes(self, heatmap: str | None) -> list[str]:
        """Class names the model knows (from the heatmap's provenance or a probability layer)."""
        names: dict[str, None] = {}
        for layer in self._layers([heatmap] if heatmap else []) + self._layers(self.probability_names()):
            meta = xmeta(layer)
            prov = meta.get("provenance") or {}
            model = prov.get("model") if isinstance(prov.get("model"), dict) else {}
            for key_source in (meta.get("class_names"), model.get("class_names")):
                names.update(dict.fromkeys(str(c) for c in key_source or ()))
            for value in (prov.get("target_class"), meta.get("class_name")):
                if value:
                    names[str(value)] = None
        return list(names)

    def cell_classes(self, points: list[str], heatmap: str | None = None) -> list[str]:
        """Classes of the checked cell layers first, then the model's classes."""
        found = class_names(self._layers(points))
        return found + [c for c in self.model_classes(heatmap) if c not in found]

    def region_classes(self, shapes: list[str]) -> list[str]:
        return class_names(self._layers(shapes), "region")

    def default_positive(self, heatmap: str | None, classes: list[str]) -> str | None:
        """The heatmap's target class when the annotations have it, else "tumour", else the first."""
        target = None
        if heatmap and heatmap in self.viewer.layers:
            meta = xmeta(self.viewer.layers[heatmap])
            target = (meta.get("provenance") or {}).get("target_class") or meta.get("class_name")
        for choice in (target, "tumour"):
            if choice in classes:
                return choice
        return classes[0] if classes else None

    def default_patch_um(self, heatmap: str | None) -> float | None:
        """The model's patch side in µm, from the heatmap's provenance (None when unknown)."""
        if not heatmap or heatmap not in self.viewer.layers:
            return None
        meta = xmeta(self.viewer.layers[heatmap])
        prov = meta.get("provenance") or {}
        if prov.get("patch_px") and prov.get("heatmap_mpp"):
            return float(prov["patch_px"]) * float(prov["heatmap_mpp"])
        return None

    # ---- the job
    def job(self, s: Settings, *, render: bool = True) -> EvaluateRequest:
        """Snapshot the chosen layers (cheap: no data is read here)."""
        if not s.heatmap or s.heatmap not in self.viewer.layers:
            raise XhistoError("pick a heatmap layer first: explain a region, or open a heatmap file")
        heat = HeatmapInput.of(self.viewer.layers[s.heatmap])
        points, shapes = self._layers(s.points), self._layers(s.shapes)
        if not any(len(ly.data) for ly in points) and not any(len(ly.data) for ly in shapes):
            raise XhistoError("tick a cell layer (points with classes) or a region layer (shapes)")
        step_um = heat.placement.step_row * heat.mpp
        patch_px = max(2, int(round((s.patch_um or 64 * step_um) / step_um)))

        def pick(name):
            ok = name and name != NONE and name in self.viewer.layers
            return HeatmapInput.of(self.viewer.layers[name]) if ok else None

        from ... import options

        compare = [pick(n) for n in s.compare if n != s.heatmap]
        return EvaluateRequest(
            heatmap=heat, points=[PointsInput.of(ly) for ly in points],
            shapes=[ShapesInput.of(ly) for ly in shapes],
            radius_um=options.radius_um(s.radius_um, "cell neighbourhood radius"),
            positive=(s.positive,) if s.positive else ("tumour",),
            localize=(s.localize,) if s.localize and s.localize != NONE else (),
            tile_um=float(s.tile_um), n_random=int(s.n_random), patch_px=patch_px,
            prob=pick(s.prob), compare=[b for b in compare if b is not None], render=render,
            radius_sweep=(sweep_radii(s.sweep_from_um, s.sweep_to_um) if s.radius_sweep
                          else None),
            n_boot=options.whole_number(s.n_boot, "resamples", minimum=10, maximum=100_000))

    def accept(self, outcome: EvaluateOutcome, settings: Settings | None = None) -> dict:
        self.outcome = outcome
        if settings is not None:
            outcome.result["layers"] = {"heatmap": settings.heatmap, "points": list(settings.points),
                                        "shapes": list(settings.shapes)}
        return outcome.result

    @property
    def result(self) -> dict | None:
        return None if self.outcome is None else self.outcome.result

    def summary(self) -> str:
        area = (self.result or {}).get("explained_area")
        if not area:
            return ""
        out = self.outcome.placement
        h, w = area["shape"]
        um = (h * out.step_row * self.outcome.result["heatmap"]["mpp"],
              w * out.step_col * self.outcome.result["heatmap"]["mpp"])
        return (f"scored on the explained area ({um[1]:.0f} x {um[0]:.0f} µm): "
                f"{area['n_cells_on_area']} of {area['n_cells_checked']} cells, "
                f"{area['n_regions_on_area']} regions")

    # ---- table rows
    def auc_rows(self) -> list[list[str]]:
        """``heatmap, AUC, 95% interval, n (+/-)`` per heatmap, then the baselines."""
        return tables.auc_rows(self.result or {})

    def difference_rows(self) -> list[list[str]]:
        """``B − A, difference, 95% interval, DeLong p, n`` per pair of heatmaps."""
        return tables.difference_rows(self.result or {})

    def radius_rows(self) -> list[list[str]]:
        """One row per radius: the radius, then each heatmap's AUC over its interval."""
        return tables.radius_rows(self.result or {})

    def radius_headers(self) -> list[str]:
        return tables.radius_headers(self.result or {})

    def captions(self) -> dict:
        """The conventions under each tab's numbers: ``auc``, ``radius``, ``localisation``."""
        r = self.result or {}
        return {"auc": tables.auc_caption(r), "radius": tables.radius_caption(r),
                "localisation": tables.localisation_caption(r)}

    def tile_rows(self) -> list[dict]:
        """Per-tile ROC rows, worst first (NaN AUCs last)."""
        tiles = (self.result or {}).get("per_tile", [])
        return sorted(tiles, key=lambda t: (np.isnan(t["auc"]), t["auc"]))

    def tile_table(self) -> list[list[str]]:
        mpp = (self.result or {}).get("heatmap", {}).get("mpp", 1.0)
        return [[f"{t['col0'] * mpp:.0f}, {t['row0'] * mpp:.0f}", fmt(t["auc"]),
                 fmt(t["n_positive"]), fmt(t["n_negative"])] for t in self.tile_rows()]

    def region_rows(self) -> list[list[str]]:
        return [[fmt(v) for v in (g["index"], g["cls"], g["name"] or "", g["n_pixels"], g["mean"],
                                   g["mean_positive"])]
                for g in (self.result or {}).get("regions", [])]

    def localisation_rows(self) -> list[list[str]]:
        return tables.localisation_rows(self.result or {})

    def hotspot_names(self) -> list[str]:
        return [] if self.outcome is None else list(self.outcome.hotspots)

    def hotspot_rows(self) -> list[list[str]]:
        rows = []
        for name in self.hotspot_names():
            h = self.outcome.hotspots[name]
            y, x = h.centre_um
            side = h.boxes[h.strongest][2] * h.mpp
            rows.append([name, f"{x:.0f}, {y:.0f}", f"{side:.1f}", f"{h.spot.enrichment:.1f}x",
                         "yes" if h.spot.flag() else "no"])
        return rows

    def compare_rows(self) -> list[list[str]]:
        c = None if self.outcome is None else self.outcome.comparison
        if c is None:
            return []
        return [[fmt(v) for v in (a.index, a.cls, a.mean, b.mean, b.mean - a.mean)]
                for a, b in zip(c.a, c.b)]

    def flags_text(self) -> str:
        return "\n".join(self.outcome.flags) if self.outcome and self.outcome.flags else "no bias flag raised"

    # ---- viewer actions
    def select_tile(self, row: int) -> None:
        """Select the cells of per-tile row ``row`` and centre the view on the tile."""
        out, tiles = self.outcome, self.tile_rows()
        if out is None or out.cells is None or not 0 <= row < len(tiles):
            return
        t, c = tiles[row], out.cells
        inside = ((c.rows >= t["row0"]) & (c.rows < t["row0"] + t["size"])
                  & (c.cols >= t["col0"]) & (c.cols < t["col0"] + t["size"]))
        chosen: dict = {}
        for k in np.flatnonzero(inside):
            layer, index = out.cell_source[k]
            chosen.setdefault(layer.name, (layer, set()))[1].add(index)
        for layer in {id(ly): ly for ly, _ in out.cell_source}.values():
            layer.selected_data = chosen.get(layer.name, (None, set()))[1]
        if chosen:
            layer = next(iter(chosen.values()))[0]
            self.viewer.layers.selection.active = layer
            layer.mode = "select"
        mpp = self.result["heatmap"]["mpp"]
        self.viewer.scene.camera.center = ((t["row0"] + t["size"] / 2) * mpp,
                                           (t["col0"] + t["size"] / 2) * mpp)

    def select_region(self, row: int) -> None:
        """Select the shape of region row ``row``."""
        regions = (self.result or {}).get("regions", [])
        if not 0 <= row < len(regions):
            return
        layer, index = self.outcome.region_source[int(regions[row]["index"])]
        self.viewer.layers.selection.active = layer
        layer.mode = "select"
        layer.selected_data = {index}

    def show_hotspot(self, row: int):
        """Draw hotspot row ``row`` on the slide (its box in the patches of its class where it
        holds the most relevance, at most ``MAX_HOTSPOT_BOXES``, the strongest thicker) in the
        "bias hotspots" shapes layer, and centre the view on the strongest."""
        names = self.hotspot_names()
        if not 0 <= row < len(names):
            return None
        h = self.outcome.hotspots[names[row]]
        mpp = h.mpp
        chosen = h.strongest_first(MAX_HOTSPOT_BOXES)
        rects = [np.array([[r, c], [r, c + w], [r + hh, c + w], [r + hh, c]]) * mpp
                 for r, c, hh, w in h.boxes[chosen]]
        widths = [3.0 if k == h.strongest else 1.0 for k in chosen]
        meta = {"xhisto": {"kind": HOTSPOT_KIND, "hotspot_of": h.cls, "mpp": mpp}}
        if HOTSPOT_LAYER in self.viewer.layers:
            layer = self.viewer.layers[HOTSPOT_LAYER]
            layer.data = []
            layer.add_rectangles(rects, edge_width=widths, edge_color="#ffd400",
                                 face_color="transparent")
            layer.metadata = meta
        else:
            layer = self.viewer.add_shapes(rects, shape_type="rectangle", name=HOTSPOT_LAYER,
                                           edge_color="#ffd400", face_color="transparent",
                                           edge_width=widths, units=("µm", "µm"), metadata=meta)
        self.viewer.scene.camera.center = h.centre_um
        side_um = max(float(h.boxes[h.strongest][2]) * mpp, 1.0)
        canvas = min(self.viewer.canvas.size) if hasattr(self.viewer, "canvas") else 600
        self.viewer.scene.camera.zoom = max(canvas / (side_um * 12), 1e-3)
        return layer

    # ---- files
    def export_json(self, path) -> Path:
        """Every number (intervals, comparisons, sweep, curves, conventions, units) as JSON."""
        if self.result is None:
            raise XhistoError("nothing to export: press Evaluate first")
        data = tables.without_scores(self.result)
        Path(path).write_text(json.dumps(jsonable(data), indent=1, allow_nan=False))
        return Path(path)

    def export_csv(self, path) -> Path:
        """One row per table row, with a ``table`` column: AUCs with their intervals, paired
        differences, the radius sweep, localisation, tiles, regions, the conventions."""
        if self.result is None:
            raise XhistoError("nothing to export: press Evaluate first")
        out = tables.csv_rows(self.result, self.outcome.comparison)
        fields = list(dict.fromkeys(k for row in out for k in row))
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            w.writerows(jsonable(out))
        return Path(path)

    def save_plots(self, folder) -> list[Path]:
        from .plots import all_figures

        if self.outcome is None:
            raise XhistoError("no plots yet: press Evaluate first")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, fig in all_figures(self.outcome).items():
            paths.append(folder / f"{name}.png")
            fig.savefig(paths[-1], dpi=120)
        return paths
