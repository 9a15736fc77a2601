"""Shared test fixtures. Module-specific fixtures live in their test files."""

from pathlib import Path

import pytest

from napari_xhisto._torch_guard import block_triton

# viewer tests draw with Mesa before some tests import torch: see _torch_guard
block_triton()

SHARED = Path(__file__).resolve().parents[2] / "shared"
CMU1 = SHARED / "data" / "CMU-1-Small-Region.svs"


@pytest.fixture(scope="session")
def cmu1_path() -> Path:
    """The real Aperio slide shipped beside the checkout in ../shared/data (CC0)."""
    if not CMU1.exists():
        pytest.skip(f"real slide not found at {CMU1}: ../shared is absent beside this checkout")
    return CMU1
