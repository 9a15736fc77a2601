"""Compressed slides: a grid of patch codes placed on level 0 of a slide, stored as Zarr.

A slide compressed by an encoder (seed 004, Tellez et al., Neural Image Compression) becomes a
``(rows, cols, C)`` array: cell ``(i, j)`` is the code of the ``patch`` x ``patch`` level-0
window starting at ``origin + (i, j) * stride``. This module is torch-free (numpy, zarr, dask):
napari's reader opens ``*.nic.zarr`` stores through it.

Store layout (``SLIDE.nic.zarr``, a Zarr group)::

    attrs["xhisto_nic"]  format, stride, patch, origin, mpp, code_size, shape, chunk, provenance
    codes    (rows, cols, C) float32, chunks (chunk, chunk, C); 0 off tissue, NaN on damage
    tissue   (rows, cols) bool
    damaged  (rows, cols) bool
    done     (ceil(rows/chunk), ceil(cols/chunk)) bool: which chunks are written (resuming)
"""

from __future__ import annotations

import math
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import XhistoError

__all__ = ["FORMAT", "SUFFIX", "CodeGrid", "CodeStore", "CodesError", "is_codes_store",
           "pca_rgb", "read_codes", "write_codes"]

FORMAT = 1
SUFFIX = ".nic.zarr"
ATTR = "xhisto_nic"
DEFAULT_CHUNK = 16


class CodesError(XhistoError):
    """A compressed-slide store is missing, damaged, incomplete or would be overwritten."""


