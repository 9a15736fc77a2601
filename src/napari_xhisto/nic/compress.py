"""Compress a slide into a grid of patch codes (seed 004): tissue-masked, batched, resumable.

The region is cut into cells of ``stride`` level-0 px; cell (i, j) encodes the ``patch`` x
``patch`` level-0 window at ``origin + (i, j) * stride`` (``patch`` = the encoder's field of view,
``patch_px * encoder.mpp / slide.mpp``), resampled to the encoder's ``patch_px``. Background
cells (the cheap tissue test of ``models.inference.plan_patches``) stay 0.

Cells are processed chunk by chunk (``chunk`` x ``chunk`` cells, the Zarr chunk), each chunk's
tissue cells in fixed batches, so a chunk's codes do not depend on what ran before: with ``out``
every finished chunk is written and marked done in ``<out>.partial``, a killed run resumes from
there, and kill + resume gives the same bytes as one run. Patch reads run on a thread pool a few
batches ahead of the encoder. Cells whose patch shows a damaged tile get NaN codes and are
counted in the provenance.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .. import options
from ..errors import XhistoError
from .codes import DEFAULT_CHUNK, CodeGrid, CodesError, CodeStore, read_codes

__all__ = ["MAX_UPSAMPLE", "MAX_DOWNSAMPLE", "compress_slide", "partial_path"]

MAX_UPSAMPLE = 1.5     # slide coarser than the encoder by more than this: refused
MAX_DOWNSAMPLE = 32.0  # slide finer by more than this: refused (likely a wrong µm/px)


def partial_path(out) -> Path:
    """Where an unfinished run on ``out`` keeps its chunks: ``<out>.partial``."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def _footprint(slide, encoder) -> int:
    if slide.mpp is None:
        raise XhistoError(f"{getattr(slide, 'path', 'the slide')}: no µm/px in its metadata; "
                          "pass --mpp so patches match the encoder's scale")
    ratio = encoder.mpp / float(slide.mpp)
    if ratio < 1 / MAX_UPSAMPLE or ratio > MAX_DOWNSAMPLE:
        raise XhistoError(
            f"the encoder works at {encoder.mpp:g} µm/px but the slide is {float(slide.mpp):g} "
            f"µm/px ({ratio:.3g}x): too far to resample patches faithfully; use an encoder "
            "trained at the slide's scale (xhisto train-encoder --mpp), or fix the slide's "
            "µm/px with --mpp")
    return max(1, round(encoder.patch_px * ratio))


def _chunk_jobs(plan, chunk: int, done: np.ndarray, batch_size: int):
    """Per chunk not done: (a, b, list of cell batches), row-major."""
    rows, cols = plan.shape
    jobs = []
    for a in range(done.shape[0]):
        for b in range(done.shape[1]):
            if done[a, b]:
                continue
            t = plan.tissue_mask[a * chunk:(a + 1) * chunk, b * chunk:(b + 1) * chunk]
            cells = np.argwhere(t) + [a * chunk, b * chunk]
            jobs.append((a, b, [cells[k:k + batch_size]
                                for k in range(0, len(cells), batch_size)]))
    return jobs


def _open_store(out: Path, plan_key: dict, *, force: bool, create):
    """The partial store to write into: resumed when its plan matches, else a fresh one."""
    part = partial_path(out)
    if out.exists() and not force:
        raise CodesError(f"{out} already exists; choose another --out or pass --force to "
                         "replace it")
    if part.exists():
        try:
            store = CodeStore.open(part)
            same = store.meta.get("plan") == plan_key
        except CodesError:
            same = False
        if same:
            return store, True
        if not force:
            raise CodesError(f"{part} holds an unfinished run with other settings (slide, "
                             "encoder, region, stride, chunk or batch size); delete it or pass "
                             "--force to start again")
        shutil.rmtree(part)
    return create(part), False


