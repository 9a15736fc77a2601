"""Probability maps over slide regions: patches at the model's µm/px, batched, reads prefetched.

The region is cut into a grid of cells of ``stride`` level-0 pixels; each cell's patch is the
model's field of view (``patch_size * spec.mpp / slide.mpp`` level-0 px) centred on the cell.
Background cells (a cheap saturation/brightness mask read at a coarse scale) are skipped. On CPU
batches run on a few threads at once, each reading its patches and running the model with one
torch thread; on a GPU reads run on threads a few batches ahead of the model (``run_batches``).

A cell whose patch (or tissue-mask thumbnail) shows a damaged tile of the slide (see
``Slide.damage_mask``) gets NaN for every class and is listed in the provenance: the model's
answer on a damaged tile is never reported as a probability.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .. import options
from ..errors import ModelError
from ..geometry import Placement, Region


@dataclass
class ProbabilityMap:
    """Class probabilities on a grid placed on level 0 of a slide.

    Attributes
    ----------
    probs : ndarray (H', W', n_classes) float32
        Softmax outputs; 0 where ``tissue_mask`` is False (no patch was run there); NaN where
        ``damaged_mask`` is True.
    placement : Placement
        Pixel (i, j) covers level-0 pixels from ``origin + (i, j) * step``.
    class_names : list of str
    tissue_mask : ndarray (H', W') bool
    positive_class : str or None
    provenance : dict
        Model, region, stride, timings; ``damaged_tiles`` (the slide's damaged tiles inside the
        region, as ``Slide.damaged_tiles`` lists them) and ``n_damaged_cells``.
    damaged_mask : ndarray (H', W') bool or None
        Cells whose patch touches a damaged tile (their probabilities are NaN); None: no damage.
    """

    probs: np.ndarray
    placement: Placement
    class_names: list[str]
    tissue_mask: np.ndarray
    positive_class: str | None = None
    provenance: dict = field(default_factory=dict)
    damaged_mask: np.ndarray | None = None

    def class_map(self, name: str | None = None) -> np.ndarray:
        """(H', W') float32 probability of class ``name`` (default: the positive class)."""
        name = name or self.positive_class or self.class_names[-1]
        if name not in self.class_names:
            raise ModelError(f"class {name!r} is not one of {self.class_names}")
        return np.ascontiguousarray(self.probs[..., self.class_names.index(name)])

    @property
    def positive(self) -> np.ndarray:
        return self.class_map()


@dataclass
class PatchPlan:
    """Where each patch of a region lies; see :func:`plan_patches`."""

    region: Region
    stride: float              # level-0 px between cell origins
    footprint: float           # level-0 px a patch covers
    patch_px: int              # side of the patch array the network sees
    shape: tuple[int, int]     # grid (rows, cols)
    tissue_mask: np.ndarray    # (rows, cols) bool
    cells: np.ndarray          # (K, 2) int (i, j) of tissue cells, row-major
    damaged_mask: np.ndarray | None = None  # (rows, cols) bool: the thumbnail showed damage

    @property
    def placement(self) -> Placement:
        return Placement(float(self.region.level0_row), float(self.region.level0_col),
                         float(self.stride), float(self.stride))

    def window(self, i: int, j: int) -> tuple[float, float]:
        """Level-0 (row, col) of the top-left corner of cell (i, j)'s patch."""
        off = (self.stride - self.footprint) / 2
        return (self.region.level0_row + i * self.stride + off,
                self.region.level0_col + j * self.stride + off)


def _window_region(top: float, left: float, height: float, width: float) -> Region:
    return Region(round(top), round(left), max(1, round(height)), max(1, round(width)))


def read_window(slide, top: float, left: float, height: float, width: float,
                out_h: int, out_w: int) -> np.ndarray:
    """``slide.read_scaled`` of a level-0 window (out-of-slide parts come back white)."""
    return slide.read_scaled(_window_region(top, left, height, width), out_h, out_w)


def window_damage(slide, top: float, left: float, height: float, width: float,
                  out_h: int, out_w: int) -> np.ndarray | None:
    """Which pixels of ``read_window(...)`` with the same arguments show damaged tiles (None:
    none, or a slide that does not track damage). Call after the read."""
    if not getattr(slide, "failed_tiles", None):
        return None
    return slide.damage_mask(_window_region(top, left, height, width), out_h, out_w)


