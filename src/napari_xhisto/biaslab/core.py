"""``run_bias_lab``: train, explain and diagnose, a generator of (done, total) returning the result.

Steps (progress counts optimizer steps plus one unit per evaluation stage): sample the
synthetic data, train the clean and the biased models, run the three diagnostics, write the
figures, ``summary.json`` and ``summary.md`` into the output folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..progress import shifted
from ..synth import generate_tissue
from .config import BiasLabConfig
from .evaluate import (
    field_heatmaps,
    run_cell_check,
    run_centre_check,
    run_necrosis_check,
    run_square_checks,
)
from .training import FIELD_SEED_OFFSET, model_plans, sample_data, steps_of, train_all

EVAL_UNITS = 6  # data, squares, centre, fields, heatmaps+checks, report


@dataclass
class BiasLabResult:
    """What a run produced: the summary dict and where its files are."""

    summary: dict
    out_dir: Path
    files: list[Path]


def run_bias_lab(out_dir, *, quick: bool = False, seed: int = 0,
                 config: BiasLabConfig | None = None):
    """Reproduce seed 000's three bias experiments on synthetic tissue.

    Parameters
    ----------
    out_dir : path
        Folder for the figures, ``summary.json`` and ``summary.md`` (created).
    quick : bool
        The small version (about 2-3 CPU minutes) used by the tests.
    seed : int
        Seed of all data and training.
    config : BiasLabConfig, optional
        Explicit sizes (overrides ``quick`` and ``seed``).

    Yields
    ------
    (done, total)

    Returns
    -------
    BiasLabResult
    """
    from .plots import write_figures
    from .report import build_summary, write_summary

    cfg = config or BiasLabConfig.preset(quick=quick, seed=seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_models = len(model_plans(cfg))
    train_total = steps_of(cfg) * n_models
    unit = max(1, train_total // 20)
    total = train_total + EVAL_UNITS * unit
    times: dict[str, float] = {}
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, cfg.threads))
    try:
        yield 0, total
        t0 = time.perf_counter()
        data = sample_data(cfg)
        times["sample_patches"] = time.perf_counter() - t0
        yield unit, total
        t0 = time.perf_counter()
        models = yield from shifted(train_all(cfg, data), offset=unit, total=total)
        times["training"] = time.perf_counter() - t0
        base = unit + train_total
        t0 = time.perf_counter()
        squares = run_square_checks(models, data["test"])
        yield base + unit, total
        centre = run_centre_check(models, data["test"], data["test-centred"])
        yield base + 2 * unit, total
        fields = [generate_tissue(cfg.field_size, cfg.field_size,
                                  seed=cfg.seed + FIELD_SEED_OFFSET + k, mpp=cfg.mpp,
                                  necrosis=cfg.necrosis)
                  for k in range(cfg.n_fields)]
        yield base + 3 * unit, total
        heat = field_heatmaps(models, fields, ("clean", "centre-label", "no-necrosis"),
                              cfg.patch_size)
        cells = run_cell_check(heat, fields, ps=cfg.patch_size, mpp=cfg.mpp,
                               radius_um=cfg.cell_radius_um)
        necrosis = run_necrosis_check(heat, fields, cfg.patch_size)
        times["evaluation"] = time.perf_counter() - t0
        yield base + 4 * unit, total
        t0 = time.perf_counter()
        files = write_figures(out_dir, cfg=cfg, models=models, data=data, squares=squares,
                              centre=centre, fields=fields, heat=heat, necrosis=necrosis)
        times["figures"] = time.perf_counter() - t0
        yield base + 5 * unit, total
        summary = build_summary(cfg, models, squares, centre, cells, necrosis, times, files)
        files += write_summary(out_dir, summary)
        yield total, total
        return BiasLabResult(summary, out_dir, files)
    finally:
        torch.set_num_threads(old_threads)
