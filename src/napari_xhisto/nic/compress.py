"""Compress a slide into a grid of patch codes (seed 004): tissue-masked, batched, resumable.

The region is cut into cells of ``stride`` level-0 px; cell (i, j) encodes the ``patch`` x
``patch`` level-0 window at ``origin + (i, j) * stride`` (``patch`` = the encoder's field of view,
``patch_px * encoder.mpp / slide.mpp``), resampled to the encoder's ``patch_px``. Background
cells (the cheap tissue test of ``models.inference.plan_patches``) stay 0.

Cells are processed chunk by chunk (``chunk`` x ``chunk`` cells, the Zarr chunk, row-major), in
fixed batches over all tissue cells in that order, so a cell is always encoded in the same
batch whatever ran before: with ``out`` every finished chunk is written and marked done in
``<out>.partial``, a killed run resumes from there (re-encoding a batch that straddles a
finished chunk, keeping the stored codes), and kill + resume gives the same bytes as one run.
On CPU, batches run on a few threads at once, each reading its patches and encoding them with
one torch thread (``models.inference.batch_scheme`` says when), and finished chunks are written by one background
thread in order (a chunk is marked done only after its codes are written, so resuming stays
exact). Cells whose patch shows a damaged tile get NaN codes and are counted in the provenance.
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

__all__ = ["MAX_UPSAMPLE", "MAX_DOWNSAMPLE", "compress_slide", "partial_path", "tile_cache"]

MAX_UPSAMPLE = 1.5     # slide coarser than the encoder by more than this: refused
MAX_DOWNSAMPLE = 32.0  # slide finer by more than this: refused (likely a wrong µm/px)
CACHE_BYTES = 32 * 2**20  # decoded tiles kept while compressing a slide opened here


def tile_cache():
    """A small decoded-tile cache for one pass over a slide (compress reads each tile about
    once, chunk by chunk): memory stays flat in slide size, unlike the shared 256 MB cache."""
    from ..slide.cache import TileCache

    return TileCache(CACHE_BYTES)


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


def _batches(plan, chunk: int, done: np.ndarray, batch_size: int):
    """Fixed batches over every tissue cell, in chunk order, and what is left to do.

    The tissue cells of all chunks (row-major chunks, row-major cells inside) are cut into
    consecutive batches of ``batch_size`` whatever is done already, so every cell is always
    encoded in the same batch (its code never depends on how a run was interrupted). Returns
    ``(batches, chunk_of, remaining)``: the batches that hold a cell of an unfinished chunk
    (each ``(cells, chunk ids)``), and per unfinished chunk id ``(a, b)`` how many of its cells
    are still to encode.
    """
    cells_all, ids = [], []
    for a in range(done.shape[0]):
        for b in range(done.shape[1]):
            t = plan.tissue_mask[a * chunk:(a + 1) * chunk, b * chunk:(b + 1) * chunk]
            cells = np.argwhere(t) + [a * chunk, b * chunk]
            cells_all.append(cells)
            ids += [(a, b)] * len(cells)
    cells_all = np.concatenate(cells_all) if cells_all else np.zeros((0, 2), int)
    remaining: dict = {}
    for a in range(done.shape[0]):
        for b in range(done.shape[1]):
            if not done[a, b]:
                remaining[(a, b)] = 0
    for cid in ids:
        if cid in remaining:
            remaining[cid] += 1
    batches = []
    for k in range(0, len(cells_all), batch_size):
        chunk_ids = ids[k:k + batch_size]
        if any(c in remaining for c in chunk_ids):
            batches.append((cells_all[k:k + batch_size], chunk_ids))
    return batches, remaining


def _encode_batches(slide, plan, batches, encoder, workers: int, prefetch: int | None,
                    in_threads: bool = True):
    """Read and encode ``batches`` (``models.inference.run_batches``: on ``workers`` threads,
    each reading a batch and encoding it with one torch thread, or with ``in_threads`` False
    reading ahead of the encoder): a generator of ``(cells, chunk_ids, codes, damaged, read_s,
    encode_s)`` in order."""
    from ..models.inference import damaged_cells, read_patch_batch, run_batches

    for (cells, chunk_ids), z, read_s, encode_s in run_batches(
            batches, lambda job: read_patch_batch(slide, plan, job[0]),
            lambda images: encoder.encode(images, batch_size=len(images)),
            workers=workers, prefetch=prefetch, forward_in_threads=in_threads):
        yield cells, chunk_ids, z, damaged_cells(slide, plan, cells), read_s, encode_s


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
    workers, prefetch : int, optional
        Threads that each read and encode a whole batch, or reader threads where torch may use
        one thread only (see ``models.inference.batch_scheme``, which sets the default), and
        batches in flight (default ``workers + 1``).
    force : bool
        Replace an existing ``out`` (only once the new one is complete) or a partial run with
        other settings.

    Returns
    -------
    CodeGrid
        As the generator's return value (``StopIteration.value``).
    """
    from ..cohort.fingerprint import file_fingerprint
    from ..models.inference import batch_scheme, damage_in_region, plan_patches
    from .encoders import load_encoder

    batch_size = options.batch_size(batch_size, "batch_size")
    chunk = int(options.whole_number(chunk, "chunk", minimum=1, maximum=4096))
    in_threads, default_workers = batch_scheme()
    workers = options.threads(workers, "workers") if workers is not None else default_workers
    if isinstance(slide, str | os.PathLike):
        from ..slide import open_slide

        with open_slide(slide, cache=tile_cache()) as opened:
            return (yield from compress_slide(
                opened, encoder, region=region, batch_size=batch_size, out=out, stride=stride,
                tissue_threshold=tissue_threshold, chunk=chunk, workers=workers,
                prefetch=prefetch, force=force))
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
        if not resumed:
            store.write_tissue(plan.tissue_mask)
        memory = None
    else:
        done_chunks = np.zeros((-(-rows // chunk), -(-cols // chunk)), bool)
        memory = (np.zeros((rows, cols, C), np.float32), np.zeros((rows, cols), bool))
    thumb_damage = (plan.damaged_mask if plan.damaged_mask is not None
                    else np.zeros((rows, cols), bool))
    total = len(plan.cells)
    batches, remaining = _batches(plan, chunk, done_chunks, batch_size)
    todo_cells = sum(remaining.values())
    done = total - todo_cells
    n_reused = int(done_chunks.sum())
    t_start, read_s, encode_s = time.perf_counter(), 0.0, 0.0
    yield done, total

    def bounds(a, b):
        return (slice(a * chunk, min((a + 1) * chunk, rows)),
                slice(b * chunk, min((b + 1) * chunk, cols)))

    writes: deque = deque()

    def finish_chunk(a, b, codes, dmg):
        rs, cs = bounds(a, b)
        dmg = dmg | thumb_damage[rs, cs]
        codes[dmg] = np.nan
        if store is not None:
            writes.append(writer.submit(store.write_chunk, a, b, codes, None, dmg))
            while writes and writes[0].done():
                writes.popleft().result()  # a failed write stops the run here
        else:
            memory[0][rs, cs], memory[1][rs, cs] = codes, dmg

    bufs: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def buf(cid):
        if cid not in bufs:
            rs, cs = bounds(*cid)
            h, w = rs.stop - rs.start, cs.stop - cs.start
            bufs[cid] = (np.zeros((h, w, C), np.float32), np.zeros((h, w), bool))
        return bufs[cid]

    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xhisto-nic-write")
    try:
        for cid in [c for c, n in remaining.items() if n == 0]:  # no tissue: zeros at once
            finish_chunk(*cid, *buf(cid))
            bufs.pop(cid)
            remaining.pop(cid)
        for cells, chunk_ids, z, hit, t_read, t_encode in _encode_batches(
                slide, plan, batches, encoder, workers, prefetch, in_threads):
            read_s += t_read
            encode_s += t_encode
            n_new = 0
            for k, cid in enumerate(chunk_ids):
                if cid not in remaining:
                    continue  # a finished chunk's cell, re-encoded only to fill the batch
                codes, dmg = buf(cid)
                li, lj = cells[k, 0] - cid[0] * chunk, cells[k, 1] - cid[1] * chunk
                codes[li, lj] = z[k]
                dmg[li, lj] = dmg[li, lj] or bool(hit[k])
                remaining[cid] -= 1
                n_new += 1
                if remaining[cid] == 0:
                    finish_chunk(*cid, *bufs.pop(cid))
                    del remaining[cid]
            done += n_new
            yield done, total
    finally:  # finished chunks are kept even on cancel: a resume starts after them
        writer.shutdown(wait=True)
    for fut in writes:
        fut.result()
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
            "workers": workers, "read_seconds": read_s, "encode_seconds": encode_s,
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
