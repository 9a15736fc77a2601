"""The Meta view's logic without a window: the job, the rendered figures, clicks, jumps.

:meth:`MetaController.job` builds the core generator
(:func:`~napari_xhisto.explain.meta_study.iter_meta_study`) for the worker thread;
:meth:`MetaController.set_result` renders the grid and the embedding to RGBA pixels and keeps
where each point and thumbnail lies on them; :meth:`MetaController.patch_at` turns a click on
the embedding image into a patch, and :meth:`MetaController.jump_to` centres the viewer on it
(``viewer.scene.camera``), in the slide layer's world coordinates (µm for the reader's layers),
and outlines it in a "meta patch" shapes layer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import XhistoError
from .. import layers as L

PATCH_LAYER = "meta patch"
CLICK_RADIUS_PX = 8  # a click this close (image px) to a point picks it
PATCH_SCREEN_SHARE = 0.25  # a jumped-to patch spans this share of the canvas


@dataclass
class MetaSettings:
    slide: str
    method: str = "gradcam"
    n: int = 2000
    seed: int = 0
    annotations: str = ""
    threshold: float = 0.9
    batch_size: int = 64


class MetaController:
    """State of the Meta view: model, result, figures and the viewer actions."""

    def __init__(self, viewer):
        self.viewer = viewer
        self.spec_path: str | None = None
        self.result = None
        self.slide_name: str | None = None
        self.grid_rgba: np.ndarray | None = None
        self.embedding_rgba: np.ndarray | None = None
        self.hits: dict = {"points": np.zeros((0, 2)), "thumbs": []}
        self._models: dict = {}
        self._lock = threading.Lock()

    # ---- inputs
    def slide_names(self) -> list[str]:
        return [ly.name for ly in self.viewer.layers if L.is_slide_layer(ly)]

    def slide_layer(self, name: str):
        if not name or name not in self.viewer.layers:
            raise XhistoError("open a slide first (File > Open, or the synthetic sample)")
        return self.viewer.layers[name]

    def default_annotations(self, name: str) -> str:
        """The ground truth beside the slide (``<stem>.geojson``) when it exists, else ''."""
        try:
            path = self.slide_layer(name).metadata.get("xhisto", {}).get("slide_path")
        except XhistoError:
            return ""
        if not path:
            return ""
        from ...synth.writer import ground_truth_path

        gt = ground_truth_path(path)
        return str(gt) if gt.exists() else ""

    def methods(self) -> list[str]:
        from ...explain import list_explainers

        return [m["name"] for m in list_explainers()]

    def model(self):
        """The loaded model (cached); called in the worker thread."""
        from ...models import load_model

        key = self.spec_path or "demo"
        with self._lock:
            if key not in self._models:
                self._models[key] = load_model(key)
            return self._models[key]

    # ---- the job (runs in the worker thread)
    def job(self, s: MetaSettings):
        """A function returning the core generator for ``s`` (slide, model, annotations read in
        the worker thread)."""
        layer = self.slide_layer(s.slide)
        meta = layer.metadata.get("xhisto", {})
        path, mpp = meta.get("slide_path"), meta.get("mpp")
        shared = layer.metadata.get("xhisto_slide")
        if shared is None and not path:
            raise XhistoError(f"layer {s.slide!r} does not say which slide file it shows")
        if s.annotations and not Path(s.annotations).exists():
            raise XhistoError(f"annotations {s.annotations}: no such file")
        self.slide_name = s.slide

        def make():
            from ...annotations import read_annotations
            from ...explain.meta_study import iter_meta_study
            from ...slide import open_slide

            annotations = read_annotations(s.annotations) if s.annotations else None
            model = self.model()
            slide = shared if shared is not None else open_slide(path, mpp=mpp)
            return iter_meta_study(slide, model, s.method, n=s.n, seed=s.seed,
                                   annotations=annotations, threshold=s.threshold,
                                   batch_size=s.batch_size)

        return make

    # ---- the result
    def set_result(self, result) -> None:
        """Keep ``result`` and render its grid and embedding (GUI thread: matplotlib Agg)."""
        from ...export.meta_figures import embedding_figure, grid_figure, render

        self.result = result
        self.grid_rgba = render(grid_figure(result))
        fig, self.hits = embedding_figure(result)
        self.embedding_rgba = render(fig)

    def summary_text(self) -> str:
        r = self.result
        if r is None:
            return ""
        n_lab = int((r.labels >= 0).sum())
        purity = ("purity skipped" if r.purity is None else
                  f"cluster purity {r.purity:.2f} (chance {r.purity_chance:.2f}, "
                  f"{n_lab} labelled)")
        notes = "".join(f"\n{n}" for n in r.notes)
        return (f"{len(r.rows)} patches, {r.method}, k = {len(r.class_names)}: {purity}; "
                f"{len(r.disagreements)} confident disagreement(s){notes}")

    def disagreement_rows(self) -> list[str]:
        r = self.result
        if r is None:
            return []
        return [f"{d['label']} → {d['predicted']} (p {d['p']:.3f})\n"
                f"   at x {d['x_um']:.0f} µm, y {d['y_um']:.0f} µm"
                for d in r.disagreement_records()]

    def patch_at(self, x: float, y: float) -> int | None:
        """The patch under image pixel (x, y) of the embedding: a thumbnail, else the nearest
        point within ``CLICK_RADIUS_PX``."""
        if self.result is None:
            return None
        for x0, y0, x1, y1, i in reversed(self.hits["thumbs"]):  # drawn last = on top
            if x0 <= x <= x1 and y0 <= y <= y1:
                return int(i)
        pts = self.hits["points"]
        if len(pts) == 0:
            return None
        d = np.hypot(pts[:, 0] - x, pts[:, 1] - y)
        k = int(np.argmin(d))
        return k if d[k] <= CLICK_RADIUS_PX else None

    def world_position(self, index: int) -> tuple[float, float]:
        """World (row, col) of patch ``index``'s centre on the slide layer."""
        r = self.result
        layer = self.viewer.layers[self.slide_name] if self.slide_name in self.viewer.layers \
            else None
        if layer is None:
            return float(r.rows[index] * r.mpp), float(r.cols[index] * r.mpp)
        sy, sx = (float(v) for v in layer.scale[-2:])
        ty, tx = (float(v) for v in layer.translate[-2:])
        return ty + float(r.rows[index]) * sy, tx + float(r.cols[index]) * sx

    def jump_to(self, index: int) -> tuple[float, float] | None:
        """Centre the view on patch ``index``, zoomed so it spans a quarter of the canvas, and
        outline it."""
        r = self.result
        if r is None or not 0 <= index < len(r.rows):
            return None
        y, x = self.world_position(index)
        layer = self.viewer.layers[self.slide_name] if self.slide_name in self.viewer.layers \
            else None
        step = float(layer.scale[-1]) if layer is not None else r.mpp
        side = r.footprint * step
        cam = self.viewer.scene.camera
        cam.center = (y, x)
        canvas = min(self.viewer.canvas.size) if hasattr(self.viewer, "canvas") else 600
        cam.zoom = max(PATCH_SCREEN_SHARE * canvas / max(side, 1e-9), 1e-4)
        half = side / 2
        rect = np.array([[y - half, x - half], [y - half, x + half], [y + half, x + half],
                         [y + half, x - half]])
        meta = {"xhisto": {"kind": "meta-patch", "index": int(index),
                           "predicted": r.class_names[int(r.predicted[index])],
                           "confidence": float(r.confidence[index])}}
        if PATCH_LAYER in self.viewer.layers:
            shapes = self.viewer.layers[PATCH_LAYER]
            shapes.data = [rect]
            shapes.metadata = meta
        else:
            self.viewer.add_shapes([rect], shape_type="rectangle", name=PATCH_LAYER,
                                   edge_color="#00e5ff", face_color="transparent",
                                   edge_width=max(side / 40, 1e-6), metadata=meta)
        return y, x

    def jump_to_disagreement(self, row: int):
        r = self.result
        if r is None or not 0 <= row < len(r.disagreements):
            return None
        return self.jump_to(int(r.disagreements[row]["index"]))

    def save(self, folder) -> dict:
        """Write the figures and tables (:func:`write_meta_outputs`) into a fresh folder."""
        from ...demo import fresh_dir
        from ...export.meta_figures import write_meta_outputs

        if self.result is None:
            raise XhistoError("run a study first")
        return write_meta_outputs(self.result, fresh_dir(folder))
