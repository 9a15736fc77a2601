"""How each metric reads a signed heatmap: one documented convention per metric.

An explanation map can be signed (LRP: positive = evidence for the target class, negative =
evidence against it) or unsigned (Grad-CAM, a probability map). A metric that asks "where is the
evidence for the class" must not count strong negative evidence as "on", so the default for the
cell scores and the localisation metrics is **rectified**: ``max(value, 0)``. The region table
keeps the **signed** mean (the sampling-bias test of seed 000 needs the sign) beside the
rectified one. Every ``xhisto evaluate`` output records the conventions it used
(:func:`conventions_record`).

Conventions
-----------
``"rectified"``
    ``max(value, 0)``: evidence for the class only (seed 000's cell scores). Unsigned maps are
    unchanged.
``"signed"``
    the values as they are (negative evidence counts as low, not as absent).
``"absolute"``
    ``|value|``: evidence for or against (magnitude of relevance).
NaN pixels (not computed) stay NaN under every convention and are left out of every metric.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CONVENTIONS", "DEFAULT_CONVENTIONS", "apply_convention", "check_convention",
           "conventions_record"]

CONVENTIONS = {
    "rectified": "max(value, 0): evidence for the class only; negative evidence counts as 0",
    "signed": "values as they are: negative evidence counts as low",
    "absolute": "|value|: evidence for or against the class",
}

DEFAULT_CONVENTIONS = {"cell_scores": "rectified", "localization": "rectified"}

_HOW = {
    "cell_scores": "area-weighted mean of the {conv} map over the disc of radius_um around each "
                   "cell (exact disc integral over map pixels; NaN pixels left out)",
    "localization": "{conv} map, min-max scaled to [0, 1] over its finite pixels (Choe et al.), "
                    "score >= threshold on a grid of step {step}; NaN pixels ignored (as the "
                    "WSOL evaluator's ignore mask); percentile thresholds on the {conv} values, "
                    "a pixel on when strictly above",
    "regions": "signed mean and total of the raw values per region, plus the rectified mean "
               "(mean_positive) and the fraction of pixels above 0",
    "random_baseline": "uniform [0, 1) maps, NaN wherever the evaluated heatmap is NaN",
}


def check_convention(convention: str, *, what: str = "convention") -> str:
    """``convention`` if it is known, else a ValueError naming the choices."""
    if convention not in CONVENTIONS:
        raise ValueError(f"{what} must be one of {sorted(CONVENTIONS)}, got {convention!r}")
    return convention


def apply_convention(values, convention: str) -> np.ndarray:
    """``values`` read under ``convention`` (NaN kept); no copy for ``"signed"``.

    Examples
    --------
    >>> import numpy as np
    >>> v = np.array([-2.0, 0.5, np.nan])
    >>> apply_convention(v, "rectified").tolist(), apply_convention(v, "absolute").tolist()
    ([0.0, 0.5, nan], [2.0, 0.5, nan])
    """
    check_convention(convention)
    v = np.asarray(values)
    if convention == "signed":
        return v
    if convention == "absolute":
        return np.abs(v)
    return np.maximum(v, 0, dtype=v.dtype if v.dtype.kind == "f" else np.float64)


def conventions_record(*, cell_scores: str = "rectified", localization: str = "rectified",
                       threshold_step: float = 0.001) -> dict:
    """What each metric of an evaluation did with a signed map, as recorded in its output.

    Examples
    --------
    >>> conventions_record()["cell_scores"]["map"]
    'rectified'
    """
    out = {}
    for key, conv in (("cell_scores", cell_scores), ("localization", localization)):
        check_convention(conv, what=f"{key} convention")
        out[key] = {"map": conv, "definition": CONVENTIONS[conv],
                    "how": _HOW[key].format(conv=conv, step=threshold_step)}
    out["regions"] = {"map": "signed", "how": _HOW["regions"]}
    out["random_baseline"] = {"how": _HOW["random_baseline"]}
    return out
