"""Display colormaps of heatmap and probability layers, as plain numbers (no napari import).

Both the Explain widget's layers and heatmap files opened again (``export.layer_reader``) use
these, so a saved map comes back looking as it did. Each is a dict napari accepts as a layer's
``colormap`` (``{"name", "display_name", "colors", "controls"}``, colours RGBA in 0..1):

- relevance: blue (against the class) - clear - red (for it), as matplotlib's ``bwr`` but with
  opacity rising from 0 at zero relevance to 1 at 35 % of the limit, so near-zero relevance
  shows the (grey) H&E underneath instead of a white veil (seed 000's figures);
- probability: yellow - orange - red - dark red, transparent up to ``p = 0.1`` and opaque from
  ``p = 0.5``, so tissue the model calls negative stays visible.
"""

from __future__ import annotations

import numpy as np

HEATMAP_NAME = "xhisto-bwr"
PROBABILITY_NAME = "xhisto-probability"
CLEAR_CENTRE = 0.35  # |value| / limit at which a relevance colour is fully opaque
P_CLEAR, P_OPAQUE = 0.1, 0.5  # probabilities at which the probability colour starts / is opaque
N_CONTROLS = 65

# ColorBrewer YlOrRd (as matplotlib's), from light yellow to dark red
_YLORRD = np.array([[255, 255, 204], [254, 217, 118], [253, 141, 60], [227, 26, 28],
                    [128, 0, 38]], np.float64) / 255


def heatmap_colormap_spec() -> dict:
    """The relevance colormap (blue - clear - red) as a napari colormap dict."""
    x = np.linspace(0.0, 1.0, N_CONTROLS)
    rgb = np.where(x[:, None] < 0.5,
                   np.stack([2 * x, 2 * x, np.ones_like(x)], axis=1),
                   np.stack([np.ones_like(x), 2 - 2 * x, 2 - 2 * x], axis=1))
    alpha = np.clip(np.abs(x - 0.5) * 2 / CLEAR_CENTRE, 0.0, 1.0)
    colors = np.concatenate([np.clip(rgb, 0, 1), alpha[:, None]], axis=1)
    return {"name": HEATMAP_NAME, "display_name": "bwr (clear centre)",
            "colors": colors.tolist(), "controls": x.tolist()}


def probability_colormap_spec() -> dict:
    """The probability colormap (clear below 0.1, yellow to dark red) as a napari colormap dict."""
    x = np.linspace(0.0, 1.0, N_CONTROLS)
    stops = np.linspace(0.0, 1.0, len(_YLORRD))
    rgb = np.stack([np.interp(x, stops, _YLORRD[:, k]) for k in range(3)], axis=1)
    alpha = np.clip((x - P_CLEAR) / (P_OPAQUE - P_CLEAR), 0.0, 1.0)
    colors = np.concatenate([rgb, alpha[:, None]], axis=1)
    return {"name": PROBABILITY_NAME, "display_name": "probability (clear when low)",
            "colors": colors.tolist(), "controls": x.tolist()}


def colormap_spec(kind: str) -> dict:
    """``heatmap_colormap_spec()`` or ``probability_colormap_spec()`` for a layer ``kind``."""
    return probability_colormap_spec() if kind == "probability" else heatmap_colormap_spec()
