"""Render any window of a synthetic section: H and E optical densities, then RGB.

``SynthWorld`` ties a layout, textures, stamps, cells and a stain together; ``render`` gives
the same pixels for a pixel whichever window asks for it (up to float rounding), which is what
lets the slide writer stream tile by tile.
"""

from __future__ import annotations

import functools

import numpy as np

from .cells import CELL_CLASSES, KINDS, NOT_A_CELL, CellBlock, CellField, vessel_lumen
from .layout import CODE, NECROSIS_RIM_UM, Layout, make_layout, vessel_distance
from .necrosis import necrosis_style
from .stain import od_to_rgb, stain_for_style
from .stamps import StampBank, paste
from .textures import MAX_WINDOW, TextureBank

RENDER_BLOCK = 1024
MARGIN = 24  # pixels rendered around a block (blur artefact support)


SMOOTH = 8  # cell size on which slowly varying fields are computed


def _is_zero(w):
    return np.isscalar(w) and w == 0


def _soft(d, width=1.5):
    out = d * np.float32(1 / width)
    out += np.float32(0.5)
    return np.clip(out, 0, 1, out=out)


class blas_one_thread:
    """Limit BLAS to one thread: the small interpolation products run ~8x slower when BLAS
    threads contend (2 shared cores); parallelism comes from our own block threads instead."""

    def __enter__(self):
        try:
            from threadpoolctl import threadpool_limits

            self._limits = threadpool_limits(limits=1, user_api="blas")
        except ImportError:  # pragma: no cover
            self._limits = None
        return self

    def __exit__(self, *exc):
        if self._limits is not None:
            self._limits.restore_original_limits()


@functools.lru_cache(maxsize=4)
def _banks(seed: int, mpp: float) -> tuple[TextureBank, StampBank]:
    return TextureBank(seed, mpp), StampBank(seed, mpp)


