"""Meta-explanations of a slide (seed 002): what the explanations of many patches have in common.

:func:`iter_meta_study` samples ``n`` tissue patches of a slide, predicts and explains each for
its predicted class, and returns a :class:`MetaResult`: mean maps per predicted class and
confidence bin, a t-SNE embedding of all maps with k-means clusters (k = number of classes),
the clusters' purity against annotated labels, and the confident disagreements with them.
It is a generator of ``(done, total)`` (one step per batch) so the CLI and the widget share it.

Candidate patches lie side by side on the slide's grid; when the slide has fewer tissue patches
than asked for, on a grid of half a patch (neighbours overlap by half).
Maps are compared by shape, not scale: each patch's map is divided by its own largest |R|
before grouping and embedding. Confidence bins are 6 equal-width bins on ``[1/C, 1]`` (the
values a C-class softmax maximum can take), upper edges inclusive
(:func:`napari_xhisto.metrics.meta.confidence_bins`). Patch labels follow
:mod:`napari_xhisto.metrics.meta_labels` (cells in the patch vote, else the region at its
centre, else unlabelled).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import ModelError, XhistoError
from ..metrics.meta import (
    chance_purity,
    cluster_purity,
    confidence_bins,
    confident_disagreements,
    embed_and_cluster,
    mean_maps_by_confidence,
)
from ..metrics.meta_labels import LABEL_RULE, patch_labels
from .registry import get_explainer, is_torchscript

THUMB_PX = 32
EMBED_PX = 16  # maps are area-pooled to at most this side before PCA and t-SNE


@dataclass
class MetaResult:
    """Everything a meta-explanation study found; arrays are per sampled patch (N).

    Positions are patch centres in level-0 px (``rows``, ``cols``); µm = px x ``mpp``.
    ``labels`` are class indices (``-1`` unlabelled); ``purity`` is None without labels.
    """

    class_names: list[str]
    method: str
    mpp: float
    footprint: float
    rows: np.ndarray
    cols: np.ndarray
    probs: np.ndarray
    maps: np.ndarray
    thumbnails: np.ndarray
    n_bins: int
    bin_low: float
    bins: np.ndarray
    groups: list[dict]
    embedding: np.ndarray
    clusters: np.ndarray
    labels: np.ndarray
    label_source: np.ndarray
    purity: float | None
    purity_chance: float | None
    disagreements: list[dict]
    threshold: float
    signed: bool = False
    seconds: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)

    @property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        return self.probs.max(axis=1)

    def label_name(self, k: int) -> str:
        return "" if k < 0 else self.class_names[int(k)]

    def records(self) -> list[dict]:
        """One row per patch: position (level-0 px, µm), class, confidence, bin, cluster, label."""
        pred, conf = self.predicted, self.confidence
        return [{"index": i, "row_px": float(self.rows[i]), "col_px": float(self.cols[i]),
                 "y_um": float(self.rows[i] * self.mpp), "x_um": float(self.cols[i] * self.mpp),
                 "predicted": self.class_names[pred[i]], "confidence": float(conf[i]),
                 "bin": int(self.bins[i]), "cluster": int(self.clusters[i]),
                 "tsne_x": float(self.embedding[i, 0]), "tsne_y": float(self.embedding[i, 1]),
                 "label": self.label_name(self.labels[i]),
                 "label_source": str(self.label_source[i])}
                for i in range(len(self.rows))]

    def disagreement_records(self) -> list[dict]:
        """The confident disagreements with their positions (level-0 px and µm)."""
        out = []
        for d in self.disagreements:
            i = d["index"]
            out.append({**d, "row_px": float(self.rows[i]), "col_px": float(self.cols[i]),
                        "y_um": float(self.rows[i] * self.mpp),
                        "x_um": float(self.cols[i] * self.mpp)})
        return out

    def summary(self) -> dict:
        """Headline figures (no per-patch arrays)."""
        n_labelled = int((self.labels >= 0).sum())
        return {"method": self.method, "classes": self.class_names, "n_patches": len(self.rows),
                "n_labelled": n_labelled, "label_rule": LABEL_RULE, "k": len(self.class_names),
                "purity": self.purity, "purity_chance": self.purity_chance,
                "n_bins": self.n_bins, "bin_edges": np.linspace(self.bin_low, 1, self.n_bins + 1
                                                                ).round(6).tolist(),
                "groups": [{k: v for k, v in g.items() if k != "mean"} for g in self.groups],
                "disagreement_threshold": self.threshold,
                "n_disagreements": len(self.disagreements), "seconds": self.seconds,
                "notes": self.notes, "mpp": self.mpp, "footprint_level0": self.footprint,
                "provenance": self.provenance}


class _Clock:
    """Wall and CPU (this process, all threads) seconds per phase."""

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._t = (time.perf_counter(), time.process_time())

    def lap(self, phase: str) -> None:
        now = (time.perf_counter(), time.process_time())
        self.wall[phase] = self.wall.get(phase, 0.0) + now[0] - self._t[0]
        self.cpu[phase] = self.cpu.get(phase, 0.0) + now[1] - self._t[1]
        self._t = now


def _pool(maps: np.ndarray, side: int) -> np.ndarray:
    """Area-pool (N, H, W) maps to at most ``side`` x ``side`` (integer factors)."""
    n, h, w = maps.shape
    fh, fw = max(1, h // side), max(1, w // side)
    h2, w2 = h // fh, w // fw
    return maps[:, :h2 * fh, :w2 * fw].reshape(n, h2, fh, w2, fw).mean(axis=(2, 4))


def _thumbnails(images: np.ndarray, side: int) -> np.ndarray:
    n, h, w, _ = images.shape
    f = max(1, min(h, w) // side)
    h2, w2 = h // f, w // f
    small = images[:, :h2 * f, :w2 * f].reshape(n, h2, f, w2, f, 3).mean(axis=(2, 4))
    return small.round().astype(np.uint8)


def _method_params(explainer, model, params: dict) -> dict:
    params = dict(params or {})
    if "mean" in explainer.params and "mean" not in params:  # z-box bounds from normalisation
        params.update(mean=tuple(model.spec.mean), std=tuple(model.spec.std))
    if "target_layer" in explainer.params and not params.get("target_layer"):
        params["target_layer"] = getattr(model.spec, "target_layer", None)
    return explainer.check_params(**params)


def sample_cells(plan, n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """``n`` tissue cells of ``plan`` at random (seeded), row-major; notes when fewer exist."""
    cells = plan.cells
    if plan.damaged_mask is not None and len(cells):
        cells = cells[~plan.damaged_mask[cells[:, 0], cells[:, 1]]]
    if len(cells) == 0:
        raise XhistoError("the slide has no tissue patch at this tissue threshold (0 patches): "
                          "lower --tissue-threshold or check the slide")
    notes = []
    if n >= len(cells):
        if n > len(cells):
            notes.append(f"asked for {n} patches, the slide has {len(cells)} tissue patches: "
                         "all of them were used")
        return cells, notes
    pick = np.sort(np.random.default_rng(seed).choice(len(cells), size=n, replace=False))
    return cells[pick], notes  # argwhere order is row-major: sorted picks keep it


@contextmanager
def compute_threads(n: int | None):
    """Run torch, OpenMP and BLAS with ``n`` threads inside the block (None: as they are).

    On a shared 2-core machine two threads per pool spun at their barriers: t-SNE took 4x the
    CPU time and Grad-CAM 4-5x the wall time of one thread (``bench/meta.py``).
    """
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        with threadpool_limits(limits=int(n)):
            yield
    finally:
        torch.set_num_threads(before)


def iter_meta_study(slide, model, method: str, *, n: int = 2000, seed: int = 0, annotations=None,
                    n_bins: int = 6, threshold: float = 0.9, batch_size: int = 64,
                    tissue_threshold: float = 0.1, params: dict | None = None,
                    perplexity: float = 30.0, threads: int | None = 1):
    """Sample, predict, explain, group, embed and cluster: a generator of ``(done, total)``.

    Parameters
    ----------
    slide : Slide
        An open slide with µm/px.
    model : LoadedModel
    method : str
        A registered explainer (``xhisto methods``); each patch is explained for its predicted
        class.
    n : int
        Patches to sample among the tissue patches (all of them if fewer).
    seed : int
        Sampling, PCA, t-SNE and k-means seed.
    annotations : AnnotationSet, optional
        Cells and regions for patch labels (purity, disagreements); None skips both, with a note.
    n_bins : int
        Confidence bins (6 in seed 002).
    threshold : float
        A disagreement is listed when the other class has p > threshold.
    batch_size : int
        Patches per read, forward and explainer call.
    tissue_threshold : float
        Minimum tissue fraction of a patch to be sampled.
    params : dict, optional
        Method parameters.
    perplexity : float
        t-SNE perplexity (capped at (N - 1) / 3).
    threads : int or None
        Compute threads (torch, OpenMP, BLAS) while the study runs; 1 by default (see
        :func:`compute_threads`), None leaves them as they are.

    Returns
    -------
    MetaResult
    """
    if int(n) <= 0:
        raise XhistoError(f"--n must be a positive number of patches, got {n}")
    if int(batch_size) <= 0:
        raise XhistoError(f"--batch-size must be >= 1, got {batch_size}")
    if not 0.0 <= float(threshold) < 1.0:
        raise XhistoError(f"--threshold must be in [0, 1), got {threshold}")
    explainer = get_explainer(method)
    if "module-hooks" in explainer.needs and is_torchscript(model.module):
        raise ModelError(f"{method} needs hooks on the model's layers; {model.spec.name} is "
                         "TorchScript. Load a module-based model or choose another method")
    params = _method_params(explainer, model, params or {})
    if threads is not None and int(threads) < 1:
        raise XhistoError(f"--threads must be >= 1, got {threads}")
    with compute_threads(threads):
        result = yield from _run_study(slide, model, method, explainer, params, n=int(n),
                                       seed=int(seed), annotations=annotations, n_bins=n_bins,
                                       threshold=threshold, batch_size=int(batch_size),
                                       tissue_threshold=tissue_threshold, perplexity=perplexity,
                                       threads=threads)
    return result


def _run_study(slide, model, method, explainer, params, *, n, seed, annotations, n_bins,
               threshold, batch_size, tissue_threshold, perplexity, threads):
    from ..models.inference import plan_patches, read_patch_batch

    spec = model.spec
    t0, clock = time.perf_counter(), _Clock()
    plan = plan_patches(slide, None, spec, tissue_threshold=tissue_threshold)
    if 0 < len(plan.cells) < int(n):  # too few side-by-side patches: a half-patch grid
        plan = plan_patches(slide, None, spec, stride=plan.footprint / 2,
                            tissue_threshold=tissue_threshold)
    cells, notes = sample_cells(plan, int(n), int(seed))
    total_n = len(cells)
    if total_n < max(4, spec.num_classes):
        raise XhistoError(f"only {total_n} tissue patch(es) to sample: the embedding needs at "
                          f"least {max(4, spec.num_classes)}; ask for more with --n, or use a "
                          "larger slide or a lower --tissue-threshold")
    steps = -(-total_n // batch_size)
    total = steps + 2
    clock.lap("plan")
    yield 0, total
    probs = np.zeros((total_n, spec.num_classes), np.float32)
    maps, thumbs = None, None
    for b in range(steps):
        sl = slice(b * batch_size, min((b + 1) * batch_size, total_n))
        clock.lap("wait")  # time the caller spent between two batches
        images = read_patch_batch(slide, plan, cells[sl])
        clock.lap("read")
        p = model.predict_proba(images, batch_size=batch_size)
        probs[sl] = p
        clock.lap("predict")
        pred = p.argmax(axis=1)
        with torch.no_grad():
            x = model.preprocess(images)
        targets = torch.as_tensor(pred, dtype=torch.long, device=x.device)
        batch_maps = np.asarray(explainer.explain(model.module, x, targets, **params), np.float32)
        if maps is None:
            maps = np.zeros((total_n,) + batch_maps.shape[1:], np.float32)
            thumbs = np.zeros((total_n, *_thumbnails(images[:1], THUMB_PX).shape[1:]), np.uint8)
        maps[sl] = batch_maps
        thumbs[sl] = _thumbnails(images, THUMB_PX)
        clock.lap("explain")
        yield b + 1, total
    peak = np.nanmax(np.abs(maps.reshape(total_n, -1)), axis=1)
    maps = np.nan_to_num(maps / np.where(peak > 0, peak, 1.0)[:, None, None])
    low = 1.0 / spec.num_classes
    clock.lap("wait")
    groups = mean_maps_by_confidence(maps, probs, n_bins=n_bins, low=low,
                                     class_names=list(spec.class_names))
    bins = confidence_bins(probs.max(axis=1), n_bins=n_bins, low=low)
    clock.lap("group")
    k = spec.num_classes
    emb = embed_and_cluster(_pool(maps, EMBED_PX), k=k, seed=int(seed), perplexity=perplexity,
                            n_jobs=None if threads is None else int(threads))
    clock.lap("tsne")
    yield steps + 1, total
    top, left = (np.array([plan.window(int(i), int(j))[a] for i, j in cells]) + plan.footprint / 2
                 for a in (0, 1))
    labels = np.full(total_n, -1, np.int64)
    source = np.full(total_n, "none")
    purity = chance = None
    disagreements: list[dict] = []
    if annotations is None or annotations.is_empty():
        notes.append("no annotations: cluster purity and confident disagreements skipped")
    else:
        labels, source = patch_labels(np.stack([top, left], axis=1), plan.footprint,
                                      list(spec.class_names), cells=annotations.cells,
                                      regions=annotations.regions,
                                      positive=spec.positive_class)
        have = labels >= 0
        if have.sum() < 2:
            notes.append(f"{int(have.sum())} sampled patch(es) have a label from the annotations: "
                         "cluster purity skipped")
        else:
            purity = cluster_purity(emb["clusters"][have], labels[have])
            chance = chance_purity(emb["clusters"][have], labels[have], seed=int(seed))
        disagreements = confident_disagreements(probs, labels, threshold=threshold,
                                                class_names=list(spec.class_names))
    clock.lap("labels")
    clock.wall.pop("wait", None)
    clock.cpu.pop("wait", None)
    seconds = {**clock.wall, "total": time.perf_counter() - t0}
    seconds.update({f"cpu_{k}": v for k, v in clock.cpu.items()})
    prov = {"kind": "meta-explanation", "method": method, "params": _jsonable(params),
            "n_requested": int(n), "seed": int(seed), "tissue_threshold": tissue_threshold,
            "batch_size": int(batch_size), "threads": threads, "perplexity": emb["perplexity"],
            "embed_px": EMBED_PX, "grid_stride_level0": float(plan.stride),
            "slide": str(getattr(slide, "path", "")),
            "n_tissue_patches": int(len(plan.cells)), "normalize": "per-patch"}
    if hasattr(model, "provenance"):
        prov["model"] = model.provenance()
    yield total, total
    return MetaResult(
        class_names=list(spec.class_names), method=method, mpp=float(slide.mpp),
        footprint=float(plan.footprint), rows=top, cols=left, probs=probs, maps=maps,
        thumbnails=thumbs, n_bins=int(n_bins), bin_low=low, bins=bins, groups=groups,
        embedding=emb["embedding"], clusters=emb["clusters"], labels=labels,
        label_source=np.asarray(source).astype(str), purity=purity, purity_chance=chance,
        disagreements=disagreements, threshold=float(threshold), signed=bool(explainer.signed),
        seconds={k: round(v, 3) for k, v in seconds.items()}, notes=notes, provenance=prov)


def _jsonable(params: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()}