def damaged_cells(slide, plan: PatchPlan, cells: np.ndarray) -> np.ndarray:
    """bool (len(cells),): whose patch, as :func:`read_patch_batch` read it, shows damage."""
    out = np.zeros(len(cells), bool)
    if not getattr(slide, "failed_tiles", None):
        return out
    s = plan.patch_px
    for k, (i, j) in enumerate(cells):
        top, left = plan.window(int(i), int(j))
        out[k] = window_damage(slide, top, left, plan.footprint, plan.footprint, s, s) is not None
    return out


def damage_in_region(slide, region: Region) -> list[dict]:
    """The slide's damaged tiles (``Slide.damaged_tiles`` entries) overlapping ``region``."""
    out = []
    for d in getattr(slide, "damaged_tiles", None) or []:
        top, left, h, w = d["level0_region"]
        if (top < region.bottom and top + h > region.level0_row
                and left < region.right and left + w > region.level0_col):
            out.append(d)
    return out


def tissue_pixels(rgb: np.ndarray, *, min_saturation: float = 0.07,
                  max_brightness: float = 225.0) -> np.ndarray:
    """Cheap tissue test per pixel: coloured and not near-white, or dark.

    uint8 input is tested per channel plane (18x faster on a 512 px thumbnail than reducing a
    float copy over its last axis, and the same answer for every one of the 2^24 colours).
    """
    rgb = np.asarray(rgb)
    if rgb.dtype == np.uint8:
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        mx = np.maximum(np.maximum(r, g), b).astype(np.float32)
        mn = np.minimum(np.minimum(r, g), b)
        mean = (r.astype(np.float32) + g + b) / np.float32(3)
    else:
        rgb = rgb.astype(np.float32)
        mx, mn, mean = rgb.max(axis=-1), rgb.min(axis=-1), rgb.mean(axis=-1)
    sat = (mx - mn) / np.maximum(mx, np.float32(1))
    return ((sat > min_saturation) & (mean < max_brightness)) | (mean < 160.0)


