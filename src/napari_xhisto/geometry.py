"""The two shapes every module agrees on: a region of level-0 pixels, and a placement.

Level-0 pixels, as (row, col), are the single currency between modules. Micrometres appear
only at the edges (layer scale, radii typed by users, exports).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Region:
    """An axis-aligned rectangle on level 0 of a slide, in pixels.

    Parameters
    ----------
    level0_row, level0_col : int
        Top-left corner.
    height, width : int
        Size in level-0 pixels (both > 0).
    """

    level0_row: int
    level0_col: int
    height: int
    width: int

    def __post_init__(self):
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"Region needs a positive height and width, got {self.height} x {self.width}")

    @classmethod
    def parse(cls, text: str) -> Region:
        """Read ``"row,col,height,width"`` (level-0 pixels), as the CLI takes it."""
        parts = [p.strip() for p in str(text).split(",")]
        if len(parts) != 4:
            raise ValueError(f"a region is 'row,col,height,width' in level-0 pixels, got {text!r}")
        try:
            r, c, h, w = (int(float(p)) for p in parts)
        except (ValueError, OverflowError):  # 'abc', 'nan', 'inf'
            raise ValueError(f"a region is four integers 'row,col,height,width', got {text!r}") from None
        return cls(r, c, h, w)

    @property
    def bottom(self) -> int:
        return self.level0_row + self.height

    @property
    def right(self) -> int:
        return self.level0_col + self.width

    def clip(self, height: int, width: int) -> Region:
        """This region cut to a slide of ``height`` x ``width`` level-0 pixels."""
        r0, c0 = max(self.level0_row, 0), max(self.level0_col, 0)
        r1, c1 = min(self.bottom, height), min(self.right, width)
        if r1 <= r0 or c1 <= c0:
            raise ValueError(f"{self} lies outside the slide ({height} x {width} px)")
        return Region(r0, c0, r1 - r0, c1 - c0)

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.level0_row, self.level0_col, self.height, self.width)


@dataclass(frozen=True)
class Placement:
    """Where an array (heatmap, probability map) lies on level 0 of its slide.

    Pixel ``(i, j)`` of the array covers level-0 pixels starting at
    ``(origin_row + i * step_row, origin_col + j * step_col)``; ``step`` is the number of
    level-0 pixels per array pixel (1 for a full-resolution heatmap).

    A napari layer over a slide whose layer scale is ``mpp`` µm/px gets
    ``scale = (step_row * mpp, step_col * mpp)`` and ``translate = (origin_row * mpp, origin_col * mpp)``
    (plus a half-pixel shift when ``step`` differs from 1, so pixel centres line up).
    """

    origin_row: float = 0.0
    origin_col: float = 0.0
    step_row: float = 1.0
    step_col: float = 1.0

    def layer_transform(self, mpp: float) -> dict:
        """``scale`` and ``translate`` for a napari layer on a slide of ``mpp`` µm/px."""
        # napari puts pixel centres at translate + i*scale; a level-0 slide pixel i has its
        # centre at i*mpp, so a coarse pixel covering [o + i*s, o + (i+1)*s) has its centre at
        # (o + i*s + (s - 1)/2) * mpp.
        tr = (self.origin_row + (self.step_row - 1) / 2) * mpp
        tc = (self.origin_col + (self.step_col - 1) / 2) * mpp
        return {"scale": (self.step_row * mpp, self.step_col * mpp), "translate": (tr, tc)}

    def to_dict(self) -> dict:
        return {"origin_row": self.origin_row, "origin_col": self.origin_col,
                "step_row": self.step_row, "step_col": self.step_col}

    @classmethod
    def from_dict(cls, d: dict) -> Placement:
        return cls(float(d["origin_row"]), float(d["origin_col"]), float(d.get("step_row", 1.0)),
                   float(d.get("step_col", 1.0)))


def split_index_2d(key, shape) -> tuple[tuple[int, int, int], tuple[int, int, int], tuple[bool, bool]]:
    """Resolve a numpy-style 2-D index of integers and slices, as napari slices lazy layer data.

    Returns ``(row range, col range, squeeze)``: ``(start, stop, step)`` for each axis, clipped to
    ``shape``, and which axes were integers (to drop from the block read for that range; see
    :func:`squeeze_2d`).
    """
    from numbers import Integral

    if not isinstance(key, tuple):
        key = (key,)
    key = key + (slice(None),) * (2 - len(key))
    squeeze = tuple(isinstance(k, Integral) for k in key[:2])
    slices = [slice(int(k), int(k) + 1) if s else k for k, s in zip(key[:2], squeeze)]
    return slices[0].indices(shape[0]), slices[1].indices(shape[1]), squeeze


def squeeze_2d(block, squeeze: tuple[bool, bool]):
    """Drop the axes of ``block`` that :func:`split_index_2d` found indexed by an integer."""
    if squeeze[1]:
        block = block[:, 0]
    if squeeze[0]:
        block = block[0]
    return block
