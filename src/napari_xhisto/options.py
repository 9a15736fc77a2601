"""One place that checks every numeric option the CLI commands and the widgets take.

Each check takes the value as the user gave it (text from a command line or a line edit, or a
number from a spin box) and the option's name as the user sees it (``"--batch-size"`` on the
command line, ``"Batch size"`` in a widget); it returns the converted value or raises
:class:`OptionError` with one line saying what is wrong and what is allowed. Pure: no Qt, no
torch, no I/O.

>>> batch_size("32")
32
>>> batch_size(-1)
Traceback (most recent call last):
...
napari_xhisto.options.OptionError: --batch-size must be a whole number from 1 to 65536, got -1
>>> parse_region("0,0,512,inf")
Traceback (most recent call last):
...
napari_xhisto.options.OptionError: --region: width must be a finite whole number, got 'inf'
"""

from __future__ import annotations

import math
from numbers import Integral, Real

from .errors import XhistoError
from .geometry import Region

MAX_BATCH = 65536
MAX_THREADS = 1024
MAX_MPP = 1000.0  # µm per pixel: a 1 mm pixel is no scan


class OptionError(XhistoError, ValueError):
    """A numeric option out of range or not a number; the message is one line for the user."""


def _show(value) -> str:
    return repr(value) if isinstance(value, str) else f"{value}"


def _number(value, name: str, *, whole: bool) -> float | int:
    kind = "a whole number" if whole else "a number"
    if isinstance(value, bool) or value is None:
        raise OptionError(f"{name} must be {kind}, got {_show(value)}")
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        number = float(value)
    else:
        try:
            text = str(value).strip()
            if whole and text.lstrip("+-").isdigit():
                return int(text)
            number = float(text)
        except ValueError:
            raise OptionError(f"{name} must be {kind}, got {_show(value)}") from None
    if not math.isfinite(number):
        raise OptionError(f"{name} must be a finite number, got {_show(value)}")
    if whole:
        if not number.is_integer():
            raise OptionError(f"{name} must be a whole number, got {_show(value)}")
        return int(number)
    return number


def _range_text(minimum, maximum, low_open: bool, high_open: bool) -> str:
    if minimum is not None and maximum is not None:
        if low_open or high_open:
            return (f"in {'(' if low_open else '['}{minimum:g}, {maximum:g}"
                    f"{')' if high_open else ']'}")
        return f"from {minimum:g} to {maximum:g}"
    if minimum is not None:
        return f"{'>' if low_open else '>='} {minimum:g}"
    return f"{'<' if high_open else '<='} {maximum:g}"


def whole_number(value, name: str, *, minimum: int | None = None,
                 maximum: int | None = None) -> int:
    """``value`` as an int in ``[minimum, maximum]`` (either bound optional)."""
    number = _number(value, name, whole=True)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise OptionError(f"{name} must be a whole number "
                          f"{_range_text(minimum, maximum, False, False)}, got {_show(value)}")
    return number