class SynthWorld:
    """A synthetic section of ``height`` x ``width`` level-0 pixels, rendered on demand.

    Parameters
    ----------
    height, width : int
    seed : int
    mpp : float
    layout : {"mixed", "slide"}
    bank_seed : int, optional
        Seed of the textures and nucleus stamps (default: ``seed``); cached per (seed, mpp).
    necrosis : {"classic", "comedo"} or NecrosisStyle
        How necrosis looks (``napari_xhisto.synth.necrosis``); "classic" is what the bundled
        demo model was trained on.
    stain_style : {"a", "b"}
        Staining (``napari_xhisto.synth.stain.stain_for_style``): "a" is what the bundled demo
        model was trained on, "b" a second laboratory's look (domain shift).
    """

    def __init__(self, height: int, width: int, *, seed: int = 0, mpp: float = 0.5,
                 layout: str = "mixed", bank_seed: int | None = None, necrosis="classic",
                 stain_style: str = "a"):
        if height <= 0 or width <= 0:
            raise ValueError(f"size must be positive, got {height} x {width}")
        if not (0.05 <= mpp <= 10):
            raise ValueError(f"mpp must be between 0.05 and 10 µm/px, got {mpp}")
        self.height, self.width, self.seed, self.mpp = int(height), int(width), int(seed), float(mpp)
        self.layout: Layout = make_layout(height, width, seed=seed, mpp=mpp, kind=layout)
        self.tex, self.stamps = _banks(int(seed if bank_seed is None else bank_seed), self.mpp)
        self.necrosis = necrosis_style(necrosis)
        self.cells = CellField(self.layout, self.tex, seed, necrosis=self.necrosis)
        self.stain = stain_for_style(stain_style, np.random.default_rng([self.seed, 99]))

    # ------------------------------------------------------------------------------------
    def render(self, r0: int, c0: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """RGB (h, w, 3) uint8 and tissue codes (h, w) uint8 of a level-0 window."""
        rgb = np.empty((h, w, 3), np.uint8)
        codes = np.empty((h, w), np.uint8)
        with blas_one_thread():
            for a in range(0, h, RENDER_BLOCK):
                for b in range(0, w, RENDER_BLOCK):
                    bh, bw = min(RENDER_BLOCK, h - a), min(RENDER_BLOCK, w - b)
                    rgb[a:a + bh, b:b + bw], codes[a:a + bh, b:b + bw] = self._render_block(
                        r0 + a, c0 + b, bh, bw)
        return rgb, codes

    def _render_block(self, r0, c0, h, w, want_codes=True):
        # The rendered window starts on the global SMOOTH grid (smooth fields are computed on
        # SMOOTH x SMOOTH cells, which must not depend on who asks) and has a margin >= MARGIN
        # where a neighbourhood operation (the out-of-focus artefact) reaches the block.
        m = MARGIN if self._needs_margin(r0, c0, h, w) else 0
        R0 = (r0 - m) // SMOOTH * SMOOTH
        C0 = (c0 - m) // SMOOTH * SMOOTH
        H = -(-(r0 + h + m - R0) // SMOOTH) * SMOOTH
        W = -(-(c0 + w + m - C0) // SMOOTH) * SMOOTH
        mr, mc = r0 - R0, c0 - C0
        assert H <= MAX_WINDOW and W <= MAX_WINDOW
        lay, tex, um = self.layout, self.tex, 1.0 / self.mpp
        weights = self._tissue_weights(R0, C0, H, W, want_codes)
        if weights is None:  # bare glass
            return self._render_glass(R0, C0, H, W, mr, mc, h, w, want_codes)
        w_tis, w_nest, w_nec, codes = weights
        w_str = 1 - w_nest
        w_str -= w_nec

        gran = tex.window("granular", R0, C0, H, W)
        e_od = np.full((H, W), 0.0, np.float32)
        h_od = np.full((H, W), 0.0, np.float32)
        if not _is_zero(w_str):
            collagen = self._collagen(R0, C0, H, W)
            collagen *= w_str
            e_od += collagen
            h_od += w_str * np.float32(0.07)
            del collagen
        if not _is_zero(w_nest):
            e_od += w_nest * (np.float32(0.42) + np.float32(0.025) * gran)
            h_od += w_nest * (np.float32(0.19) + np.float32(0.02) * gran)
        if not _is_zero(w_nec):
            smudge = tex.window("smudge", R0, C0, H, W)
            n = self.necrosis
            e_nec = np.float32(n.e) + np.float32(n.e_smudge) * smudge
            h_nec = np.float32(n.h) + np.float32(n.h_smudge) * smudge
            if n.e_gran or n.h_gran:  # granular dead cytoplasm and nuclear dust
                e_nec += np.float32(n.e_gran) * gran
                h_nec += np.float32(n.h_gran) * gran
            e_od += w_nec * e_nec
            h_od += w_nec * h_nec
            del e_nec, h_nec
        if not np.isscalar(w_tis):
            e_od *= w_tis
            h_od *= w_tis
        e_od += np.float32(0.006)
        del w_str, w_nest, w_nec, w_tis

        vmask = self._draw_vessels(h_od, e_od, R0, C0, H, W, um)
        if codes is not None and vmask is not None:
            codes[vmask & (codes > 0)] = CODE["vessel"]
        cells = self.cells.cells_in(R0, C0, H, W, margin=self.stamps.max_half)
        self._draw_cells(h_od, e_od, cells, R0, C0)

        extra = []
        for art in lay.artefacts:
            from .artefacts import apply_artefact

            apply_artefact(art, self, h_od, e_od, codes, extra, R0, C0, H, W)
        uneven = tex.window("uneven", R0, C0, H, W) * np.float32(0.07)
        uneven += np.float32(1)
        h_od *= uneven
        e_od *= uneven
        e_od += np.float32(0.006) * tex.window("grain", R0, C0, H, W)
        rgb = od_to_rgb(h_od, e_od, self.stain, extra=extra)
        return rgb[mr:mr + h, mc:mc + w], (None if codes is None else codes[mr:mr + h, mc:mc + w])

    def _needs_margin(self, r0, c0, h, w) -> bool:
        from .artefacts import artefact_bbox

        for art in self.layout.artefacts:
            if art["kind"] == "blur":
                a, b, c, d = artefact_bbox(art)
                if (b + 2 * MARGIN > r0 and a - 2 * MARGIN < r0 + h and d + 2 * MARGIN > c0
                        and c - 2 * MARGIN < c0 + w):
                    return True
        return False

    def _collagen(self, R0, C0, H, W):
        """Eosin of collagen: oriented fibre textures blended by the local fibre direction.

        The (smooth) blending weights are computed on SMOOTH x SMOOTH cells and broadcast.
        """
        lay, tex = self.layout, self.tex
        g = lay.fields_grid(R0, C0, H, W, ["orient_c", "orient_s"], stride=SMOOTH)
        n_o = tex.N_FIBRE_ORIENTATIONS
        wks = []
        for k in range(n_o):
            ang = np.pi * k / n_o
            wk = np.clip(g["orient_c"] * np.cos(2 * ang) + g["orient_s"] * np.sin(2 * ang), 0, None)
            # the constant keeps the blend smooth near orientation defects (field length ~ 0)
            wks.append(wk ** 2 + 0.05)
        wsum = sum(wks)
        fibre = np.zeros((H // SMOOTH, SMOOTH, W // SMOOTH, SMOOTH), np.float32)
        for k in range(n_o):
            t = tex.window(f"fibre{k}", R0, C0, H, W).reshape(fibre.shape)
            fibre += t * (wks[k] / wsum).astype(np.float32)[:, None, :, None]
        fibre = fibre.reshape(H, W)
        loose = tex.window("loose", R0, C0, H, W)
        collagen = fibre * np.float32(0.22)
        collagen += np.float32(0.60)
        collagen -= np.float32(0.12) * loose
        # clefts between bundles, more of them where the stroma is loose
        cleft = np.clip((fibre + 0.9 - 0.35 * loose) * np.float32(-2.0), 0, 0.85)
        collagen *= 1 - cleft
        return collagen

    def _tissue_weights(self, R0, C0, H, W, want_codes):
        """Soft memberships (tissue, tumour nest, necrosis) and codes; scalars where uniform.

        Same rule as ``layout.soft_distances``; fields are only interpolated where a border
        can cross the window (bounds from the coarse nodes and the noise amplitudes).
        """
        lay, tex, um = self.layout, self.tex, 1.0 / self.mpp
        ae, ae2 = tex.max_abs("edge"), tex.max_abs("edge2")
        lo_t, hi_t = lay.field_range("tissue", R0, C0, H, W)
        pad_t = 8 * um * ae2 + 2
        if hi_t < -pad_t:
            return None
        _, hi_n = lay.field_range("necrosis", R0, C0, H, W)
        _, hi_u = lay.field_range("nest", R0, C0, H, W)
        nec_max = hi_n + 5 * um * ae
        need_tis = lo_t <= pad_t
        need_nec = nec_max > -3
        need_rim = nec_max + NECROSIS_RIM_UM * um > -2
        need_nest = hi_u + 3 * um * ae > -2 or need_rim
        names = [n for n, need in (("tissue", need_tis), ("necrosis", need_nec or need_rim),
                                   ("nest", need_nest)) if need]
        f = lay.fields_grid(R0, C0, H, W, names) if names else {}
        e = tex.window("edge", R0, C0, H, W)
        d_tis = d_nec = d_nest = None
        w_tis, w_nest, w_nec = 1.0, 0.0, 0.0
        if need_tis:
            d_tis = tex.window("edge2", R0, C0, H, W) * np.float32(8 * um)
            d_tis += f["tissue"]
            w_tis = _soft(d_tis, 2.5)
        if need_nec or need_rim:
            d_nec = e * np.float32(5 * um)
            d_nec += f["necrosis"]
            if need_nec:
                w_nec = _soft(d_nec, 3.0)
        if need_nest:
            d_nest = e * np.float32(3 * um)
            d_nest += f["nest"]
            if need_rim:
                np.maximum(d_nest, d_nec + np.float32(NECROSIS_RIM_UM * um), out=d_nest)
            w_nest = _soft(d_nest)
            w_nest *= 1 - w_nec
        codes = None
        if want_codes:
            codes = np.full((H, W), CODE["stroma"], np.uint8)
            if d_nest is not None:
                codes[d_nest > 0] = CODE["tumour"]
            if need_nec:
                codes[d_nec > 0] = CODE["necrosis"]
            if d_tis is not None:
                codes[d_tis <= 0] = CODE["background"]
        return w_tis, w_nest, w_nec, codes

    def _render_glass(self, R0, C0, H, W, mr, mc, h, w, want_codes):
        h_od = np.zeros((H, W), np.float32)
        e_od = self.tex.window("grain", R0, C0, H, W) * np.float32(0.006)
        e_od += np.float32(0.006)
        extra = []
        codes = np.zeros((H, W), np.uint8) if want_codes else None
        for art in self.layout.artefacts:
            from .artefacts import apply_artefact

            apply_artefact(art, self, h_od, e_od, codes, extra, R0, C0, H, W)
        rgb = od_to_rgb(h_od, e_od, self.stain, extra=extra)
        return rgb[mr:mr + h, mc:mc + w], (None if codes is None else codes[mr:mr + h, mc:mc + w])

    def _draw_vessels(self, h_od, e_od, R0, C0, H, W, um):
        vs = self.layout.vessels_in(R0, C0, H, W)
        if len(vs) == 0:
            return None
        inside_any = np.zeros((H, W), bool)
        for v in vs:
            a = int(np.ceil(v[2])) + 3
            ra, rb = max(int(v[0]) - a - R0, 0), min(int(v[0]) + a + 1 - R0, H)
            ca, cb = max(int(v[1]) - a - C0, 0), min(int(v[1]) + a + 1 - C0, W)
            if ra >= rb or ca >= cb:
                continue
            rr = np.arange(ra, rb)[:, None] + R0 + 0.0
            cc = np.arange(ca, cb)[None, :] + C0 + 0.0
            rho = vessel_distance(v, rr, cc)
            la, _ = vessel_lumen(v, um)
            lum = la / v[2]
            scale = v[3]  # pixels per unit of rho, roughly, across the short axis
            w_out = np.clip(0.5 + (1 - rho) * scale / 1.5, 0, 1)
            w_lum = np.clip(0.5 + (lum - rho) * scale / 1.5, 0, 1)
            wall = w_out - w_lum
            hs, es = h_od[ra:rb, ca:cb], e_od[ra:rb, ca:cb]
            wall_e = (0.8 if v[5] > 0 else 0.45) * (
                1 + 0.15 * self.tex.window("smudge", R0 + ra, C0 + ca, rb - ra, cb - ca))
            es[...] = es * (1 - w_out) + wall * wall_e + w_lum * 0.02
            hs[...] = hs * (1 - w_out) + wall * 0.07
            inside_any[ra:rb, ca:cb] |= rho < 1
        return inside_any

    def _draw_cells(self, h_od, e_od, cells: CellBlock, R0, C0):
        bank = self.stamps
        rows = cells.rows - R0
        cols = cells.cols - C0
        for k in range(len(rows)):
            st = bank.pick(KINDS[cells.kind[k]], int(cells.stamp[k]))
            paste(h_od, e_od, st, rows[k], cols[k])

    # ------------------------------------------------------------------------------------
    def ground_truth_cells(self, r0: int, c0: int, h: int, w: int) -> CellBlock:
        """Ground-truth cells (no debris or erythrocytes) with centres in the window."""
        cb = self.cells.cells_in(r0, c0, h, w)
        return cb.select(cb.cls != NOT_A_CELL)

    @staticmethod
    def class_names(cells: CellBlock) -> np.ndarray:
        return np.asarray(CELL_CLASSES, dtype=object)[cells.cls].astype(str)
