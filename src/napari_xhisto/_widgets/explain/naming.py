"""Words the Explain widget shows: layer names, panel titles, the demo-model banner (pure).

Layer names say what a pathologist needs to tell layers apart: method, class name, model and
where on the slide (the region's centre in µm or mm, as QuPath shows positions), never level-0
pixel offsets.
"""

from __future__ import annotations

from pathlib import Path

from ...geometry import Region

SEP = " · "
DEMO_BANNER = ("The bundled demo model was trained on synthetic tissue only: its heatmaps on "
               "this real slide show how the methods work, not what the tissue is.")
SYNTHETIC_PREFIX = "synthetic-he-seed"  # the sample data's cached slides
SYNTHETIC_PROPERTY = "XhistoSynthetic"  # written by napari_xhisto.synth into the description


def length_label(um: float) -> str:
    """``512 µm`` below a millimetre, ``1.25 mm`` above."""
    return f"{um / 1000:.2f} mm" if abs(um) >= 1000 else f"{um:.0f} µm"


def position_label(region: Region | None, mpp: float | None) -> str:
    """The centre of ``region`` as ``x 1.25 mm, y 640 µm`` (``px`` when µm/px is unknown)."""
    if region is None:
        return "whole slide"
    cy = region.level0_row + region.height / 2
    cx = region.level0_col + region.width / 2
    if not mpp:
        return f"x {cx:.0f} px, y {cy:.0f} px"
    return f"x {length_label(cx * mpp)}, y {length_label(cy * mpp)}"


def model_label(spec, spec_path) -> str:
    """``demo`` for the bundled model, else the spec's name (its file name)."""
    if spec_path is None:
        return "demo"
    return getattr(spec, "name", None) or Path(spec_path).stem


def heatmap_name(method: str, class_name: str, model: str, region: Region, mpp) -> str:
    return SEP.join((method, class_name, model)) + " @ " + position_label(region, mpp)


def canvas_name(method: str, class_name: str, model: str) -> str:
    return SEP.join((method, class_name, model)) + " (canvas)"


def probability_name(class_name: str, model: str, region: Region | None, mpp) -> str:
    return f"p({class_name}){SEP}{model} @ {position_label(region, mpp)}"


def panel_title(meta: dict) -> str:
    """Title of a compare panel from a layer's ``metadata["xhisto"]``: method, class, norm."""
    prov = meta.get("provenance", {})
    if meta.get("kind") == "probability":
        return f"p({meta.get('class_name', '?')}){SEP}probability (0 to 1)"
    norm = prov.get("normalize") or "?"
    target = prov.get("target_class") or prov.get("target", "?")
    return SEP.join((str(prov.get("method", "?")), str(target), f"normalised: {norm}"))


def is_synthetic_slide(meta: dict) -> bool:
    """Whether a slide layer's ``metadata["xhisto"]`` is a napari-xhisto synthetic slide."""
    props = meta.get("properties") or {}
    if any(str(k).endswith(SYNTHETIC_PROPERTY) for k in props):
        return True
    return Path(str(meta.get("slide_path") or "")).name.startswith(SYNTHETIC_PREFIX)


def needs_demo_banner(spec_path, slide_meta: dict | None) -> bool:
    """The demo model (``spec_path`` None) on a real slide: its heatmaps mean little there."""
    return spec_path is None and slide_meta is not None and not is_synthetic_slide(slide_meta)