@dataclass
class CodeGrid:
    """Patch codes on a grid placed on level 0 of a slide.

    Attributes
    ----------
    codes : ndarray or dask array (rows, cols, C) float32
        0 for non-tissue cells, NaN for cells whose patch shows a damaged tile.
    stride : int
        Level-0 px between neighbouring cells (S).
    patch : int
        Level-0 px side of the window each cell encodes (P): cell (i, j) encodes level-0 rows
        ``origin[0] + i * stride`` ... ``+ patch`` (columns alike).
    origin : tuple of int
        Level-0 (row, col) of cell (0, 0)'s top-left corner.
    mpp : float
        µm per level-0 px of the slide.
    tissue : ndarray (rows, cols) bool
    provenance : dict
        Encoder kind/name/weights sha256, slide path and fingerprint, P, S, C, damage.
    damaged : ndarray (rows, cols) bool or None
        Cells whose patch showed a damaged tile (their codes are NaN); None when there is none.
    """

    codes: object
    stride: int
    patch: int
    origin: tuple[int, int]
    mpp: float
    tissue: np.ndarray
    provenance: dict = field(default_factory=dict)
    damaged: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.codes.shape[0]), int(self.codes.shape[1])

    @property
    def code_size(self) -> int:
        return int(self.codes.shape[2])

    def world_transform(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """napari ``(scale, translate)`` in µm placing one cell per stride on the slide.

        napari draws pixel centres at ``translate + i * scale``; a slide layer (scale ``mpp``)
        has level-0 pixel ``r``'s centre at ``r * mpp``, so the centre of cell ``i``
        (level-0 pixels ``origin + i*stride`` ... ``+ patch - 1``) is at
        ``(origin + i*stride + (patch - 1) / 2) * mpp``.
        """
        s = float(self.stride) * self.mpp
        tr = tuple((float(o) + (self.patch - 1) / 2) * self.mpp for o in self.origin)
        return (s, s), (tr[0], tr[1])

    def cell_of(self, row: float, col: float) -> tuple[int, int]:
        """The cell whose stride block holds level-0 pixel (row, col)."""
        return (math.floor((row - self.origin[0]) / self.stride),
                math.floor((col - self.origin[1]) / self.stride))

    def meta(self) -> dict:
        """The JSON-able description stored as the Zarr group's ``attrs["xhisto_nic"]``."""
        return {"format": FORMAT, "stride": int(self.stride), "patch": int(self.patch),
                "origin": [int(self.origin[0]), int(self.origin[1])], "mpp": float(self.mpp),
                "code_size": self.code_size, "shape": list(self.shape),
                "provenance": _jsonable(self.provenance)}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _create(group, name, shape, chunks, dtype, fill_value):
    make = getattr(group, "create_array", None) or group.create_dataset  # zarr 3 / zarr 2
    return make(name=name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill_value)


def is_codes_store(path) -> bool:
    """True when ``path`` is a folder holding a napari-xhisto codes group (cheap, no zarr)."""
    p = Path(path)
    if not p.is_dir():
        return False
    for meta in ("zarr.json", ".zattrs"):
        f = p / meta
        if f.is_file():
            try:
                return ATTR.encode() in f.read_bytes()[:1 << 20]
            except OSError:
                return False
    return False


class CodeStore:
    """A codes store being written chunk by chunk (the resumable part of ``compress``).

    Create it in a temporary folder with :meth:`create`, or re-open a partial one with
    :meth:`open`; :meth:`write_chunk` writes one (chunk x chunk) block of cells and then marks it
    done, so a killed run loses at most the chunk in flight; :meth:`finish` records the final
    provenance and renames the folder into place.
    """

    def __init__(self, path: Path, group):
        self.path = Path(path)
        self.group = group
        m = dict(group.attrs[ATTR])
        self.meta = m
        self.chunk = int(m["chunk"])
        self.shape = tuple(int(v) for v in m["shape"])
        self._arrays: dict = {}

    def _array(self, name: str):
        """The group's array ``name``, opened once (zarr re-reads its metadata on every
        ``group[name]``: a file read per chunk written)."""
        if name not in self._arrays:
            self._arrays[name] = self.group[name]
        return self._arrays[name]

    @classmethod
    def create(cls, path, *, shape, code_size: int, stride: int, patch: int, origin, mpp: float,
               plan: dict, chunk: int = DEFAULT_CHUNK) -> CodeStore:
        import zarr

        rows, cols = (int(v) for v in shape)
        g = zarr.open_group(str(path), mode="w")
        meta = {"format": FORMAT, "stride": int(stride), "patch": int(patch),
                "origin": [int(origin[0]), int(origin[1])], "mpp": float(mpp),
                "code_size": int(code_size), "shape": [rows, cols], "chunk": int(chunk),
                "complete": False, "plan": _jsonable(plan), "provenance": {}}
        _create(g, "codes", (rows, cols, code_size), (chunk, chunk, code_size), "float32", 0.0)
        _create(g, "tissue", (rows, cols), (chunk, chunk), "bool", False)
        _create(g, "damaged", (rows, cols), (chunk, chunk), "bool", False)
        nr, nc = math.ceil(rows / chunk), math.ceil(cols / chunk)
        _create(g, "done", (nr, nc), (1, 1), "bool", False)
        g.attrs[ATTR] = meta
        return cls(path, g)

    @classmethod
    def open(cls, path) -> CodeStore:
        import zarr

        try:
            g = zarr.open_group(str(path), mode="r+")
            store = cls(path, g)
        except Exception as exc:  # noqa: BLE001 - one clear line whatever zarr says
            raise CodesError(f"{path}: not a napari-xhisto codes store ({type(exc).__name__}: "
                             f"{exc}); delete it to start again") from exc
        return store

    @property
    def chunk_grid(self) -> tuple[int, int]:
        return (math.ceil(self.shape[0] / self.chunk), math.ceil(self.shape[1] / self.chunk))

    def chunk_bounds(self, a: int, b: int) -> tuple[slice, slice]:
        c = self.chunk
        return (slice(a * c, min((a + 1) * c, self.shape[0])),
                slice(b * c, min((b + 1) * c, self.shape[1])))

    def done_chunks(self) -> np.ndarray:
        return np.asarray(self._array("done")[...], bool)

    def write_tissue(self, tissue: np.ndarray) -> None:
        """The whole tissue mask at once (it is known before any chunk is encoded)."""
        self._array("tissue")[...] = np.asarray(tissue, bool)

    def write_chunk(self, a: int, b: int, codes: np.ndarray, tissue: np.ndarray | None = None,
                    damaged: np.ndarray | None = None) -> None:
        """Write one chunk of codes, then mark it done.

        ``tissue`` is written when given (``compress`` writes the whole mask once with
        :meth:`write_tissue` instead); ``damaged`` only when it marks a cell (the array is
        False where never written), so a clean chunk costs two small writes.
        """
        rs, cs = self.chunk_bounds(a, b)
        self._array("codes")[rs, cs, :] = np.asarray(codes, np.float32)
        if tissue is not None:
            self._array("tissue")[rs, cs] = np.asarray(tissue, bool)
        if damaged is not None and np.any(damaged):
            self._array("damaged")[rs, cs] = np.asarray(damaged, bool)
        self._array("done")[a:a + 1, b:b + 1] = True  # last: the chunk counts only once written

    def finish(self, final: Path, provenance: dict) -> Path:
        """Record ``provenance``, mark complete and move the store to ``final`` (not existing)."""
        meta = dict(self.group.attrs[ATTR])
        meta["complete"] = True
        meta["provenance"] = _jsonable(provenance)
        self.group.attrs[ATTR] = meta
        final = Path(final)
        if final.exists():
            raise CodesError(f"{final} appeared while compressing; the result stays in {self.path}")
        os.replace(self.path, final)
        self.path = final
        return final


def write_codes(path, grid: CodeGrid, *, overwrite: bool = False,
                chunk: int = DEFAULT_CHUNK) -> Path:
    """Write ``grid`` as a Zarr store at ``path`` (written beside it, then renamed into place).

    Raises
    ------
    CodesError
        When ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise CodesError(f"{path} already exists; choose another name or pass overwrite=True "
                         "(CLI: --force)")
    rows, cols = grid.shape
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    store = CodeStore.create(tmp, shape=(rows, cols), code_size=grid.code_size,
                             stride=grid.stride, patch=grid.patch, origin=grid.origin,
                             mpp=grid.mpp, plan={}, chunk=chunk)
    try:
        g = store.group
        g["codes"][...] = np.asarray(grid.codes, np.float32)
        g["tissue"][...] = np.asarray(grid.tissue, bool)
        dmg = np.zeros((rows, cols), bool) if grid.damaged is None else grid.damaged
        g["damaged"][...] = np.asarray(dmg, bool)
        g["done"][...] = True
        if path.exists():  # overwrite: the old store goes only once the new one is complete
            old = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.old")
            os.replace(path, old)
            store.finish(path, grid.provenance)
            shutil.rmtree(old, ignore_errors=True)
        else:
            store.finish(path, grid.provenance)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_codes(path) -> CodeGrid:
    """Open a codes store lazily: ``codes`` is a dask array over the Zarr chunks.

    Raises
    ------
    CodesError
        When ``path`` is missing, not a codes store, or an unfinished (partial) run.
    """
    import dask.array as da
    import zarr

    path = Path(path)
    if not path.exists():
        raise CodesError(f"{path}: no such codes store; run `xhisto compress` first")
    try:
        g = zarr.open_group(str(path), mode="r")
        meta = dict(g.attrs[ATTR])
        arr = g["codes"]
    except Exception as exc:  # noqa: BLE001 - one clear line whatever zarr says
        raise CodesError(f"{path}: not a napari-xhisto codes store ({type(exc).__name__}: {exc})"
                         ) from exc
    if meta.get("format") != FORMAT:
        raise CodesError(f"{path}: codes store format {meta.get('format')!r} is not {FORMAT}; "
                         "compress the slide again with this version")
    if not meta.get("complete", False):
        raise CodesError(f"{path}: an unfinished compression run; run `xhisto compress` again "
                         "to resume it")
    damaged = np.asarray(g["damaged"][...], bool)
    return CodeGrid(codes=da.from_zarr(arr), stride=int(meta["stride"]), patch=int(meta["patch"]),
                    origin=(int(meta["origin"][0]), int(meta["origin"][1])),
                    mpp=float(meta["mpp"]), tissue=np.asarray(g["tissue"][...], bool),
                    provenance=dict(meta.get("provenance", {})),
                    damaged=damaged if damaged.any() else None)


def pca_rgb(grid: CodeGrid, *, n_sample: int = 20000, seed: int = 0):
    """The first 3 principal components of the codes as lazy RGB in [0, 1].

    The components and the 1st/99th percentiles that scale them come from up to ``n_sample``
    tissue cells (seeded sample); non-tissue and damaged cells are black.

    Returns
    -------
    rgb : dask array (rows, cols, 3) float32
    info : dict
        ``components`` (3, C), ``mean`` (C,), ``explained_variance_ratio`` (3,).
    """
    import dask.array as da

    codes = grid.codes if isinstance(grid.codes, da.Array) else da.from_array(
        np.asarray(grid.codes), chunks=(DEFAULT_CHUNK, DEFAULT_CHUNK, grid.code_size))
    valid = np.asarray(grid.tissue, bool).copy()
    if grid.damaged is not None:
        valid &= ~np.asarray(grid.damaged, bool)
    cells = np.argwhere(valid)
    C = grid.code_size
    if len(cells) > n_sample:
        cells = cells[np.sort(np.random.default_rng(seed).choice(len(cells), n_sample, False))]
    sample = (np.asarray(codes.vindex[cells[:, 0], cells[:, 1]].compute(), np.float64)
              if len(cells) else np.zeros((0, C)))
    sample = sample[np.isfinite(sample).all(axis=1)]
    mean = sample.mean(axis=0) if len(sample) else np.zeros(C)
    comps = np.zeros((3, C))
    ratio = np.zeros(3)
    if len(sample) >= 2:
        _, sv, vt = np.linalg.svd(sample - mean, full_matrices=False)
        k = min(3, vt.shape[0])
        comps[:k] = vt[:k]
        for j in range(k):  # sign convention: the largest loading positive (stable across runs)
            if comps[j, np.argmax(np.abs(comps[j]))] < 0:
                comps[j] = -comps[j]
        var = sv ** 2
        ratio[:k] = var[:k] / max(var.sum(), 1e-12)
    proj = (sample - mean) @ comps.T if len(sample) else np.zeros((0, 3))
    lo = np.percentile(proj, 1, axis=0) if len(proj) else np.zeros(3)
    hi = np.percentile(proj, 99, axis=0) if len(proj) else np.ones(3)
    span = np.where(hi - lo > 1e-12, hi - lo, 1.0)
    comps32, mean32 = comps.astype(np.float32), mean.astype(np.float32)
    lo32, span32 = lo.astype(np.float32), span.astype(np.float32)
    valid_da = da.from_array(valid, chunks=codes.chunks[:2])

    def block(c, v):
        x = np.nan_to_num(c.astype(np.float32) - mean32, nan=0.0)
        out = np.clip((x @ comps32.T - lo32) / span32, 0.0, 1.0)
        out[~v[..., 0]] = 0.0
        return out.astype(np.float32)

    rgb = da.map_blocks(block, codes, valid_da[..., None], dtype=np.float32,
                        chunks=codes.chunks[:2] + ((3,),))
    return rgb, {"components": comps32, "mean": mean32, "explained_variance_ratio": ratio}


def codes_layer_data(path) -> list[tuple]:
    """napari layer data for a codes store: its first 3 PCA components as RGB, in µm."""
    grid = read_codes(path)
    rgb, info = pca_rgb(grid)
    scale, translate = grid.world_transform()
    name = Path(path).name
    kwargs = {"name": f"{name} (PCA RGB)", "rgb": True, "scale": scale, "translate": translate,
              "units": ("µm", "µm"), "contrast_limits": (0.0, 1.0), "opacity": 0.7,
              "metadata": {"xhisto": {"kind": "nic-codes", "path": str(path),
                                      "stride": grid.stride, "patch": grid.patch,
                                      "origin": list(grid.origin), "mpp": grid.mpp,
                                      "explained_variance_ratio":
                                          info["explained_variance_ratio"].tolist(),
                                      **grid.provenance}}}
    return [(rgb, kwargs, "image")]