def compress_slide(slide, encoder, *, region=None, batch_size: int = 64, out=None,
                   stride: int | None = None, tissue_threshold: float = 0.1,
                   chunk: int = DEFAULT_CHUNK, workers: int | None = None,
                   prefetch: int | None = None, force: bool = False):
    """Encode every tissue patch of ``region``: a generator of (done, total) returning a CodeGrid.

    Parameters
    ----------
    slide : Slide or path
    encoder : Encoder, spec path or bundled kind name (see ``nic.encoders.load_encoder``)
    region : Region, optional
        Level-0 region (default the whole slide).
    batch_size : int
        Patches per forward pass (at most; a chunk's tissue cells are split into such batches).
    out : path, optional
        ``SLIDE.nic.zarr`` to write; the run is then resumable (see module docstring) and the
        returned grid reads lazily from it. Without ``out`` codes are kept in memory.
    stride : int, optional
        Level-0 px between cells (default: the patch footprint, no overlap).
    tissue_threshold : float
        Minimum tissue fraction of a cell for it to be encoded.
    chunk : int
        Cells per Zarr chunk side (the unit of resuming).
    workers, prefetch : reader threads and batches read ahead.
    force : bool
        Replace an existing ``out`` (only once the new one is complete) or a partial run with
        other settings.

    Returns
    -------
    CodeGrid
        As the generator's return value (``StopIteration.value``).
    """
    from ..cohort.fingerprint import file_fingerprint
    from ..models.inference import damage_in_region, damaged_cells, plan_patches, read_patch_batch
    from .encoders import load_encoder

    batch_size = options.batch_size(batch_size, "batch_size")
    chunk = int(options.whole_number(chunk, "chunk", minimum=1, maximum=4096))
    workers = options.threads(workers, "workers") if workers is not None else min(
        4, os.cpu_count() or 1)
    prefetch = prefetch or workers + 1
    if isinstance(slide, str | os.PathLike):
        from ..slide import open_slide

        slide = open_slide(slide)
    encoder = load_encoder(encoder)
    patch = _footprint(slide, encoder)
    stride = patch if stride is None else int(options.whole_number(stride, "stride", minimum=1))
    spec = SimpleNamespace(patch_size=patch, mpp=float(slide.mpp),
                           network_input_size=encoder.patch_px)
    plan = plan_patches(slide, region, spec, stride=stride, tissue_threshold=tissue_threshold)
    rows, cols = plan.shape
    C = encoder.code_size
    origin = (int(plan.region.level0_row), int(plan.region.level0_col))
    slide_path = str(getattr(slide, "path", ""))
    plan_key = {"encoder": encoder.provenance(), "slide_fingerprint":
                file_fingerprint(slide_path) if slide_path and Path(slide_path).exists() else None,
                "region": list(plan.region.as_tuple()), "stride": stride, "patch": patch,
                "code_size": C, "chunk": chunk, "batch_size": batch_size,
                "tissue_threshold": float(tissue_threshold), "slide_mpp": float(slide.mpp)}
    store, resumed = None, False
    if out is not None:
        out = Path(out)
        store, resumed = _open_store(out, plan_key, force=force, create=lambda p: CodeStore.create(
            p, shape=(rows, cols), code_size=C, stride=stride, patch=patch, origin=origin,
            mpp=float(slide.mpp), plan=plan_key, chunk=chunk))
        done_chunks = store.done_chunks()
        memory = None
    else:
        done_chunks = np.zeros((-(-rows // chunk), -(-cols // chunk)), bool)
        memory = (np.zeros((rows, cols, C), np.float32), np.zeros((rows, cols), bool))
    thumb_damage = (plan.damaged_mask if plan.damaged_mask is not None
                    else np.zeros((rows, cols), bool))
    total = len(plan.cells)
    jobs = _chunk_jobs(plan, chunk, done_chunks, batch_size)
    todo_cells = sum(len(c) for _, _, bs in jobs for c in bs)
    done = total - todo_cells
    n_reused = int(done_chunks.sum())
    t_start, wait_s, compute_s = time.perf_counter(), 0.0, 0.0
    yield done, total

    def finish_chunk(a, b, codes, dmg):
        rs, cs = slice(a * chunk, min((a + 1) * chunk, rows)), slice(b * chunk, min((b + 1) * chunk, cols))
        dmg = dmg | thumb_damage[rs, cs]
        codes[dmg] = np.nan
        if store is not None:
            store.write_chunk(a, b, codes, plan.tissue_mask[rs, cs], dmg)
        else:
            memory[0][rs, cs], memory[1][rs, cs] = codes, dmg

    flat = [(k, cells) for k, (_, _, batches) in enumerate(jobs) for cells in batches]
    pending_batches = [len(batches) for _, _, batches in jobs]
    bufs: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def buf(k):
        if k not in bufs:
            a, b = jobs[k][:2]
            h = min(chunk, rows - a * chunk)
            w = min(chunk, cols - b * chunk)
            bufs[k] = (np.zeros((h, w, C), np.float32), np.zeros((h, w), bool))
        return bufs[k]

    for k, n in enumerate(pending_batches):  # chunks without tissue: written (zeros) at once
        if n == 0:
            finish_chunk(jobs[k][0], jobs[k][1], *buf(k))
            bufs.pop(k)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xhisto-nic") as pool:
        pending = deque()
        todo = iter(flat)
        for job in todo:
            pending.append((job, pool.submit(read_patch_batch, slide, plan, job[1])))
            if len(pending) >= prefetch:
                break
        try:
            while pending:
                (k, cells), fut = pending.popleft()
                t0 = time.perf_counter()
                images = fut.result()
                t1 = time.perf_counter()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(read_patch_batch, slide, plan, nxt[1])))
                z = encoder.encode(images, batch_size=len(images))
                compute_s += time.perf_counter() - t1
                wait_s += t1 - t0
                a, b = jobs[k][:2]
                codes, dmg = buf(k)
                li, lj = cells[:, 0] - a * chunk, cells[:, 1] - b * chunk
                codes[li, lj] = z
                hit = damaged_cells(slide, plan, cells)
                dmg[li[hit], lj[hit]] = True
                pending_batches[k] -= 1
                if pending_batches[k] == 0:
                    finish_chunk(a, b, *bufs.pop(k))
                done += len(cells)
                yield done, total
        finally:  # on cancel (generator closed) drop reads not started yet
            for _, fut in pending:
                fut.cancel()
    elapsed = time.perf_counter() - t_start
    damaged = (np.asarray(store.group["damaged"][...], bool) if store is not None
               else memory[1])
    prov = {"encoder": encoder.provenance(), "slide": slide_path,
            "slide_fingerprint": plan_key["slide_fingerprint"], "slide_mpp": float(slide.mpp),
            "region": list(plan.region.as_tuple()), "P": patch, "S": stride, "C": C,
            "patch_level0": patch, "stride_level0": stride, "code_size": C,
            "tissue_threshold": float(tissue_threshold), "batch_size": batch_size,
            "chunk": chunk, "n_patches": total, "n_encoded_this_run": todo_cells,
            "chunks_reused": n_reused, "resumed": resumed, "seconds": elapsed,
            "read_wait_seconds": wait_s, "compute_seconds": compute_s,
            "n_damaged_cells": int(damaged.sum()),
            "damaged_tiles": damage_in_region(slide, plan.region)}
    if store is None:
        return CodeGrid(codes=memory[0], stride=stride, patch=patch, origin=origin,
                        mpp=float(slide.mpp), tissue=plan.tissue_mask, provenance=prov,
                        damaged=damaged if damaged.any() else None)
    if out.exists():  # --force: the old result goes only now that the new one is complete
        old = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.old")
        os.replace(out, old)
        store.finish(out, prov)
        shutil.rmtree(old, ignore_errors=True)
    else:
        store.finish(out, prov)
    return read_codes(out)
