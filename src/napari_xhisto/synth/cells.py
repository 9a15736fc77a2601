"""Cell placement per block, deterministic by (seed, block index).

The slide is cut into ``CELL_BLOCK`` x ``CELL_BLOCK`` pixel blocks; the cells of a block depend
only on the seed, the block index and the layout, so any tile can ask for the cells of the
blocks it overlaps (plus a margin) and a nucleus crossing a tile border is drawn whole on both
sides.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from .layout import CODE, Layout, classify_points
from .necrosis import NECROSIS_STYLES, NecrosisStyle
from .stamps import N_ORIENT

CELL_BLOCK = 512
CELL_CLASSES = ("tumour", "lymphocyte", "stroma", "other")
NOT_A_CELL = 255  # debris, erythrocytes, ghosts of dead cells: drawn, not ground truth
KINDS = ("tumour", "lymphocyte", "other", "debris", "rbc") + tuple(
    f"spindle{o}" for o in range(N_ORIENT)) + tuple(f"endothelial{o}" for o in range(N_ORIENT)) + (
    "ghost",)
KIND = {k: i for i, k in enumerate(KINDS)}


@dataclass
class CellBlock:
    rows: np.ndarray     # float64, level-0
    cols: np.ndarray
    cls: np.ndarray      # uint8 index into CELL_CLASSES, or NOT_A_CELL
    kind: np.ndarray     # uint8 index into KINDS
    stamp: np.ndarray    # int32 stamp index in its kind's bank
    uid: np.ndarray | None = None  # int64, unique over the slide (set per block)

    _FIELDS = ("rows", "cols", "cls", "kind", "stamp", "uid")

    @staticmethod
    def concat(blocks) -> CellBlock:
        blocks = list(blocks)
        if not blocks:
            return CellBlock(np.zeros(0), np.zeros(0), np.zeros(0, np.uint8),
                             np.zeros(0, np.uint8), np.zeros(0, np.int32), np.zeros(0, np.int64))
        with_uid = all(b.uid is not None for b in blocks)
        return CellBlock(*(np.concatenate([getattr(b, n) for b in blocks])
                           if (n != "uid" or with_uid) else None for n in CellBlock._FIELDS))

    def select(self, mask) -> CellBlock:
        return CellBlock(*(None if getattr(self, n) is None else getattr(self, n)[mask]
                           for n in CellBlock._FIELDS))

    def __len__(self) -> int:
        return len(self.rows)


def _jittered(rng, r0, c0, size, spacing, jitter=0.85):
    n = max(1, int(round(size / spacing)))
    s = size / n
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    r = r0 + (ii.ravel() + 0.5 + jitter * (rng.random(n * n) - 0.5)) * s
    c = c0 + (jj.ravel() + 0.5 + jitter * (rng.random(n * n) - 0.5)) * s
    return r, c


def _orient_index(lay: Layout, rows, cols):
    f = lay.fields_points(rows, cols, ["orient_c", "orient_s"])
    ang = 0.5 * np.arctan2(f["orient_s"], f["orient_c"])  # fibre direction, from the row axis
    return np.round(ang / np.pi * N_ORIENT).astype(np.int64) % N_ORIENT


class CellField:
    """All cells of a layout, generated block by block on demand (with a small cache)."""

    def __init__(self, lay: Layout, tex, seed: int, *, cache_size: int = 512,
                 necrosis: NecrosisStyle = NECROSIS_STYLES["classic"]):
        self.lay, self.tex, self.seed = lay, tex, int(seed)
        self.necrosis = necrosis
        self._cache: dict = {}
        self._lock = threading.Lock()
        self._cache_size = cache_size

    def block(self, bi: int, bj: int) -> CellBlock:
        key = (bi, bj)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        made = self._make_block(bi, bj)  # deterministic: a race only does the work twice
        with self._lock:
            while len(self._cache) >= self._cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = made
        return made

    def cells_in(self, r0: float, c0: float, h: float, w: float, margin: float = 0) -> CellBlock:
        """Cells whose centre lies in the window grown by ``margin`` pixels."""
        a0, a1 = (r0 - margin) // CELL_BLOCK, (r0 + h + margin) // CELL_BLOCK
        b0, b1 = (c0 - margin) // CELL_BLOCK, (c0 + w + margin) // CELL_BLOCK
        nbi = (self.lay.height - 1) // CELL_BLOCK
        nbj = (self.lay.width - 1) // CELL_BLOCK
        blocks = [self.block(i, j) for i in range(int(max(a0, 0)), int(min(a1, nbi)) + 1)
                  for j in range(int(max(b0, 0)), int(min(b1, nbj)) + 1)]
        cb = CellBlock.concat(blocks)
        m = ((cb.rows >= r0 - margin) & (cb.rows < r0 + h + margin)
             & (cb.cols >= c0 - margin) & (cb.cols < c0 + w + margin))
        return cb.select(m)

    # ------------------------------------------------------------------------------------
    def _make_block(self, bi: int, bj: int) -> CellBlock:
        lay, tex = self.lay, self.tex
        um = 1.0 / lay.mpp
        rng = np.random.default_rng([self.seed, 555, bi, bj])
        r0, c0 = bi * CELL_BLOCK, bj * CELL_BLOCK
        parts = []

        def add(rows, cols, cls, kind, n_stamps=1 << 16):
            parts.append(CellBlock(rows, cols, np.full(len(rows), cls, np.uint8),
                                   np.asarray(kind, np.uint8) * np.ones(len(rows), np.uint8),
                                   rng.integers(0, n_stamps, len(rows)).astype(np.int32)))

        # tumour nests, with infiltrating lymphocytes
        r, c = _jittered(rng, r0, c0, CELL_BLOCK, 15.0 * um)
        code = classify_points(lay, tex, r, c)
        lym = lay.fields_points(r, c, ["lymph"])["lymph"]
        t = code == CODE["tumour"]
        til = t & (rng.random(len(r)) < 0.03 + 0.35 * lym)
        add(r[t & ~til], c[t & ~til], 0, KIND["tumour"])
        add(r[til], c[til], 1, KIND["lymphocyte"])
        # stroma: fibroblasts along the fibres, scattered lymphocytes and aggregates
        r, c = _jittered(rng, r0, c0, CELL_BLOCK, 22.0 * um)
        s = (classify_points(lay, tex, r, c) == CODE["stroma"]) & (rng.random(len(r)) < 0.6)
        o = _orient_index(lay, r[s], c[s])
        parts.append(CellBlock(r[s], c[s], np.full(s.sum(), 2, np.uint8),
                               (KIND["spindle0"] + o).astype(np.uint8),
                               rng.integers(0, 1 << 16, s.sum()).astype(np.int32)))
        r, c = _jittered(rng, r0, c0, CELL_BLOCK, 8.5 * um)
        code = classify_points(lay, tex, r, c)
        lym = lay.fields_points(r, c, ["lymph"])["lymph"]
        s = (code == CODE["stroma"]) & (rng.random(len(r)) < lym)
        add(r[s], c[s], 1, KIND["lymphocyte"])
        # necrosis: few intact cells, karyorrhectic debris (and ghosts, see _ghost_cells)
        r, c = _jittered(rng, r0, c0, CELL_BLOCK, 30.0 * um)
        s = (classify_points(lay, tex, r, c) == CODE["necrosis"]) & (rng.random(len(r)) < 0.3)
        add(r[s], c[s], 3, KIND["other"])
        r, c = _jittered(rng, r0, c0, CELL_BLOCK, 7.0 * um, jitter=1.0)
        s = ((classify_points(lay, tex, r, c) == CODE["necrosis"])
             & (rng.random(len(r)) < self.necrosis.debris_p))
        add(r[s], c[s], NOT_A_CELL, KIND["debris"])
        parts.extend(self._vessel_cells(r0, c0, um))
        if self.necrosis.has_ghosts:
            parts.append(self._ghost_cells(r0, c0, um, bi, bj))
        cb = CellBlock.concat(parts)
        cb.uid = ((bi * 4096 + bj) << 20) + np.arange(len(cb.rows), dtype=np.int64)
        return cb

    def _ghost_cells(self, r0, c0, um, bi, bj) -> CellBlock:
        """Ghosts of the dead tumour cells in "comedo" necrosis (drawn, not ground truth).

        Necrosis is dead tumour: the ghosts sit on the tumour cells' spacing, most of them
        near the viable rim and fewer deeper in, where they have dissolved. Own random stream
        and last in the block, so the other cells and their ids stay as they were.
        """
        lay, sty = self.lay, self.necrosis
        rng = np.random.default_rng([self.seed, 556, bi, bj])
        r, c = _jittered(rng, r0, c0, CELL_BLOCK, 15.0 * um)
        s = classify_points(lay, self.tex, r, c) == CODE["necrosis"]
        r, c = r[s], c[s]
        depth = np.maximum(lay.fields_points(r, c, ["necrosis"])["necrosis"], 0)
        keep = rng.random(len(r)) < sty.ghost_p0 + sty.ghost_p1 * np.exp(
            -depth / (sty.ghost_depth_um * um))
        n = int(keep.sum())
        return CellBlock(r[keep], c[keep], np.full(n, NOT_A_CELL, np.uint8),
                         np.full(n, KIND["ghost"], np.uint8),
                         rng.integers(0, 1 << 16, n).astype(np.int32))

    def _vessel_cells(self, r0, c0, um):
        lay = self.lay
        v_all = lay.vessels
        if len(v_all) == 0:
            return []
        rad = v_all[:, 2]
        near = np.nonzero((v_all[:, 0] + rad > r0) & (v_all[:, 0] - rad < r0 + CELL_BLOCK)
                          & (v_all[:, 1] + rad > c0) & (v_all[:, 1] - rad < c0 + CELL_BLOCK))[0]
        out = []
        for idx in near:
            v = v_all[idx]
            rng = np.random.default_rng([self.seed, 777, int(idx)])
            parts = vessel_cells(v, rng, um)
            for p in parts:
                m = ((p.rows >= r0) & (p.rows < r0 + CELL_BLOCK)
                     & (p.cols >= c0) & (p.cols < c0 + CELL_BLOCK))
                out.append(p.select(m))
        return out


def vessel_lumen(v: np.ndarray, um: float):
    """Semi-axes (a, b) of a vessel's lumen."""
    if v[5] > 0:
        return v[2] * (1 - v[5]), v[3] * (1 - v[5])
    return max(v[2] - 1.5 * um, 1.0), max(v[3] - 1.5 * um, 1.0)


