"""Small synthetic slides written with tifffile for the slide and reader tests.

Aperio-style SVS as in REFERENCES.md (tiled JPEG RGB pages, Aperio description, ``metadata=None``
so tifffile's JSON description does not come first), OME-TIFF with a SubIFD pyramid, and a plain
tiled TIFF. Sizes are odd on purpose (partial edge tiles) and one level is at a non-power-of-two
downsample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

CMU1 = Path(__file__).resolve().parents[2] / "shared" / "data" / "CMU-1-Small-Region.svs"


def textured_image(height: int, width: int, *, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients plus blocky noise: every tile differs, JPEG has work to do."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    cols = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    base = np.stack([200 - 120 * rows + 0 * cols, 60 + 150 * cols + 0 * rows,
                     120 + 60 * np.sin(9 * rows + 7 * cols)], axis=-1)
    blocks = rng.integers(-40, 40, (height // 8 + 1, width // 8 + 1, 3))
    noise = np.repeat(np.repeat(blocks, 8, 0), 8, 1)[:height, :width]
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def nearest_resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    rows = (np.arange(shape[0]) * image.shape[0] / shape[0]).astype(int)
    cols = (np.arange(shape[1]) * image.shape[1] / shape[1]).astype(int)
    return np.ascontiguousarray(image[rows][:, cols])


def write_aperio_svs(path, levels: list[np.ndarray], *, tile: int = 128, mpp: float = 0.25,
                     quality: int = 90) -> Path:
    """An SVS that openslide detects as Aperio: tiled JPEG RGB levels, finest first."""
    h, w = levels[0].shape[:2]
    with tifffile.TiffWriter(path, bigtiff=False) as tw:
        for i, level in enumerate(levels):
            lh, lw = level.shape[:2]
            if i == 0:
                desc = (f"Aperio Image Library v12.0.15\r\n{w}x{h} [0,0 {w}x{h}] ({tile}x{tile}) "
                        f"JPEG/RGB Q={quality}|AppMag = 40|MPP = {mpp:.4f}")
            else:
                desc = f"Aperio Image Library v12.0.15\r\n{w}x{h} -> {lw}x{lh} - |AppMag = 40|MPP = {mpp:.4f}"
            tw.write(level, tile=(tile, tile), photometric="rgb", compression="jpeg", compressionargs={"level": quality},
                     description=desc, metadata=None)
    return Path(path)


def write_ome_tiff(path, levels: list[np.ndarray], *, tile: int = 128, mpp: float | None = 0.5,
                   compression: str = "zlib") -> Path:
    """OME-TIFF with level 0 in the main IFD and the other levels in its SubIFDs."""
    meta = {"axes": "YXS"}
    if mpp is not None:
        meta.update(PhysicalSizeX=mpp, PhysicalSizeY=mpp, PhysicalSizeXUnit="µm",
                    PhysicalSizeYUnit="µm")
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(levels[0], subifds=len(levels) - 1, tile=(tile, tile), photometric="rgb",
                 compression=compression, metadata=meta)
        for level in levels[1:]:
            tw.write(level, subfiletype=1, tile=(tile, tile), photometric="rgb",
                     compression=compression)
    return Path(path)


def write_tiled_tiff(path, image: np.ndarray, *, tile: int = 128, resolution=None,
                     compression: str = "zlib", rgba: bool = False) -> Path:
    """A single-level tiled TIFF (no OME, no vendor), optionally with resolution tags."""
    kwargs = {}
    if resolution is not None:
        kwargs.update(resolution=resolution[:2], resolutionunit=resolution[2])
    if rgba:
        kwargs["extrasamples"] = ["unassalpha"]
    tifffile.imwrite(path, image, tile=(tile, tile), photometric="rgb", compression=compression,
                     metadata=None, **kwargs)
    return Path(path)


def standard_svs(path, *, seed: int = 0) -> Path:
    """1998 x 2610 level 0, a level at ~2.5x (800 x 1044, rows and cols differ) and one at 6x."""
    base = textured_image(1998, 2610, seed=seed)
    levels = [base, nearest_resize(base, (800, 1044)), nearest_resize(base, (333, 435))]
    return write_aperio_svs(path, levels, tile=128)


def tile_span(path, level: int, tile_row: int, tile_col: int, *, page: int | None = None):
    """(offset, bytecount) of one native tile of a tiled TIFF level (``page``: its IFD index)."""
    with tifffile.TiffFile(path) as tf:
        pg = tf.pages[level if page is None else page]
        per_row = -(-pg.imagewidth // pg.tilewidth)
        index = tile_row * per_row + tile_col
        return int(pg.dataoffsets[index]), int(pg.databytecounts[index])


def largest_tile(path, *, page: int = 0) -> tuple[int, int]:
    """(tile_row, tile_col) of the tile with the most JPEG data (the most tissue) of a page."""
    with tifffile.TiffFile(path) as tf:
        pg = tf.pages[page]
        index = int(np.argmax(pg.databytecounts))
        per_row = -(-pg.imagewidth // pg.tilewidth)
    return divmod(index, per_row)


def flip_entropy_bits(src, dst, tile_row: int, tile_col: int, *, page: int = 0,
                      nbytes: int = 4096, seed: int = 1) -> Path:
    """Copy ``src`` to ``dst`` with one bit flipped in each of ``nbytes`` bytes of entropy-coded
    data in the middle of one JPEG tile, as a failing disk or a bad copy leaves a file.

    Bytes 0xFF (markers, stuffing) and the byte after one are left alone and no flip makes a
    new 0xFF, so the stream still parses: imagecodecs and Pillow decode it to a wrong but
    plausible tile without a word (the case strict decoding has to catch).
    """
    data = bytearray(Path(src).read_bytes())
    offset, count = tile_span(src, 0, tile_row, tile_col, page=page)
    tile = bytes(data[offset:offset + count])
    sos = tile.index(b"\xff\xda")
    start = sos + 2 + int.from_bytes(tile[sos + 2:sos + 4], "big")
    n = min(nbytes, count - start - 16)
    first = offset + start + (count - start - n) // 2
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 8, n)
    for k in range(n):
        at = first + k
        value = data[at]
        if value == 0xFF or data[at - 1] == 0xFF:
            continue
        flipped = value ^ (1 << int(bits[k]))
        if flipped != 0xFF:
            data[at] = flipped
    Path(dst).write_bytes(bytes(data))
    return Path(dst)
