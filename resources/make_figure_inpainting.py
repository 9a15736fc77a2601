"""Figure for the README: inpainting before/after vs the naive fillings of seed 001's Fig. 1b.

Rows: held-out synthetic patches (demo model scale, 64 px at 1 µm/px). Columns: original, the
hole, the bundled inpainter's filling, grey, blur, mean colour; each titled with the demo
classifier's p(tumour). Two rows fill a random healthy region (p should stay), two fill the
tumour (p should fall). Writes resources/inpainting_before_after.png.

Run: ``PYTHONPATH=src .venv/bin/python resources/make_figure_inpainting.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "bench"))


def main() -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from marginaliser import fill, test_patches
    from scipy.ndimage import binary_dilation

    from napari_xhisto.counterfactual import load_inpainter
    from napari_xhisto.counterfactual.inpaint_train import random_holes
    from napari_xhisto.models import load_model

    model = load_model("demo", device="cpu")
    inp = load_inpainter("demo", device="cpu")
    images, labels, tumour, _ = test_patches(1)
    p0 = model.predict_proba(images)[:, 1]
    rng = np.random.default_rng(3)
    healthy = [i for i in np.flatnonzero((labels == 0) & (tumour.mean((1, 2)) == 0))][:2]
    tum = [i for i in np.argsort(-p0) if labels[i] == 1 and 0.3 < tumour[i].mean() < 0.8][:2]
    rows = []
    for i in healthy:
        hole = random_holes(1, 64, rng, min_frac=0.3, max_frac=0.4)[0]
        rows.append((i, hole, "healthy region"))
    for i in tum:
        rows.append((i, binary_dilation(tumour[i], iterations=3), "tumour region"))
    cols = ("inpaint", "grey", "blur", "mean")
    fig, axes = plt.subplots(len(rows), 2 + len(cols), figsize=(2.0 * (2 + len(cols)),
                                                                  2.15 * len(rows)))
    for r, (i, hole, what) in enumerate(rows):
        img = images[i]
        shown = img.copy()
        shown[hole] = (0.5 * shown[hole] + 0.5 * np.array([0, 200, 255])).astype(np.uint8)
        panels = [(img, f"original p={p0[i]:.2f}"), (shown, what)]
        for m in cols:
            out = fill(m, img[None], hole[None], inp)[0]
            panels.append((out, f"{m} p={model.predict_proba(out[None])[0, 1]:.2f}"))
        for c, (im, title) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(im, interpolation="nearest")
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.suptitle("p(tumour) of the demo classifier: inpainting keeps healthy tissue healthy and "
                 "removes tumour evidence; grey / blur / mean are out of domain", fontsize=9)
    fig.tight_layout()
    out = HERE / "inpainting_before_after.png"
    fig.savefig(out, dpi=110)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
