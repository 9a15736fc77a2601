"""Beer–Lambert stain model: haematoxylin and eosin optical densities to RGB.

Colours come from optical densities (OD) along the Ruifrok–Johnston stain vectors, so the
synthetic tissue separates with ``skimage.color.rgb2hed`` exactly as a scanned H&E slide does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Ruifrok & Johnston (2001), as used by skimage.color.rgb2hed (rows: H, E), normalised.
RUIFROK_H = np.array([0.65, 0.70, 0.29])
RUIFROK_E = np.array([0.07, 0.99, 0.11])
# Stain vectors Macenko et al. (2009) estimated on scanned slides (a common reference): eosin
# absorbs more blue on real scans than the Ruifrok–Johnston vector says.
MACENKO_H = np.array([0.5626, 0.7201, 0.4062])
MACENKO_E = np.array([0.2159, 0.8012, 0.5581])
# Erythrocytes take eosin strongly and look orange-red: more blue absorption than eosin alone.
RBC_VECTOR = np.array([0.10, 0.80, 0.59])
# Pen inks: green (absorbs red and blue) and dark blue-black.
INK_VECTORS = {"green": np.array([0.72, 0.22, 0.66]), "blue": np.array([0.62, 0.55, 0.20])}
# Stain styles: "a" is what every synthetic field (and the bundled demo model) uses; "b" is a
# second laboratory: a bluer, stronger haematoxylin, a weak orange-pink eosin and a scanner with a
# warm white balance (a domain shift for MC-dropout and bias experiments).
STAIN_STYLES = ("a", "b")
STYLE_B_H = np.array([0.78, 0.58, 0.22])
STYLE_B_E = np.array([0.03, 0.72, 0.69])


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


@dataclass(frozen=True)
class StainParams:
    """One slide's staining: stain vectors, stain strengths and the scanner's white level.

    Parameters
    ----------
    h_vector, e_vector : ndarray (3,)
        Unit OD vectors (R, G, B) of haematoxylin and eosin.
    h_scale, e_scale : float
        Multipliers on the concentrations (staining batch, section thickness).
    white : ndarray (3,)
        Transmitted intensity through bare glass, 0..255.
    """

    h_vector: np.ndarray
    e_vector: np.ndarray
    h_scale: float = 1.0
    e_scale: float = 1.0
    white: np.ndarray = None  # type: ignore[assignment]

    @classmethod
    def reference(cls) -> StainParams:
        return cls(_unit(RUIFROK_H), _unit(RUIFROK_E), 1.0, 1.0, np.array([244.0, 242.0, 245.0]))

    @classmethod
    def random(cls, rng: np.random.Generator) -> StainParams:
        """Stain variation between slides: small rotations of the vectors, strength changes."""
        # Each slide's vectors lie between Ruifrok–Johnston and scanner-estimated vectors.
        th, te = rng.uniform(0.2, 0.6), rng.uniform(0.55, 0.85)
        h = _unit((1 - th) * RUIFROK_H + th * MACENKO_H + rng.normal(0, 0.02, 3))
        e = _unit((1 - te) * RUIFROK_E + te * MACENKO_E + rng.normal(0, 0.02, 3))
        white = np.array([243.0, 243.0, 244.0]) + rng.normal(0, 1.5, 3)
        return cls(h, e, float(rng.uniform(0.85, 1.15)), float(rng.uniform(0.85, 1.15)),
                   np.clip(white, 225, 252))


def stain_for_style(style: str, rng: np.random.Generator) -> StainParams:
    """One slide's staining in ``style`` (see ``STAIN_STYLES``); "a" is ``StainParams.random``.

    Style "b" varies from slide to slide as "a" does (vectors jittered, strengths within 15%)
    around its own vectors, haematoxylin x1.5, eosin x0.6 and white (246, 238, 222).
    """
    if style == "a":
        return StainParams.random(rng)
    if style != "b":
        raise ValueError(f"stain_style must be one of {STAIN_STYLES}, got {style!r}")
    h = _unit(STYLE_B_H + rng.normal(0, 0.02, 3))
    e = _unit(STYLE_B_E + rng.normal(0, 0.02, 3))
    white = np.array([246.0, 238.0, 222.0]) + rng.normal(0, 1.5, 3)
    return StainParams(h, e, float(1.5 * rng.uniform(0.85, 1.15)),
                       float(0.6 * rng.uniform(0.85, 1.15)), np.clip(white, 200, 252))


def od_to_rgb(h_od: np.ndarray, e_od: np.ndarray, stain: StainParams, *,
              extra: list[tuple[np.ndarray, np.ndarray]] = (), out: np.ndarray | None = None
              ) -> np.ndarray:
    """Transmitted RGB of a pixel field of H and E concentrations (Beer–Lambert).

    Parameters
    ----------
    h_od, e_od : ndarray (H, W) float32
        Concentrations, in optical-density units along the unit stain vectors.
    stain : StainParams
    extra : list of (concentration (H, W), vector (3,))
        Further absorbers (erythrocytes, pen ink, fold darkening).
    out : ndarray (H, W, 3) uint8, optional

    Returns
    -------
    ndarray (H, W, 3) uint8
    """
    if out is None:
        out = np.empty(h_od.shape + (3,), dtype=np.uint8)
    hs = np.float32(stain.h_scale)
    es = np.float32(stain.e_scale)
    for c in range(3):
        od = h_od * np.float32(stain.h_vector[c] * hs)
        od += e_od * np.float32(stain.e_vector[c] * es)
        for conc, vec in extra:
            od += conc * np.float32(vec[c])
        np.negative(od, out=od)
        np.exp(od, out=od)
        od *= np.float32(stain.white[c])
        np.clip(od, 0, 255, out=od)
        out[..., c] = od
    return out
