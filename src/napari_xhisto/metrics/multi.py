"""Several heatmaps of the same cells at once: each evaluated, then their AUCs compared.

Seed 000's granularity claim (pixel-level LRP separates tumour cells better than Grad-CAM, which
beats the patch-level probability map) is a statement about differences of AUCs measured on the
same cells, so each pair gets a paired bootstrap interval of the difference and DeLong's test.
"""

from __future__ import annotations

import itertools

import numpy as np

from ._common import cell_arrays
from .cells import _labels
from .report import iter_evaluate_heatmap
from .uncertainty import paired_auc_difference

__all__ = ["evaluate_heatmaps", "iter_evaluate_heatmaps"]


def evaluate_heatmaps(heatmaps, **options) -> dict:
    """`iter_evaluate_heatmaps` run to its end."""
    from ..progress import run_to_end

    return run_to_end(iter_evaluate_heatmaps(heatmaps, **options))


def iter_evaluate_heatmaps(heatmaps, *, cells=None, positive=("tumour",), negative=None,
                           n_boot: int = 1000, ci_level: float = 0.95, seed: int = 0, **options):
    """Evaluate each heatmap (`iter_evaluate_heatmap`) and compare every pair's cell AUC.

    Parameters
    ----------
    heatmaps : dict of str to (values, placement)
        Heatmaps by label (e.g. method name), each with its own placement.
    cells : CellPoints or None
        The cells all heatmaps are scored on.
    **options
        Passed to `iter_evaluate_heatmap` (``mpp``, ``radius_um``, ``regions`` ...).

    Yields
    ------
    (done, total)

    Returns
    -------
    dict
        ``heatmaps`` (label to its metrics dict), ``auc_comparisons`` (one entry per pair
        ``a``, ``b``: ``difference`` = AUC_b - AUC_a with its paired bootstrap interval,
        ``delong_p``, and the cells both scored) and ``labels`` in order.

    Examples
    --------
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> rng = np.random.default_rng(0)
    >>> rows, cols = rng.uniform(0, 40, 200), rng.uniform(0, 40, 200)
    >>> cells = SimpleNamespace(rows=rows, cols=cols,
    ...                         classes=np.where(cols < 20, "tumour", "stroma"))
    >>> sharp = np.zeros((40, 40)); sharp[:, :20] = 1
    >>> noisy = 0.2 * sharp + rng.random((40, 40))
    >>> out = evaluate_heatmaps({"sharp": (sharp, None), "noisy": (noisy, None)}, cells=cells,
    ...                         mpp=1, radius_um=2, n_random=0, n_boot=100)
    >>> c = out["auc_comparisons"][0]
    >>> c["a"], c["b"], bool(c["difference"] < 0)
    ('sharp', 'noisy', True)
    """
    if not heatmaps:
        raise ValueError("give at least one heatmap")
    labels = list(heatmaps)
    n_runs = len(labels)
    out = {"labels": labels, "heatmaps": {}, "auc_comparisons": []}
    base = 0
    for label in labels:
        values, placement = heatmaps[label]
        gen = iter_evaluate_heatmap(values, placement=placement, cells=cells, positive=positive,
                                    negative=negative, n_boot=n_boot, ci_level=ci_level,
                                    seed=seed, **options)
        try:
            while True:
                done, total = next(gen)
                yield base + done / max(total, 1), n_runs + 1
        except StopIteration as stop:
            out["heatmaps"][label] = stop.value
        base += 1
    if cells is not None and len(cell_arrays(cells)[0]) and len(labels) > 1:
        _, _, classes = cell_arrays(cells)
        is_pos, is_neg = _labels(classes, positive, negative)
        considered = is_pos | is_neg
        for a, b in itertools.combinations(labels, 2):
            sa = out["heatmaps"][a].get("cells", {}).get("scores")
            sb = out["heatmaps"][b].get("cells", {}).get("scores")
            if sa is None or sb is None:
                continue
            entry = {"a": a, "b": b}
            try:
                entry.update(paired_auc_difference(np.asarray(sa)[considered],
                                                   np.asarray(sb)[considered],
                                                   is_pos[considered], n_boot=n_boot,
                                                   level=ci_level, seed=seed))
                entry["interval_excludes_zero"] = bool(entry["low"] > 0 or entry["high"] < 0)
            except ValueError as exc:
                entry["error"] = str(exc)
            out["auc_comparisons"].append(entry)
    yield n_runs + 1, n_runs + 1
    return out
