"""Stream a synthetic slide to disk, tile by tile: Aperio SVS or pyramidal OME-TIFF, JPEG tiles.

Level 0 is rendered in strips of ``RENDER_BLOCK`` rows (blocks on worker threads) and handed to
tifffile as an iterator of tiles; each strip is area-averaged 4 x 4 into a temporary raw file
that feeds the next level, so memory stays bounded whatever the slide size. Ground truth
(cells as detection Points, regions as annotation Polygons) goes to ``<stem>.geojson``.
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..progress import run_to_end
from .render import RENDER_BLOCK, SynthWorld, blas_one_thread

FORMATS = ("svs", "ome-tiff")
LEVEL_FACTOR = 4
SMALLEST_LEVEL = 768     # pyramid levels are added until the coarsest side is below this
THUMBNAIL_SIDE = 1024
TILE_BUFFER_BYTES = 24 * 2**20


def _format_for(path: Path, fmt: str | None) -> str:
    if fmt is None:
        name = path.name.lower()
        fmt = "ome-tiff" if name.endswith((".ome.tif", ".ome.tiff")) else "svs"
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    return fmt


def ground_truth_path(slide_path) -> Path:
    """``<stem>.geojson`` beside the slide (``a.svs`` -> ``a.geojson``, ``a.ome.tif`` ->
    ``a.geojson``)."""
    path = Path(slide_path)
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".geojson")
    return path.with_suffix(".geojson")


def _downsample(rows: np.ndarray, f: int) -> np.ndarray:
    """Area average by ``f`` x ``f`` (edges padded by replication)."""
    h, w = rows.shape[:2]
    ph, pw = -h % f, -w % f
    if ph or pw:
        rows = np.pad(rows, ((0, ph), (0, pw), (0, 0)), mode="edge")
    h2, w2 = rows.shape[0] // f, rows.shape[1] // f
    acc = rows.reshape(h2, f, w2, f, 3).astype(np.uint16).sum(axis=(1, 3))
    return ((acc + f * f // 2) // (f * f)).astype(np.uint8)


class _RawLevel:
    """A level kept on disk as raw RGB rows (appended in order, read back in chunks)."""

    def __init__(self, folder: Path, name: str, width: int):
        self.path = folder / name
        self.width = width
        self.height = 0
        self._fh = open(self.path, "wb")  # noqa: SIM115 (closed in finish)

    def append(self, rows: np.ndarray) -> None:
        self._fh.write(np.ascontiguousarray(rows).tobytes())
        self.height += rows.shape[0]

    def finish(self) -> None:
        self._fh.close()

    def chunks(self, rows: int):
        row_bytes = self.width * 3
        with open(self.path, "rb") as fh:
            for r in range(0, self.height, rows):
                n = min(rows, self.height - r)
                yield np.frombuffer(fh.read(n * row_bytes), np.uint8).reshape(n, self.width, 3)


def _tiles(chunks, width: int, tile: int):
    """Tiles (row-major) from chunks of rows; the last tiles are padded with white."""
    pending = None
    for chunk in chunks:
        pending = chunk if pending is None else np.concatenate([pending, chunk])
        while pending.shape[0] >= tile:
            yield from _tile_row(pending[:tile], width, tile)
            pending = pending[tile:]
    if pending is not None and pending.shape[0]:
        yield from _tile_row(pending, width, tile)


def _tile_row(rows: np.ndarray, width: int, tile: int):
    for c in range(0, width, tile):
        t = rows[:, c:c + tile]
        if t.shape[0] < tile or t.shape[1] < tile:
            full = np.full((tile, tile, 3), 255, np.uint8)
            full[:t.shape[0], :t.shape[1]] = t
            t = full
        yield np.ascontiguousarray(t)


def _level_sizes(h: int, w: int) -> list[tuple[int, int]]:
    sizes = [(h, w)]
    while max(sizes[-1]) > SMALLEST_LEVEL:
        ph, pw = sizes[-1]
        sizes.append((-(-ph // LEVEL_FACTOR), -(-pw // LEVEL_FACTOR)))
    return sizes


def iter_write_slide(path, *, size=20000, seed: int = 0, format: str | None = None,  # noqa: A002
                     mpp: float = 0.5, tile: int = 256, quality: int = 85,
                     ground_truth: bool = True, workers: int = 2, world: SynthWorld | None = None):
    """Generator version of :func:`write_slide`: yields (done, total), returns the paths.

    ``world``: render this (already built, possibly edited) world instead of a new
    ``SynthWorld(size, seed, mpp, layout="slide")`` (its size and µm/px then win).
    """
    import tifffile

    path = Path(path)
    fmt = _format_for(path, format)
    h, w = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    if h < 64 or w < 64:
        raise ValueError(f"a synthetic slide needs at least 64 x 64 px, got {h} x {w}")
    if tile % 16 or RENDER_BLOCK % tile:
        raise ValueError(f"tile must be a multiple of 16 dividing {RENDER_BLOCK}, got {tile}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if world is None:
        world = SynthWorld(h, w, seed=seed, mpp=mpp, layout="slide")
    else:
        h, w, mpp = world.height, world.width, world.mpp
    sizes = _level_sizes(h, w)
    strips = list(range(0, h, RENDER_BLOCK))
    total = len(strips) + len(sizes)
    done = 0
    gt = []
    mag = 10.0 / mpp
    opts = dict(photometric="rgb", compression="jpeg", compressionargs={"level": int(quality)},
                tile=(tile, tile), metadata=None, maxworkers=max(1, int(workers)),
                # tifffile gathers `buffersize` bytes of tiles before compressing them in
                # parallel (default 512 MB): keep that small so memory stays bounded
                buffersize=TILE_BUFFER_BYTES)
    aperio = f"Aperio Image Library v12.0.15\r\n{w}x{h}"
    # XhistoSynthetic: marks the slide as made here (the Explain widget warns when the demo
    # model, trained on such slides only, is used on a real one)
    suffix = f"|AppMag = {mag:g}|MPP = {mpp:.4f}|XhistoSynthetic = seed {seed}"

    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".xhisto-synth-") as tmp, \
            ThreadPoolExecutor(max(1, int(workers))) as pool, blas_one_thread():
        tmp = Path(tmp)
        nxt = _RawLevel(tmp, "level1.raw", sizes[1][1]) if len(sizes) > 1 else None

        def level0_tiles():
            """Tiles of level 0, strip by strip; a strip stays a list of rendered blocks
            (never concatenated), so memory is one strip of blocks."""
            nonlocal done
            for r0 in strips:
                sh = min(RENDER_BLOCK, h - r0)
                cols = list(range(0, w, RENDER_BLOCK))
                blocks = list(pool.map(lambda c0, r0=r0, sh=sh: world._render_block(
                    r0, c0, sh, min(RENDER_BLOCK, w - c0), want_codes=False)[0], cols))
                if ground_truth:
                    cb = world.ground_truth_cells(r0, 0, sh, w)
                    gt.append((cb.rows, cb.cols, cb.cls, cb.uid))
                if nxt is not None:
                    nxt.append(np.concatenate([_downsample(b, LEVEL_FACTOR) for b in blocks],
                                              axis=1))
                done += 1
                for tr in range(0, sh, tile):
                    for blk in blocks:
                        yield from _tile_row(blk[tr:tr + tile], blk.shape[1], tile)
                del blocks

        with tifffile.TiffWriter(path, bigtiff=True) as tw:
            if fmt == "svs":
                desc = f"{aperio} [0,0 {w}x{h}] ({tile}x{tile}) JPEG/RGB Q={quality}{suffix}"
                tw.write(level0_tiles(), shape=(h, w, 3), dtype=np.uint8,
                         description=desc, **opts)
            else:
                ome = {"axes": "YXS", "SignificantBits": 8, "PhysicalSizeX": mpp,
                       "PhysicalSizeXUnit": "µm", "PhysicalSizeY": mpp, "PhysicalSizeYUnit": "µm"}
                o = dict(opts, metadata=ome)
                tw.write(level0_tiles(), shape=(h, w, 3), dtype=np.uint8,
                         subifds=len(sizes) - 1, resolutionunit="CENTIMETER",
                         resolution=(1e4 / mpp, 1e4 / mpp), **o)
            yield done, total
            if nxt is not None:
                nxt.finish()
            if fmt == "svs" and nxt is not None:
                thumb = _thumbnail(nxt)
                tw.write(thumb, photometric="rgb", compression="jpeg", metadata=None,
                         description=f"{aperio} -> {thumb.shape[1]}x{thumb.shape[0]} - {suffix}")
            src = nxt
            for k in range(1, len(sizes)):
                lh, lw = sizes[k]
                ds = w / lw
                down = _RawLevel(tmp, f"level{k + 1}.raw", sizes[k + 1][1]) \
                    if k + 1 < len(sizes) else None

                def chunks(src=src, down=down):
                    for ch in src.chunks(RENDER_BLOCK):
                        if down is not None:
                            down.append(_downsample(ch, LEVEL_FACTOR))
                        yield ch

                extra = dict(subfiletype=1)
                if fmt == "svs":
                    extra["description"] = f"{aperio} -> {lw}x{lh} - {suffix}"
                else:
                    extra.update(resolutionunit="CENTIMETER",
                                 resolution=(1e4 / (mpp * ds), 1e4 / (mpp * ds)))
                tw.write(_tiles(chunks(), lw, tile), shape=(lh, lw, 3), dtype=np.uint8,
                         **extra, **opts)
                if down is not None:
                    down.finish()
                src = down
                done += 1
                yield done, total

    geojson = None
    if ground_truth:
        geojson = ground_truth_path(path)
        _write_ground_truth(world, geojson, gt)
    done += 1
    yield done, total
    return path, geojson


def _thumbnail(level: _RawLevel) -> np.ndarray:
    f = max(1, int(np.ceil(max(level.width, level.height) / THUMBNAIL_SIDE)))
    parts = [_downsample(ch, f) for ch in level.chunks(f * 64)]
    return np.ascontiguousarray(np.concatenate(parts)[: -(-level.height // f)])


def _write_ground_truth(world: SynthWorld, path: Path, gt) -> None:
    from ..annotations import AnnotationSet, CellPoints, write_annotations
    from .cells import CELL_CLASSES
    from .tissue import world_regions

    rows = np.concatenate([g[0] for g in gt]) if gt else np.zeros(0)
    cols = np.concatenate([g[1] for g in gt]) if gt else np.zeros(0)
    cls = np.concatenate([g[2] for g in gt]) if gt else np.zeros(0, np.uint8)
    uid = np.concatenate([g[3] for g in gt]) if gt else np.zeros(0, np.int64)
    classes = np.asarray(CELL_CLASSES)[cls]
    ids = np.char.add("cell-", np.char.mod("%x", uid)) if len(uid) else np.zeros(0, str)
    cells = CellPoints(rows, cols, classes, ids)
    regions = world_regions(world, 0, 0, world.height, world.width)
    write_annotations(path, AnnotationSet(cells, regions, {}))


def write_slide(path, *, size=20000, seed: int = 0, format: str | None = None,  # noqa: A002
                mpp: float = 0.5, tile: int = 256, quality: int = 85,
                ground_truth: bool = True, workers: int = 2):
    """Write a synthetic H&E slide and its ground truth, streaming tile by tile.

    Parameters
    ----------
    path : str or Path
        ``.svs`` (Aperio layout that openslide detects as ``aperio``) or ``.ome.tif``.
    size : int or (height, width)
        Level-0 size in pixels.
    seed : int
        Deterministic by seed.
    format : {"svs", "ome-tiff"}, optional
        Default: from the file name (``.ome.tif``/``.ome.tiff`` -> OME-TIFF, else SVS).
    mpp : float
        Micrometres per pixel at level 0 (written to the file's metadata).
    tile : int
        Tile side (multiple of 16 dividing 1024).
    quality : int
        JPEG quality.
    ground_truth : bool
        Also write ``<stem>.geojson`` (cells as detection Points, regions as annotation Polygons).
    workers : int
        Threads rendering blocks and compressing tiles.

    Returns
    -------
    (slide_path, geojson_path or None)
    """
    return run_to_end(iter_write_slide(path, size=size, seed=seed, format=format, mpp=mpp, tile=tile,
                                       quality=quality, ground_truth=ground_truth, workers=workers))
