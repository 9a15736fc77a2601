"""A synthetic cohort with slide-level labels: the label says whether a tumour focus is present.

Every slide is a synthetic section on glass (``layout="slide"``: stroma, lymphocytes, vessels,
artefacts) with its tumour fields removed; a positive slide gets back exactly one tumour focus
(nests inside an irregular disc) covering ``lesion_fraction`` of the tissue area, placed at a
random spot of the tissue. The slide-level label (1 = focus present) is all a slide-level model
sees; the focus outline is kept apart, as a mask per slide under ``lesions/``, for evaluating
explanations only (seed 004's synthetic task: the label depends on a lesion anywhere in the
image, and accuracy falls with lesion size).

Layout of ``DIR``::

    slides/<name>.svs          the slides (no ground truth beside them)
    labels.csv                 slide,label,lesion_fraction,lesion_area_fraction,seed
    lesions/<name>.lesion.tif  uint8 mask (1 = lesion), one pixel per ``mask_step`` level-0 px,
                               its placement and µm/px in the TIFF description (JSON)
    cohort.json                the settings (n, fractions, size, seed, mpp)

Deterministic by seed: the same arguments give the same slides, labels and masks.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import XhistoError
from ..geometry import Placement
from .layout import _as_distance, _smooth_noise
from .render import SynthWorld

LABELS_FILE = "labels.csv"
SLIDES_DIR = "slides"
LESIONS_DIR = "lesions"
LABEL_COLUMNS = ("slide", "label", "lesion_fraction", "lesion_area_fraction", "seed")
ABSENT = -1.0e4  # px: a field this negative switches a tissue kind off everywhere
MASK_STEP = 16   # level-0 px per lesion-mask pixel


@dataclass(frozen=True)
class LesionMask:
    """A slide's hidden lesion mask and where it lies on level 0."""

    mask: np.ndarray          # (H, W) bool
    placement: Placement
    mpp: float

    def fraction_of(self, tissue: np.ndarray | None = None) -> float:
        """Lesion pixels over tissue pixels (``tissue`` on the same grid) or over all pixels."""
        denom = self.mask.size if tissue is None else max(int(np.sum(tissue)), 1)
        return float(self.mask.sum() / denom)


def slide_name(index: int) -> str:
    return f"slide_{index:04d}"


def slide_seed(seed: int, index: int) -> int:
    """The world seed of slide ``index`` of a cohort drawn with ``seed``."""
    return int(np.random.default_rng([int(seed), 4004, int(index)]).integers(0, 2**31 - 1))


def cohort_plan(n: int, *, lesion_fractions, positive_share: float = 0.5, seed: int = 0):
    """Labels and lesion fractions of the ``n`` slides (balanced, shuffled, deterministic).

    Positives cycle through ``lesion_fractions`` so each fraction gets the same number of
    positives (up to one); negatives have fraction 0.
    """
    fractions = [float(f) for f in lesion_fractions]
    if not fractions or any(not (0 < f < 1) for f in fractions):
        raise XhistoError(f"lesion fractions must lie in (0, 1), got {lesion_fractions}")
    if n < 2:
        raise XhistoError(f"a cohort needs at least 2 slides (one of each label), got {n}")
    if not (0 < positive_share < 1):
        raise XhistoError(f"the share of positive slides must lie in (0, 1), got {positive_share}")
    n_pos = min(max(int(round(n * positive_share)), 1), n - 1)
    rng = np.random.default_rng([int(seed), 4005])
    labels = np.array([1] * n_pos + [0] * (n - n_pos))
    rng.shuffle(labels)
    frac = np.zeros(n)
    pos = np.flatnonzero(labels == 1)
    frac[pos] = np.array(fractions)[np.arange(len(pos)) % len(fractions)]
    return labels, frac


