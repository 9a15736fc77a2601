"""``generate_tissue``: an in-memory field of synthetic H&E tissue with exact ground truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cells import CELL_CLASSES
from .layout import TISSUE_CODES
from .regions import ellipse_ring, field_regions
from .render import SynthWorld


@dataclass
class SynthTissue:
    """A rendered field of tissue and its ground truth.

    Attributes
    ----------
    rgb : ndarray (h, w, 3) uint8
    cells : napari_xhisto.annotations.CellPoints
        Every intact cell (level-0 pixels of this field): tumour, lymphocyte, stroma, other.
    regions : list of napari_xhisto.annotations.RegionShape
        Tumour area, stroma, necrosis, vessels (and artefacts on the "slide" layout).
    tissue_map : ndarray (h, w) uint8
        Tissue code of every pixel (see ``tissue_codes``).
    tissue_codes : dict int -> str
    mpp : float
    seed : int
    layout : str
    """

    rgb: np.ndarray
    cells: object
    regions: list
    tissue_map: np.ndarray
    tissue_codes: dict
    mpp: float
    seed: int
    layout: str

    def cell_counts(self) -> dict[str, int]:
        """Number of ground-truth cells per class (every class listed)."""
        names, counts = np.unique(self.cells.classes, return_counts=True)
        out = dict.fromkeys(CELL_CLASSES, 0)
        out.update({str(k): int(v) for k, v in zip(names, counts)})
        return out


def jpeg_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """The image as a scanner's JPEG tiles would give it back."""
    import imagecodecs

    return imagecodecs.jpeg8_decode(imagecodecs.jpeg8_encode(rgb, level=int(quality)))


def world_cells(world: SynthWorld, r0: int, c0: int, h: int, w: int):
    """Ground-truth ``CellPoints`` of a window, coordinates relative to its origin."""
    from ..annotations import CellPoints

    cb = world.ground_truth_cells(r0, c0, h, w)
    ids = np.array([f"cell-{u:x}" for u in cb.uid], dtype=str)
    return CellPoints(cb.rows - r0, cb.cols - c0, world.class_names(cb), ids)


def world_regions(world: SynthWorld, r0: int, c0: int, h: int, w: int) -> list:
    """Ground-truth ``RegionShape`` list of a window, coordinates relative to its origin."""
    from ..annotations import RegionShape

    lay = world.layout
    regions = []
    for k, (cls, ext, holes) in enumerate(field_regions(lay, r0, c0, h, w)):
        regions.append(RegionShape(cls, ext, holes, id=f"{cls.replace(' ', '-')}-{k}"))
    for k, v in enumerate(lay.vessels_in(r0, c0, h, w)):
        ring = ellipse_ring(v[0] - r0, v[1] - c0, v[2], v[3], v[4])
        ring[:, 0] = np.clip(ring[:, 0], 0, h)
        ring[:, 1] = np.clip(ring[:, 1], 0, w)
        regions.append(RegionShape("vessel", ring, [], id=f"vessel-{k}"))
    for k, art in enumerate(lay.artefacts):
        from .artefacts import artefact_ring

        ring = artefact_ring(art)
        if (ring[:, 0].max() < r0 or ring[:, 0].min() > r0 + h or ring[:, 1].max() < c0
                or ring[:, 1].min() > c0 + w):
            continue
        ring = ring - [r0, c0]
        ring[:, 0] = np.clip(ring[:, 0], 0, h)
        ring[:, 1] = np.clip(ring[:, 1], 0, w)
        regions.append(RegionShape("artefact", ring, [], name=art["kind"], id=f"artefact-{k}"))
    return regions


def generate_tissue(height: int, width: int, *, seed: int = 0, mpp: float = 0.5,
                    layout: str = "mixed", jpeg_quality: int | None = 85,
                    bank_seed: int | None = None, necrosis="classic") -> SynthTissue:
    """Render a field of synthetic H&E tissue with its ground truth.

    Parameters
    ----------
    height, width : int
        Size in pixels.
    seed : int
        Everything (layout, cells, stain) is a deterministic function of the seed.
    mpp : float
        Micrometres per pixel; cells and structures keep their physical size.
    layout : {"mixed", "slide"}
        ``"mixed"``: tissue everywhere (tumour nests, stroma, necrosis, vessels);
        ``"slide"``: a section on glass with artefacts (fold, pen, bubble, out-of-focus).
    jpeg_quality : int or None
        JPEG round trip at this quality (as a scanner's tiles), or None for raw pixels.
    bank_seed : int, optional
        Seed of the textures and nucleus stamps (defaults to ``seed``); fields sharing it
        are cheaper to make.
    necrosis : {"classic", "comedo"} or NecrosisStyle
        How necrosis looks (``napari_xhisto.synth.necrosis``).

    Returns
    -------
    SynthTissue

    Examples
    --------
    >>> t = generate_tissue(256, 256, seed=1)
    >>> t.rgb.shape, t.tissue_map.shape, len(t.cells) > 0
    ((256, 256, 3), (256, 256), True)
    """
    world = SynthWorld(height, width, seed=seed, mpp=mpp, layout=layout, bank_seed=bank_seed,
                        necrosis=necrosis)
    rgb, codes = world.render(0, 0, height, width)
    if jpeg_quality:
        rgb = jpeg_roundtrip(rgb, jpeg_quality)
    return SynthTissue(rgb, world_cells(world, 0, 0, height, width),
                       world_regions(world, 0, 0, height, width), codes, dict(TISSUE_CODES),
                       float(mpp), int(seed), layout)
