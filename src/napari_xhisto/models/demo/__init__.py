"""The bundled demo classifier: tumour vs non-tumour on synthetic H&E (see TRAINING.md here).

``load_demo()`` is ``load_model("demo")``; ``DEMO_SPEC_PATH`` points at its spec JSON.
"""

from __future__ import annotations

from pathlib import Path

DEMO_DIR = Path(__file__).parent
DEMO_SPEC_PATH = DEMO_DIR / "demo.json"


def load_demo(*, device=None):
    """The bundled demo model as a ``LoadedModel``."""
    from ..loading import load_model

    return load_model(DEMO_SPEC_PATH, device=device)