def plant_lesion(world: SynthWorld, fraction: float, rng) -> None:
    """Replace the world's tumour with one focus covering ``fraction`` of the tissue (0: none).

    Edits ``world.layout.fields`` in place (tumour, nest and necrosis fields); the renderer and
    cell field read them lazily, so pixels, cells and the lesion mask agree.
    """
    lay = world.layout
    f = lay.fields
    shape = f["tissue"].shape
    none = np.full(shape, ABSENT, np.float32)
    f["necrosis"] = none.copy()
    if fraction <= 0:
        f["tumour"], f["nest"] = none.copy(), none.copy()
        return
    step = lay.step
    ii, jj = np.meshgrid(np.arange(shape[0]) * step, np.arange(shape[1]) * step, indexing="ij")
    on_slide = (ii < lay.height) & (jj < lay.width)
    tissue = (f["tissue"] > 0) & on_slide
    area = float(tissue.sum()) * step * step
    radius = float(np.sqrt(fraction * area / np.pi))
    # the focus lies inside the tissue when it can: centres at least ~its radius from the edge
    inside = tissue & (f["tissue"] >= 0.8 * radius)
    candidates = np.flatnonzero(inside.ravel())
    if not len(candidates):
        candidates = np.array([int(np.argmax(np.where(tissue, f["tissue"], -np.inf)))])
    centre = candidates[rng.integers(len(candidates))]
    cr, cc = ii.ravel()[centre], jj.ravel()[centre]
    dist = np.hypot(ii - cr, jj - cc)
    wobble = _smooth_noise(rng, shape, max(radius / step / 2.5, 1.0)) * (0.12 * radius)
    tum = np.minimum(radius - dist + wobble, f["tissue"]).astype(np.float32)
    nest = _smooth_noise(rng, shape, 28.0 / 12.0)
    in_tum = tum > 0
    ref = nest[in_tum] if in_tum.sum() > 4 else nest.ravel()
    nest = _as_distance(nest - np.quantile(ref, 0.3), step)
    f["tumour"] = tum
    f["nest"] = (nest - 4.0 * np.maximum(-tum, 0)).astype(np.float32)


def lesion_mask(world: SynthWorld, *, step: int = MASK_STEP) -> LesionMask:
    """The tumour focus (tumour field > 0 inside tissue) sampled every ``step`` level-0 px."""
    g = world.layout.fields_grid(0, 0, world.height, world.width, ["tumour", "tissue"],
                                 stride=step)
    mask = (g["tumour"] > 0) & (g["tissue"] > 0)
    return LesionMask(mask, Placement(0.0, 0.0, float(step), float(step)), world.mpp)


def tissue_grid(world: SynthWorld, *, step: int = MASK_STEP) -> np.ndarray:
    g = world.layout.fields_grid(0, 0, world.height, world.width, ["tissue"], stride=step)
    return g["tissue"] > 0


def write_lesion_mask(path, lesion: LesionMask, *, extra: dict | None = None) -> Path:
    import tifffile

    path = Path(path)
    info = {"placement": lesion.placement.to_dict(), "mpp": lesion.mpp, "kind": "lesion-mask",
            **(extra or {})}
    tmp = path.with_name(path.name + ".partial")
    tifffile.imwrite(tmp, lesion.mask.astype(np.uint8), description=json.dumps(info),
                     compression="zlib", metadata=None)
    tmp.replace(path)
    return path


def read_lesion_mask(path) -> LesionMask:
    """A mask written by :func:`write_lesion_mask` (``lesions/<name>.lesion.tif``)."""
    import tifffile

    path = Path(path)
    if not path.exists():
        raise XhistoError(f"lesion mask not found: {path}")
    with tifffile.TiffFile(path) as tf:
        mask = tf.pages[0].asarray() > 0
        try:
            info = json.loads(tf.pages[0].description or "{}")
        except json.JSONDecodeError:
            info = {}
    if "placement" not in info:
        raise XhistoError(f"{path.name} is not a lesion mask written by xhisto synth-cohort")
    return LesionMask(mask, Placement.from_dict(info["placement"]), float(info["mpp"]))


def cohort_world(index: int, *, label_fraction: float, size, seed: int, mpp: float):
    """The (edited) world of slide ``index``; deterministic by (seed, index)."""
    h, w = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    s = slide_seed(seed, index)
    world = SynthWorld(h, w, seed=s, mpp=mpp, layout="slide", bank_seed=int(seed))
    plant_lesion(world, label_fraction, np.random.default_rng([s, 4006]))
    return world


