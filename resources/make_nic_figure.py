"""The README's compression figure: a synthetic slide and its compressed RGB view side by side.

Usage: python resources/make_nic_figure.py SLIDE.svs SLIDE.nic.zarr [OUT.png]

The right panel is what napari shows for ``SLIDE.nic.zarr`` (first 3 principal components of
the codes as RGB, one pixel per code cell), drawn at the same extent as the slide.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from napari_xhisto.geometry import Region  # noqa: E402
from napari_xhisto.nic.codes import pca_rgb, read_codes  # noqa: E402
from napari_xhisto.slide import open_slide  # noqa: E402


def main(slide_path, codes_path, out) -> None:
    grid = read_codes(codes_path)
    rgb, info = pca_rgb(grid)
    rgb = np.asarray(rgb)
    with open_slide(slide_path) as slide:
        h, w = slide.dimensions
        thumb = slide.read_scaled(Region(0, 0, h, w), 768, round(768 * w / h))
    rows, cols = grid.shape
    extent_slide = (0, w * grid.mpp / 1000, h * grid.mpp / 1000, 0)  # mm
    o, s = grid.origin, grid.stride
    extent_codes = (o[1] * grid.mpp / 1000, (o[1] + cols * s) * grid.mpp / 1000,
                    (o[0] + rows * s) * grid.mpp / 1000, o[0] * grid.mpp / 1000)
    fig, ax = plt.subplots(1, 2, figsize=(10, 5.8), constrained_layout=True)
    ax[0].imshow(thumb, extent=extent_slide)
    ax[0].set_title(f"synthetic slide\n{h} x {w} px at {grid.mpp:g} µm/px")
    ax[1].imshow(rgb, extent=extent_codes, interpolation="nearest")
    ev = info["explained_variance_ratio"]
    enc = grid.provenance.get("encoder", {})
    ax[1].set_title(f"{Path(codes_path).name}: {rows} x {cols} x {grid.code_size} "
                    f"{enc.get('kind', '')} codes\nPCA 1-3 as RGB ({ev.sum():.1%} of variance)")
    for a in ax:
        a.set_xlim(extent_slide[0], extent_slide[1])
        a.set_ylim(extent_slide[2], extent_slide[3])
        a.set_xlabel("mm")
    fig.savefig(out, dpi=90)
    print(f"wrote {out}")


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    main(sys.argv[1], sys.argv[2],
         sys.argv[3] if len(sys.argv) > 3 else here / "nic_compressed_rgb.png")
