"""One normalisation scale per slide/model/method across runs (seed 000 normalises over a study).

``normalize="global-max"`` divides a heatmap by the largest |relevance| of *its own run*, so
region means of two runs over different regions of a slide are on different scales. A small
JSON store keeps, per key (slide, model, method, target class, method parameters), the running
maximum of the runs' raw peaks; a heatmap divided by that study-wide maximum compares with every
other heatmap of the same key. The store is plain JSON, written atomically (temporary file +
rename), and records every run's peak so a growing maximum is visible.

Pure module: no torch, no Qt. ``xhisto evaluate --study-scale STORE`` uses
`rescale_to_study`; the explain path can call `update_study_scale` with a run's raw peak.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import numpy as np

__all__ = ["load_store", "raw_peak", "rescale_to_study", "study_key", "update_study_scale"]

_VERSION = 1


def study_key(provenance: dict) -> str:
    """The store key of a heatmap: slide file, model, method, target class, parameters.

    Examples
    --------
    >>> study_key({"slide": "/d/a.svs", "model": {"model": "demo"}, "method": "lrp",
    ...            "target_class": "tumour", "params": {}})
    'a.svs | demo | lrp | tumour | {}'
    """
    prov = provenance or {}
    model = prov.get("model")
    if isinstance(model, dict):
        model = model.get("model") or model.get("name") or model.get("architecture")
    slide = Path(str(prov.get("slide") or "?")).name
    target = prov.get("target_class", prov.get("target", "?"))
    params = json.dumps(prov.get("params") or {}, sort_keys=True, default=str)
    return " | ".join(str(v) for v in (slide, model or "?", prov.get("method") or "?", target,
                                       params))


def raw_peak(values, provenance: dict) -> tuple[float, float]:
    """(peak of the raw map, factor turning stored values into raw ones) of a heatmap.

    A ``global-max`` heatmap stores ``raw / scale`` with ``scale`` = the run's peak |relevance|
    (``provenance["normalization_scale"]``); an unnormalised one stores raw values (peak =
    max |value|). Per-patch and percentile normalisation cannot be undone: a ValueError.
    """
    prov = provenance or {}
    how = prov.get("normalize", "none")
    if how in (None, "none"):
        v = np.asarray(values)
        peak = float(np.nanmax(np.abs(v))) if np.isfinite(v).any() else 0.0
        return peak, 1.0
    if how == "global-max":
        scale = float(prov.get("normalization_scale") or 0.0)
        if not scale > 0:
            raise ValueError("the heatmap's provenance has no normalization_scale: re-run "
                             "`xhisto explain` to get one")
        return scale, scale
    raise ValueError(f"a study-wide scale needs heatmaps normalised by 'global-max' or not at "
                     f"all, this one is {how!r}: re-run `xhisto explain --normalize global-max`")


def load_store(path) -> dict:
    """The store at ``path`` (an empty one when the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return {"version": _VERSION, "entries": {}}
    try:
        store = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a study-scale store (JSON): {exc}") from None
    if not isinstance(store, dict) or "entries" not in store:
        raise ValueError(f"{path} is not a study-scale store (no 'entries'); give another file")
    return store


def update_study_scale(path, key: str, peak: float, *, source: str = "") -> dict:
    """Add one run's raw peak under ``key``; returns the entry (``max``, ``runs`` ...).

    The file is rewritten atomically; every run is kept with its peak and time.
    """
    if not np.isfinite(peak) or peak < 0:
        raise ValueError(f"a run's peak must be a finite number >= 0, got {peak}")
    path = Path(path)
    store = load_store(path)
    entry = store["entries"].setdefault(key, {"max": 0.0, "runs": []})
    previous = float(entry["max"])
    entry["max"] = max(previous, float(peak))
    entry["runs"].append({"peak": float(peak), "source": str(source),
                          "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(store, indent=1), encoding="utf-8")
    tmp.replace(path)
    return {**entry, "previous_max": previous}


def rescale_to_study(path, values, provenance: dict, *, source: str = ""):
    """``values`` divided by the study-wide maximum of their key, after recording this run.

    Returns ``(rescaled, info)``; ``info`` names the store, key, study maximum, this run's
    peak, the factor applied, the number of runs and whether this run raised the maximum
    (then heatmaps rescaled before it used a smaller maximum: evaluate them again).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> store = os.path.join(tempfile.mkdtemp(), "scale.json")
    >>> prov = {"slide": "s.svs", "method": "lrp", "normalize": "global-max"}
    >>> a, _ = rescale_to_study(store, np.array([0.5, 1.0]), {**prov, "normalization_scale": 4.0})
    >>> b, info = rescale_to_study(store, np.array([0.5, 1.0]), {**prov, "normalization_scale": 2.0})
    >>> b.tolist(), info["study_max"], info["raised_max"]  # run 2's peak was half the study's
    ([0.25, 0.5], 4.0, False)
    """
    peak, factor = raw_peak(values, provenance)
    key = study_key(provenance)
    entry = update_study_scale(path, key, peak, source=source)
    study_max = float(entry["max"])
    scale = factor / study_max if study_max > 0 else 1.0
    rescaled = np.asarray(values, dtype=np.float32) * np.float32(scale)
    info = {"store": str(path), "key": key, "study_max": study_max, "run_peak": peak,
            "factor_applied": scale, "n_runs": len(entry["runs"]),
            "raised_max": study_max > entry["previous_max"] and len(entry["runs"]) > 1,
            "how": "values x run scale / study-wide max of raw peaks (running maximum)"}
    return rescaled, info