def iter_make_cohort(out_dir, *, n: int = 200, lesion_fractions=(0.02, 0.05, 0.1, 0.2),
                     size=2048, seed: int = 0, mpp: float = 0.5, positive_share: float = 0.5,
                     quality: int = 85, workers: int = 2, overwrite: bool = False):
    """Write a cohort (see the module docstring); yields (done, total), returns the labels path.

    Raises :class:`XhistoError` when ``out_dir`` already holds a cohort and ``overwrite`` is
    False (nothing the user made is replaced silently).
    """
    from ..progress import run_to_end
    from .writer import iter_write_slide

    out = Path(out_dir)
    labels_path = out / LABELS_FILE
    if labels_path.exists() and not overwrite:
        raise XhistoError(f"{out} already holds a cohort ({LABELS_FILE}); choose another folder "
                          "or pass --overwrite")
    labels, fracs = cohort_plan(n, lesion_fractions=lesion_fractions,
                                positive_share=positive_share, seed=seed)
    (out / SLIDES_DIR).mkdir(parents=True, exist_ok=True)
    (out / LESIONS_DIR).mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        name = slide_name(i)
        world = cohort_world(i, label_fraction=float(fracs[i]), size=size, seed=seed, mpp=mpp)
        slide_path = out / SLIDES_DIR / f"{name}.svs"
        run_to_end(iter_write_slide(slide_path, seed=world.seed, quality=quality,
                                    ground_truth=False, workers=workers, world=world))
        lesion = lesion_mask(world)
        measured = lesion.fraction_of(tissue_grid(world))
        write_lesion_mask(out / LESIONS_DIR / f"{name}.lesion.tif", lesion,
                          extra={"slide": f"{name}.svs", "label": int(labels[i])})
        rows.append({"slide": f"{name}.svs", "label": int(labels[i]),
                     "lesion_fraction": float(fracs[i]),
                     "lesion_area_fraction": round(measured, 5), "seed": world.seed})
        yield i + 1, n
    tmp = labels_path.with_name(LABELS_FILE + ".partial")
    with open(tmp, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(LABEL_COLUMNS))
        wr.writeheader()
        wr.writerows(rows)
    tmp.replace(labels_path)
    size_hw = [int(size), int(size)] if np.isscalar(size) else [int(s) for s in size]
    (out / "cohort.json").write_text(json.dumps(
        {"n": n, "lesion_fractions": [float(f) for f in lesion_fractions], "size": size_hw,
         "seed": int(seed), "mpp": float(mpp), "positive_share": float(positive_share),
         "mask_step": MASK_STEP, "label": "1 = a tumour focus is present"}, indent=2))
    return labels_path


def make_cohort(out_dir, **kwargs) -> Path:
    """Run :func:`iter_make_cohort` to the end; returns the path of ``labels.csv``."""
    from ..progress import run_to_end

    return run_to_end(iter_make_cohort(out_dir, **kwargs))


def read_labels(path, *, column: str = "label") -> dict[str, int]:
    """``labels.csv`` as ``{slide key: label}``; the key is the slide's file name without its
    extension (``slide_0003.svs`` -> ``slide_0003``), as code files are named."""
    path = Path(path)
    if not path.exists():
        raise XhistoError(f"labels file not found: {path}")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        if "slide" not in fields or column not in fields:
            raise XhistoError(f"{path.name} needs the columns 'slide' and '{column}', "
                              f"has {fields}")
        out = {}
        for k, row in enumerate(reader, start=2):
            try:
                value = int(float(row[column]))
            except (TypeError, ValueError):
                raise XhistoError(f"{path.name} line {k}: label {row[column]!r} is not 0 or 1") \
                    from None
            if value not in (0, 1):
                raise XhistoError(f"{path.name} line {k}: label {value} is not 0 or 1")
            out[slide_key(row["slide"])] = value
    if not out:
        raise XhistoError(f"{path.name} lists no slides")
    return out


def slide_key(name) -> str:
    """File name without directories and slide/code extensions."""
    base = Path(str(name)).name
    for suffix in (".lesion.tif", ".nic.zarr", ".ome.tiff", ".ome.tif", ".svs", ".tiff", ".tif", ".ndpi",
                   ".mrxs"):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return Path(base).stem