def real_number(value, name: str, *, minimum: float | None = None, maximum: float | None = None,
                low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float within the bounds (``low_open``: ``> minimum``, else ``>=``)."""
    number = float(_number(value, name, whole=False))
    low_bad = minimum is not None and (number <= minimum if low_open else number < minimum)
    high_bad = maximum is not None and (number >= maximum if high_open else number > maximum)
    if low_bad or high_bad:
        raise OptionError(f"{name} must be {_range_text(minimum, maximum, low_open, high_open)}, "
                          f"got {_show(value)}")
    return number


def optional(check, value, name: str, **kwargs):
    """``None`` (or an empty string) stays None, anything else goes through ``check``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return check(value, name, **kwargs)


# -- the options, by meaning ----------------------------------------------------------------
def batch_size(value, name: str = "--batch-size") -> int:
    """Patches per forward pass: 1..65536."""
    return whole_number(value, name, minimum=1, maximum=MAX_BATCH)


def threads(value, name: str = "--threads") -> int:
    """Worker or torch threads: 1..1024."""
    return whole_number(value, name, minimum=1, maximum=MAX_THREADS)


def fraction(value, name: str) -> float:
    """A fraction in [0, 1] (tissue threshold, opacity, class ratio ...)."""
    return real_number(value, name, minimum=0.0, maximum=1.0)


def tissue_threshold(value, name: str = "--tissue-threshold") -> float:
    """Minimum tissue fraction of a patch: [0, 1] (0 runs every patch)."""
    return fraction(value, name)


def overlap(value, name: str = "--overlap") -> float:
    """Fraction of a patch side shared with its neighbour: [0, 0.9]."""
    return real_number(value, name, minimum=0.0, maximum=0.9)


def percentile(value, name: str = "--percentile") -> float:
    """A percentile in (0, 100]."""
    return real_number(value, name, minimum=0.0, maximum=100.0, low_open=True)


def positive(value, name: str, *, maximum: float | None = None) -> float:
    """A finite number > 0 (stride, learning rate, colour limit ...)."""
    return real_number(value, name, minimum=0.0, maximum=maximum, low_open=True)


def mpp(value, name: str = "--mpp") -> float:
    """µm per pixel: > 0 and at most 1000."""
    return real_number(value, name, minimum=0.0, maximum=MAX_MPP, low_open=True)


def radius_um(value, name: str = "--radius-um") -> float:
    """A radius in µm: > 0 and at most 10 mm."""
    return real_number(value, name, minimum=0.0, maximum=10_000.0, low_open=True)


def seed(value, name: str = "--seed") -> int:
    """A random seed: 0 .. 2**32 - 1."""
    return whole_number(value, name, minimum=0, maximum=2**32 - 1)


# -- regions and sizes on a slide -------------------------------------------------------------
def parse_region(text, name: str = "--region", *, slide_shape: tuple[int, int] | None = None
                 ) -> Region:
    """``"row,col,height,width"`` in level-0 pixels as a :class:`Region`.

    Parameters
    ----------
    text : str or sequence of 4 numbers
    name : str
        The option as the user sees it.
    slide_shape : (height, width), optional
        With it, the region is checked against the slide (see :func:`region_on_slide`).

    Raises
    ------
    OptionError
        Not four numbers; inf/nan or fractions; a negative corner; a height or width < 1; off
        the slide.
    """
    parts = [p.strip() for p in str(text).split(",")] if isinstance(text, str) else list(text)
    if len(parts) != 4:
        raise OptionError(f"{name} is 'row,col,height,width' in level-0 pixels, got "
                          f"{_show(text)}")
    values = []
    for label, part, low in zip(("row", "col", "height", "width"), parts, (0, 0, 1, 1)):
        try:
            number = _number(part, label, whole=True)
        except OptionError:
            raise OptionError(f"{name}: {label} must be a finite whole number, got "
                              f"{_show(part)}") from None
        if number < low:
            raise OptionError(f"{name}: {label} must be >= {low} (level-0 pixels), got {number}")
        values.append(number)
    region = Region(*values)
    return region if slide_shape is None else region_on_slide(region, slide_shape, name)


def region_on_slide(region: Region, slide_shape: tuple[int, int], name: str = "--region"
                    ) -> Region:
    """``region`` cut to the slide; an error when nothing of it lies on the slide."""
    h, w = (int(v) for v in slide_shape)
    if region.level0_row >= h or region.level0_col >= w or region.bottom <= 0 or region.right <= 0:
        raise OptionError(f"{name} {','.join(map(str, region.as_tuple()))} lies outside the slide "
                          f"({h} x {w} level-0 px)")
    return region.clip(h, w)


def patch_fits(footprint: float, slide_shape: tuple[int, int], *,
               what: str = "the model's patch") -> float:
    """Check a patch of ``footprint`` level-0 px fits on a slide of ``slide_shape``.

    A patch larger than the slide would be mostly padding: every patch would be background or
    a guess, so it is an error rather than an empty map.
    """
    h, w = (int(v) for v in slide_shape)
    if not math.isfinite(footprint) or footprint <= 0:
        raise OptionError(f"{what} covers {footprint} level-0 px: check the model's patch size "
                          "and µm/px and the slide's µm/px")
    if footprint > min(h, w):
        raise OptionError(f"{what} covers {footprint:.0f} x {footprint:.0f} level-0 px, more "
                          f"than the slide ({h} x {w} px): use a model for a coarser scale, or "
                          "check --mpp")
    return footprint


def require_patches(n_patches: int, *, tissue_threshold: float, what: str = "the region") -> int:
    """0 patches is an error: a map with nothing in it would look like an answer."""
    if n_patches <= 0:
        raise OptionError(f"no patch of {what} has tissue at --tissue-threshold "
                          f"{tissue_threshold:g} (0 patches): lower the threshold or choose "
                          "another region")
    return n_patches