def vessel_cells(v: np.ndarray, rng, um: float) -> list[CellBlock]:
    """Endothelial nuclei along the lumen, smooth-muscle nuclei in the wall, erythrocytes inside."""
    ca, sa = np.cos(v[4]), np.sin(v[4])
    la, lb = vessel_lumen(v, um)

    def place(a, b, spacing):
        perim = np.pi * (3 * (a + b) - np.sqrt((3 * a + b) * (a + 3 * b)))
        n = max(int(perim / spacing), 2)
        t = np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, 2 * np.pi)
        u, w = a * np.cos(t), b * np.sin(t)
        rows, cols = v[0] + u * ca - w * sa, v[1] + u * sa + w * ca
        du, dw = -a * np.sin(t), b * np.cos(t)
        ang = np.arctan2(du * sa + dw * ca, du * ca - dw * sa)  # tangent, from the row axis
        o = np.round(ang / np.pi * N_ORIENT).astype(np.int64) % N_ORIENT
        return rows, cols, o

    parts = []
    rows, cols, o = place(la + 0.5 * um, lb + 0.5 * um, 19 * um)
    parts.append(CellBlock(rows, cols, np.full(len(rows), 3, np.uint8),
                           (KIND["endothelial0"] + o).astype(np.uint8),
                           rng.integers(0, 1 << 16, len(rows)).astype(np.int32)))
    if v[5] > 0:
        mid = 0.5 * (1 + (1 - v[5]))
        rows, cols, o = place(v[2] * mid, v[3] * mid, 16 * um)
        jit = 1 + rng.uniform(-0.5, 0.5, len(rows)) * v[5] * 0.8
        rows, cols = v[0] + (rows - v[0]) * jit, v[1] + (cols - v[1]) * jit
        parts.append(CellBlock(rows, cols, np.full(len(rows), 2, np.uint8),
                               (KIND["spindle0"] + o).astype(np.uint8),
                               rng.integers(0, 1 << 16, len(rows)).astype(np.int32)))
    if v[6] > 0.05 and la > 3 * um:
        r, c = _jittered(rng, v[0] - la, v[1] - la, 2 * la, 6.5 * um, jitter=1.0)
        dr, dc = r - v[0], c - v[1]
        u, w = dr * ca + dc * sa, -dr * sa + dc * ca
        inside = (u / (la - 2.5 * um)) ** 2 + (w / max(lb - 2.5 * um, 1)) ** 2 < 1
        keep = inside & (rng.random(len(r)) < v[6])
        parts.append(CellBlock(r[keep], c[keep], np.full(keep.sum(), NOT_A_CELL, np.uint8),
                               np.full(keep.sum(), KIND["rbc"], np.uint8),
                               rng.integers(0, 1 << 16, keep.sum()).astype(np.int32)))
    return parts
