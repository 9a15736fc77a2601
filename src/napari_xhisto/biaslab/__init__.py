"""Bias lab: seed 000's three bias experiments, end to end on synthetic tissue.

A clean tumour classifier and three biased ones (class-correlated square, centre-cell labels
without translation, necrosis excluded) are trained on synthetic H&E patches, explained with
LRP, and the diagnostics of ``napari_xhisto.metrics`` must flag each biased model and not the
clean one. Imports torch (never napari or Qt).

>>> from napari_xhisto.biaslab import run_bias_lab          # doctest: +SKIP
>>> from napari_xhisto.progress import run_to_end          # doctest: +SKIP
>>> result = run_to_end(run_bias_lab("out", quick=True))    # doctest: +SKIP
>>> result.summary["checks"]                                # doctest: +SKIP
"""

from .config import BiasLabConfig, SquareArtefact
from .core import BiasLabResult, run_bias_lab

__all__ = ["BiasLabConfig", "BiasLabResult", "SquareArtefact", "run_bias_lab"]
