"""The numpydoc examples of every metrics module run and give what they show."""

import doctest
import importlib

import pytest

MODULES = ["cells", "regions", "localization", "threshold_sweep", "baseline_maps", "uncertainty", "multi", "study_scale", "conventions", "bias", "calibration",
           "report", "sanity", "meta"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"napari_xhisto.metrics.{name}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
