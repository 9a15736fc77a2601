"""The Calibration tab's work, without Qt: labelled patch logits, temperature, reliability plot.

:func:`iter_calibration_job` is a generator of ``(done, total)`` (patches read, then the splits)
returning a :class:`CalibrationOutcome`; the tab runs it in a worker thread (Cancel closes it,
which closes what it opened). The same functions as ``xhisto calibrate``
(:mod:`napari_xhisto.models.calibrate`, :mod:`napari_xhisto.metrics.calibration_study`,
:mod:`napari_xhisto.export.reliability`), so the tab and the CLI give the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import XhistoError


@dataclass
class CalibrationRequest:
    """What to calibrate: a model on one slide against annotations (level-0 pixels)."""

    model: object            # "demo", a spec path, or a LoadedModel
    slide: object            # an open Slide or a path
    annotations: object      # AnnotationSet
    rule: str = "auto"
    min_cells: int = 3
    n_splits: int = 20
    seed: int = 0
    val_fraction: float = 0.5
    n_bins: int = 10
    tissue_threshold: float = 0.1


@dataclass
class CalibrationOutcome:
    model: object            # LoadedModel
    data: object             # CalibrationData
    report: dict             # temperature_report
    study: dict              # repeated_splits
    image: np.ndarray        # the reliability figure, RGBA
    figure: object           # the matplotlib Figure (kept for saving)
    request: CalibrationRequest


def iter_calibration_job(req: CalibrationRequest):
    """Collect logits, fit the temperature, draw the figure: yields (done, total)."""
    from ...export.reliability import reliability_figure
    from ...metrics.calibration_study import repeated_splits, temperature_report
    from ...models import load_model
    from ...models.calibrate import iter_collect_logits
    from .plots import rgba

    model = load_model(req.model)
    gen = iter_collect_logits([req.slide], [req.annotations], model, rule=req.rule,
                              min_cells=req.min_cells, tissue_threshold=req.tissue_threshold)
    extra = int(req.n_splits) + 1
    try:
        while True:
            done, total = next(gen)
            yield done, total + extra
    except StopIteration as stop:
        data = stop.value
    finally:
        gen.close()
    try:
        report = temperature_report(data.logits, data.labels, val_fraction=req.val_fraction,
                                    seed=req.seed, n_bins=req.n_bins,
                                    class_names=data.class_names)
        yield total + 1, total + extra
        study = repeated_splits(data.logits, data.labels, n_splits=req.n_splits,
                                val_fraction=req.val_fraction, seed=req.seed,
                                n_bins=req.n_bins, class_names=data.class_names)
    except ValueError as exc:
        raise XhistoError(str(exc)) from None
    fig = reliability_figure(report, study, stacked=True, width=3.7, height=5.8)
    image = rgba(fig)
    yield total + extra, total + extra
    return CalibrationOutcome(model, data, report, study, image, fig, req)


def summary_rows(outcome: CalibrationOutcome) -> list[tuple[str, str]]:
    """``(what, value)`` lines the tab shows, formatted from the outcome's numbers."""
    r, s = outcome.report, outcome.study
    b, a = r["before"], r["after"]
    temps = np.asarray(s["temperatures"], float)
    eb, ea = np.asarray(s["before"]["ece"]), np.asarray(s["after"]["ece"])
    per_class = ", ".join(f"{c} {int((outcome.data.labels == i).sum())}"
                          for i, c in enumerate(outcome.data.class_names))
    return [
        ("temperature", f"{r['temperature']:.3f}"),
        ("ECE (test split)", f"{b['ece']:.4f} → {a['ece']:.4f}"),
        ("MCE (test split)", f"{b['mce']:.4f} → {a['mce']:.4f}"),
        ("patches", f"{len(outcome.data.labels)} ({per_class}); validation {r['n_val']}, "
                    f"test {r['n_test']}"),
        (f"over {len(temps)} splits", f"ECE {eb.mean():.4f} ± {eb.std():.4f} → "
                                      f"{ea.mean():.4f} ± {ea.std():.4f}; T {np.median(temps):.3f} "
                                      f"[{temps.min():.3f}, {temps.max():.3f}]"),
    ]