def plan_patches(slide, region: Region | None, spec, *, stride: float | None = None,
                 tissue_threshold: float = 0.1) -> PatchPlan:
    """Grid, footprint and tissue cells of ``region`` for a model of spec ``spec``.

    Parameters
    ----------
    slide : Slide
        Needs ``mpp``, ``dimensions`` and ``read_scaled``.
    region : Region or None
        Level-0 region; ``None`` means the whole slide.
    spec : ModelSpec
    stride : float, optional
        Level-0 px between patch centres (default: the patch footprint, no overlap).
    tissue_threshold : float
        Minimum fraction of tissue pixels for a cell to be run (0 runs every cell).
    """
    if slide.mpp is None:
        raise ModelError("the slide has no µm/px in its metadata; open it with "
                         "open_slide(path, mpp=...) (CLI: --mpp) so patches match the model")
    H, W = slide.dimensions
    region = (Region(0, 0, H, W) if region is None
              else options.region_on_slide(region, (H, W), "region"))
    footprint = options.patch_fits(spec.patch_size * spec.mpp / float(slide.mpp), (H, W))
    stride = footprint if stride is None else options.positive(stride, "stride")
    tissue_threshold = options.tissue_threshold(tissue_threshold, "tissue_threshold")
    rows = max(1, math.ceil(region.height / stride - 1e-9))
    cols = max(1, math.ceil(region.width / stride - 1e-9))
    damaged = None
    if tissue_threshold <= 0:
        mask = np.ones((rows, cols), bool)
    else:
        k = max(1, min(4, 4096 // max(rows, cols)))
        window = (region.level0_row, region.level0_col, rows * stride, cols * stride,
                  rows * k, cols * k)
        thumb = read_window(slide, *window)
        frac = tissue_pixels(thumb).reshape(rows, k, cols, k).mean(axis=(1, 3))
        mask = frac >= tissue_threshold
        hit = window_damage(slide, *window)
        if hit is not None:
            damaged = hit.reshape(rows, k, cols, k).any(axis=(1, 3))
    cells = np.argwhere(mask)
    return PatchPlan(region=region, stride=stride, footprint=footprint,
                     patch_px=spec.network_input_size, shape=(rows, cols), tissue_mask=mask,
                     cells=cells, damaged_mask=damaged)


def read_patch_batch(slide, plan: PatchPlan, cells: np.ndarray) -> np.ndarray:
    """uint8 (len(cells), s, s, 3) patches; runs of neighbours in a row are read in one call."""
    s = plan.patch_px
    out = np.empty((len(cells), s, s, 3), np.uint8)
    contiguous = abs(plan.stride - plan.footprint) < 1e-6
    k = 0
    while k < len(cells):
        i, j = (int(v) for v in cells[k])
        n = 1
        if contiguous:
            while (k + n < len(cells) and cells[k + n][0] == i
                   and cells[k + n][1] == j + n):
                n += 1
        top, left = plan.window(i, j)
        strip = read_window(slide, top, left, plan.footprint, n * plan.footprint, s, n * s)
        out[k:k + n] = strip.reshape(s, n, s, 3).transpose(1, 0, 2, 3)
        k += n
    return out


MAX_BATCH_THREADS = 8  # batch threads by default at most: each holds a batch's activations


def batch_threads() -> int:
    """Batch threads when they run the model: one per torch intra-op thread the caller allows
    (widgets leave a core to the GUI), at most ``MAX_BATCH_THREADS``."""
    import torch

    return max(1, min(MAX_BATCH_THREADS, torch.get_num_threads()))


def batch_scheme(device="cpu", parallel_batches: bool = True) -> tuple[bool, int]:
    """``(forward_in_threads, default workers)`` for :func:`run_batches`.

    Batch threads when the model runs on CPU, may run batches at once, and the caller lets
    torch use more than one thread. Otherwise readers ahead of the model (min(4, CPUs)): on a
    GPU, for MC dropout, and where torch may use one thread only (a widget on 2 cores), where
    one batch thread reading and running in turn was 30% slower than readers beside the model
    (2.9 s vs 2.2 s for 1977 patches of the demo model).
    """
    import torch

    n = batch_threads()
    if torch.device(device).type == "cpu" and parallel_batches and n > 1:
        return True, n
    return False, min(4, os.cpu_count() or 1)


def run_batches(jobs, read, forward, *, workers: int, prefetch: int | None = None,
                forward_in_threads: bool = True):
    """Read and run ``jobs`` on ``workers`` threads: a generator of ``(job, result, read_s,
    forward_s)`` in job order (``read_s``, ``forward_s``: seconds spent in each, per batch).

    With ``forward_in_threads`` (CPU), each thread reads its batch (``read(job)``) and runs
    ``forward(images)`` on it with one torch thread, ``prefetch`` (default ``workers + 1``)
    batches in flight. Readers beside one multi-threaded forward pass were slower on CPU:
    every read that took a core stalled all torch threads at their next barrier (compress ran
    at 0.63 of the encoder's forward-only speed on 2 cores, 0.79 this way, in back-to-back
    passes: ``bench/compress.py --paired``). The caller's torch thread count is restored at the
    end.

    Without it (a GPU model), the threads only read, ``prefetch`` batches ahead, and
    ``forward`` runs in the calling thread. Closing the generator (a cancel) drops the batches
    not started yet.
    """
    import torch

    from ..slide.core import decode_on_this_thread

    prefetch = prefetch or workers + 1

    def start():
        decode_on_this_thread()  # these threads are the parallel readers already
        if forward_in_threads:
            torch.set_num_threads(1)

    def timed_read(job):
        t0 = time.perf_counter()
        return read(job), time.perf_counter() - t0

    def read_and_run(job):
        images, read_s = timed_read(job)
        t0 = time.perf_counter()
        return forward(images), read_s, time.perf_counter() - t0

    task = read_and_run if forward_in_threads else timed_read
    threads = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xhisto-batch",
                                initializer=start) as pool:
            pending = deque()
            todo = iter(jobs)
            for job in todo:
                pending.append((job, pool.submit(task, job)))
                if len(pending) >= prefetch:
                    break
            try:
                while pending:
                    job, fut = pending.popleft()
                    got = fut.result()
                    nxt = next(todo, None)
                    if nxt is not None:
                        pending.append((nxt, pool.submit(task, nxt)))
                    if forward_in_threads:
                        yield (job, *got)
                    else:
                        t0 = time.perf_counter()
                        result = forward(got[0])
                        yield job, result, got[1], time.perf_counter() - t0
            finally:
                for _, fut in pending:
                    fut.cancel()
    finally:
        if forward_in_threads:
            torch.set_num_threads(threads)  # torch keeps the last count set in any thread


def predict_region(slide, region: Region | None, model, *, batch_size: int = 64,
                   stride: float | None = None, tissue_threshold: float = 0.1,
                   workers: int | None = None, prefetch: int | None = None):
    """Run ``model`` over ``region`` of ``slide``: a generator of (done, total) patches.

    Parameters
    ----------
    slide : Slide or path
        An open slide (``napari_xhisto.slide.open_slide``) or a path to one.
    region : Region or None
        Level-0 region; ``None`` means the whole slide.
    model : LoadedModel, ModelSpec, path or "demo"
    batch_size : int
        Patches per forward pass (halved on GPU out-of-memory).
    stride : float, optional
        Level-0 px between patch centres; default the patch footprint (no overlap).
    tissue_threshold : float
        Minimum tissue fraction of a cell for its patch to run.
    workers : int, optional
        Batch threads, or reader threads (see :func:`batch_scheme`; default there).
    prefetch : int, optional
        Batches in flight (default workers + 1).

    Returns
    -------
    ProbabilityMap
        As the generator's return value (``StopIteration.value``).

    Examples
    --------
    >>> gen = predict_region(slide, Region(0, 0, 2048, 2048), "demo")  # doctest: +SKIP
    >>> try:
    ...     while True: done, total = next(gen)
    ... except StopIteration as stop:
    ...     pmap = stop.value
    """
    from .loading import load_model

    batch_size = options.batch_size(batch_size, "batch_size")
    if workers is not None:
        workers = options.threads(workers, "workers")
    if isinstance(slide, str | os.PathLike):
        from ..slide import open_slide

        slide = open_slide(slide)
    model = load_model(model)
    spec = model.spec
    plan = plan_patches(slide, region, spec, stride=stride, tissue_threshold=tissue_threshold)
    rows, cols = plan.shape
    probs = np.zeros((rows, cols, spec.num_classes), np.float32)
    damaged = (plan.damaged_mask.copy() if plan.damaged_mask is not None
               else np.zeros((rows, cols), bool))
    total = len(plan.cells)
    batches = [plan.cells[i:i + batch_size] for i in range(0, total, batch_size)]
    in_threads, default_workers = batch_scheme(model.device, model.parallel_batches)
    workers = workers or default_workers
    t_start, read_s, compute_s, done = time.perf_counter(), 0.0, 0.0, 0
    yield 0, total
    for cells, p, t_read, t_model in run_batches(
            batches, lambda cells: read_patch_batch(slide, plan, cells),
            lambda images: model.predict_proba(images, batch_size=batch_size),
            workers=workers, prefetch=prefetch,
            forward_in_threads=in_threads):
        read_s += t_read
        compute_s += t_model
        probs[cells[:, 0], cells[:, 1]] = p
        hit = damaged_cells(slide, plan, cells)
        if hit.any():
            damaged[cells[hit, 0], cells[hit, 1]] = True
        done += len(cells)
        yield done, total
    elapsed = time.perf_counter() - t_start
    probs[damaged] = np.nan
    prov = {**model.provenance(), "region": list(plan.region.as_tuple()),
            "stride_level0": plan.stride, "footprint_level0": plan.footprint,
            "slide_mpp": float(slide.mpp), "tissue_threshold": tissue_threshold,
            "n_patches": total, "seconds": elapsed, "workers": workers, "read_seconds": read_s,
            "compute_seconds": compute_s, "slide": str(getattr(slide, "path", "")),
            "n_damaged_cells": int(damaged.sum()),
            "damaged_tiles": damage_in_region(slide, plan.region)}
    return ProbabilityMap(probs=probs, placement=plan.placement,
                          class_names=list(spec.class_names), tissue_mask=plan.tissue_mask,
                          positive_class=spec.positive_class, provenance=prov,
                          damaged_mask=damaged if damaged.any() else None)


def probability_layer_data(pmap: ProbabilityMap, mpp: float, *, class_name: str | None = None
                           ) -> tuple[np.ndarray, dict]:
    """Data and keyword arguments for a napari image layer over a slide shown at ``mpp`` µm/px.

    No napari import: widgets call ``viewer.add_image(data, **kwargs)``.
    """
    name = class_name or pmap.positive_class
    data = pmap.class_map(name)
    kwargs = {**pmap.placement.layer_transform(mpp), "name": f"p({name})", "colormap": "inferno",
              "contrast_limits": (0.0, 1.0), "opacity": 0.5, "blending": "translucent",
              "metadata": {"xhisto": {"kind": "probability", "class": name,
                                      "placement": pmap.placement.to_dict(), **pmap.provenance}}}
    return data, kwargs
