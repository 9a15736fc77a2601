"""Labelled patches from synthetic tissue, with the bias hooks of seed paper 000.

Hooks: label by the centre cell only vs by tumour fraction; translation on/off (off: the
anchor cell's nucleus sits exactly on the patch centre pixel); excluding tissue types;
a fixed tumour sampling ratio; a class-correlated single-colour square.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .cells import CELL_CLASSES, NOT_A_CELL
from .layout import CODE, TISSUE_CODES
from .render import SynthWorld
from .tissue import jpeg_roundtrip

LABELS = ("tumour-fraction", "centre-cell")
CLASS_NAMES = ("non-tumour", "tumour")


@dataclass
class PatchSet:
    """``n`` RGB patches with binary labels (0 non-tumour, 1 tumour) and per-patch facts.

    ``meta`` holds arrays of length n: ``centre_class`` (class of the anchor cell, "" when the
    patch was not placed on a cell), ``centre_tissue`` (tissue name at the centre pixel),
    ``tumour_fraction`` (tumour cells / all cells in the patch), ``tumour_area_fraction``
    (tumour-nest pixels / patch pixels), ``anchor_row``/``anchor_col`` (anchor position in patch
    pixels), ``field_seed``, ``row``/``col`` (top-left in the field), ``square`` (bool) and
    ``cells`` (object array: per patch an (k, 3) float array of row, col, class index into
    ``CELL_CLASSES``).
    """

    images: np.ndarray
    labels: np.ndarray
    meta: dict = field(default_factory=dict)
    class_names: tuple = CLASS_NAMES


def add_square(images: np.ndarray, *, size: int = 5, color=(0, 255, 0),
               position=(0, 0)) -> np.ndarray:
    """Copy of ``images`` (N, H, W, 3) with a ``size`` x ``size`` single-colour square.

    ``position`` is the square's top-left (row, col) in patch pixels.
    """
    images = np.array(images, dtype=np.uint8, copy=True)
    if images.ndim == 3:
        images = images[None]
    r, c = (int(p) for p in position)
    h, w = images.shape[1:3]
    if size <= 0 or r < 0 or c < 0 or r + size > h or c + size > w:
        raise ValueError(f"a {size} px square at {position} does not fit a {h} x {w} patch")
    images[:, r:r + size, c:c + size] = np.asarray(color, np.uint8)
    return images


def _square_options(corner_square) -> dict | None:
    if corner_square is None or corner_square is False:
        return None
    opts = {"label": 1, "size": 5, "color": (0, 255, 0), "position": (0, 0)}
    if corner_square is not True:
        unknown = set(corner_square) - set(opts)
        if unknown:
            raise ValueError(f"corner_square keys are {sorted(opts)}, got {sorted(unknown)}")
        opts.update(corner_square)
    return opts


def sample_patches(n: int, *, patch_size: int, mpp: float = 0.5, seed: int = 0,
                   label: str = "tumour-fraction", translate: bool = True, exclude=(),
                   corner_square=None, tumour_ratio: float | None = None,
                   tumour_threshold: float = 0.5, exclude_max_fraction: float = 0.1,
                   field_size: int | None = None, jpeg_quality: int | None = 85,
                   necrosis="classic", stain_style: str = "a") -> PatchSet:
    """Draw labelled patches from fields of synthetic tissue (layout "mixed").

    Parameters
    ----------
    n : int
        Number of patches.
    patch_size : int
        Side in pixels at ``mpp``.
    mpp : float
        Micrometres per pixel of the patches.
    seed : int
        Deterministic by seed (fields use seeds derived from it).
    label : {"tumour-fraction", "centre-cell"}
        ``"tumour-fraction"``: tumour (1) when at least ``tumour_threshold`` of the cells in the
        patch are tumour cells; patches lie at random positions. ``"centre-cell"``: each patch is
        placed on a ground-truth cell and labelled by that cell's class only.
    translate : bool
        False: the anchor (the centre cell, or the random point) is exactly the patch centre
        pixel ``(patch_size // 2, patch_size // 2)``. True: the patch is shifted at random so
        the anchor lies anywhere at least 10% of the side from the border.
    exclude : sequence of str
        Tissue names (``"necrosis"``, ``"stroma"``, ``"tumour"``, ``"vessel"``) left out: no patch
        has an excluded tissue at its centre or over more than ``exclude_max_fraction`` of it.
    corner_square : None, True or dict
        Add a single-colour square to every patch of one label: dict keys ``label`` (1),
        ``size`` (5), ``color`` ((0, 255, 0)), ``position`` ((0, 0)).
    tumour_ratio : float, optional
        Exact fraction of tumour patches (``round(n * tumour_ratio)``); None keeps the sampled one.
    field_size : int, optional
        Side of each tissue field (default: about 1 mm, at least 6 patches).
    jpeg_quality : int or None
        JPEG round trip of each field.
    necrosis : {"classic", "comedo"} or NecrosisStyle
        How necrosis looks (``napari_xhisto.synth.necrosis``).
    stain_style : {"a", "b"}
        Staining of every field (``napari_xhisto.synth.stain.STAIN_STYLES``): "a" as the demo
        model's training data, "b" a second laboratory's look.

    Returns
    -------
    PatchSet
    """
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, got {label!r}")
    exclude = tuple(exclude or ())
    bad = [x for x in exclude if x not in CODE or x == "background"]
    if bad:
        raise ValueError(f"cannot exclude {bad}: tissue names are "
                         f"{[v for v in TISSUE_CODES.values() if v != 'background']}")
    if tumour_ratio is not None and not 0 <= tumour_ratio <= 1:
        raise ValueError(f"tumour_ratio must lie in [0, 1], got {tumour_ratio}")
    ps = int(patch_size)
    fs = int(field_size or max(round(1000 / mpp), 6 * ps))
    if fs < 2 * ps:
        raise ValueError(f"field_size {fs} must be at least twice patch_size {ps}")
    square = _square_options(corner_square)
    n_pos_target = None if tumour_ratio is None else int(round(n * tumour_ratio))
    targets = None if n_pos_target is None else {1: n_pos_target, 0: n - n_pos_target}
    per_field = int(np.clip(2 * (fs / ps) ** 2, 16, 256))
    if targets:  # rare labels need more candidates per field
        per_field *= 2
    rng = np.random.default_rng([int(seed), 31337])
    excl_codes = np.array([CODE[x] for x in exclude], np.uint8)
    got: dict = {0: [], 1: []}
    k_field = 0
    max_fields = 40 + 8 * int(np.ceil(n / per_field))
    while (sum(len(v) for v in got.values()) < n if targets is None
           else any(len(got[c]) < targets[c] for c in (0, 1))):
        if k_field >= max_fields:
            raise ValueError(f"could not draw {n} patches with these options after {k_field} "
                             f"fields (label counts {[len(got[0]), len(got[1])]})")
        field_seed = int(seed) * 100_003 + k_field
        k_field += 1
        world = SynthWorld(fs, fs, seed=field_seed, mpp=mpp, layout="mixed", bank_seed=seed,
                           necrosis=necrosis, stain_style=stain_style)
        rgb, codes = world.render(0, 0, fs, fs)
        if jpeg_quality:
            rgb = jpeg_roundtrip(rgb, jpeg_quality)
        cb = world.ground_truth_cells(0, 0, fs, fs)
        cells = np.stack([cb.rows, cb.cols, cb.cls.astype(np.float64)], axis=1)
        for cand in _candidates(rng, per_field, label, cells, fs, ps, translate):
            top, left, anchor, centre_cls = cand
            patch_codes = codes[top:top + ps, left:left + ps]
            centre_code = patch_codes[ps // 2, ps // 2]
            if len(excl_codes) and (np.isin(centre_code, excl_codes)
                                    or np.isin(patch_codes, excl_codes).mean()
                                    > exclude_max_fraction):
                continue
            inside = ((cells[:, 0] >= top) & (cells[:, 0] < top + ps)
                      & (cells[:, 1] >= left) & (cells[:, 1] < left + ps))
            pc = cells[inside] - [top, left, 0]
            frac = float(np.mean(pc[:, 2] == 0)) if len(pc) else 0.0
            if label == "centre-cell":
                y = int(centre_cls == 0)
            else:
                y = int(frac >= tumour_threshold)
            if targets is None:
                if sum(len(v) for v in got.values()) >= n:
                    break
            elif len(got[y]) >= targets[y]:
                continue
            got[y].append(dict(
                image=rgb[top:top + ps, left:left + ps], label=y,
                centre_class=CELL_CLASSES[centre_cls] if centre_cls != NOT_A_CELL else "",
                centre_tissue=TISSUE_CODES[int(centre_code)], tumour_fraction=frac,
                tumour_area_fraction=float(np.mean(patch_codes == CODE["tumour"])),
                anchor_row=anchor[0] - top, anchor_col=anchor[1] - left, field_seed=field_seed,
                row=top, col=left, cells=pc))
    items = got[0] + got[1]
    order = np.random.default_rng([int(seed), 4711]).permutation(len(items))
    items = [items[i] for i in order][:n]
    images = np.stack([it["image"] for it in items]) if items else np.zeros((0, ps, ps, 3), np.uint8)
    labels = np.array([it["label"] for it in items], np.int64)
    has_square = np.zeros(len(items), bool)
    if square is not None:
        has_square = labels == int(square["label"])
        if has_square.any():
            images[has_square] = add_square(images[has_square], size=square["size"],
                                            color=square["color"], position=square["position"])
    meta = {k: np.array([it[k] for it in items]) for k in
            ("centre_class", "centre_tissue", "tumour_fraction", "tumour_area_fraction",
             "anchor_row", "anchor_col", "field_seed", "row", "col")}
    cells_obj = np.empty(len(items), dtype=object)
    cells_obj[:] = [it["cells"] for it in items]
    meta["cells"] = cells_obj
    meta["square"] = has_square
    return PatchSet(images, labels, meta)


def _candidates(rng, k, label, cells, fs, ps, translate):
    """(top, left, anchor (row, col), anchor class or NOT_A_CELL) of candidate patches."""
    half = ps // 2
    shift = int(round(0.4 * ps)) if translate else 0
    lo, hi = half + shift, fs - (ps - half) - shift  # anchor range keeping the patch inside
    if hi <= lo:
        return
    if label == "centre-cell":
        anchors = np.floor(cells[:, :2] + 0.5)  # the nucleus centre pixel
        ok = np.all((anchors >= lo) & (anchors <= hi), axis=1)
        idx = np.flatnonzero(ok)
        if len(idx) == 0:
            return
        pick = rng.choice(idx, size=min(k, len(idx)), replace=False)
        anchor_list = [(anchors[i], int(cells[i, 2])) for i in pick]
    else:
        pts = rng.integers(lo, hi + 1, size=(k, 2)).astype(np.float64)
        anchor_list = [(p, NOT_A_CELL) for p in pts]
    for anchor, cls in anchor_list:
        dr, dc = (rng.integers(-shift, shift + 1, 2) if shift else (0, 0))
        top = int(anchor[0]) - half + int(dr)
        left = int(anchor[1]) - half + int(dc)
        yield top, left, anchor, cls
