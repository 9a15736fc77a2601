"""Screenshot of the Slide-level widget (resources/screenshot_slide_level.png).

Run under a display::

    xvfb-run -a -s "-screen 0 1600x1200x24" .venv/bin/python \
        resources/make_screenshot_slide_level.py --work /tmp/nic_findings --kind contrastive

With ``--work`` (a ``bench/nic_findings.py`` work folder: its 64-slide cohort and the codes of
``--kind``), a slide-level CNN is trained on every slide but one held-out positive (the setting
of ``resources/make_figure_slide_level.py``) and that slide is shown: a real, held-out
prediction. Without it, a tiny cohort (8 slides) is made, compressed with the bundled contrastive
encoder and a *toy* model trained on all 8 (the widget, not a validated model). The slide opens
with its hidden lesion outlined (green), the Slide-level dock runs the model on its codes and
the window shows p(label), the legend and the slide-wide Grad-CAM map. With
``--compress-first`` the shown slide's codes are removed first, so the dock compresses it with
the model's encoder, then explains (``screenshot_slide_level_compress.png``).
"""

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "bench"))
sys.path.insert(0, str(HERE))

from click_latency import pump_for, pump_until  # noqa: E402
from make_screenshot_explain import shot  # noqa: E402


def main():
    import argparse
    import csv

    import napari
    import numpy as np
    import torch
    from skimage.measure import find_contours

    from napari_xhisto._reader import slide_layer_data
    from napari_xhisto._widgets.common.docking import ScrollDock
    from napari_xhisto._widgets.slide_level import SlideLevelWidget
    from napari_xhisto.nic.compress import compress_slide
    from napari_xhisto.nic.slide_model import save_slide_model
    from napari_xhisto.nic.slide_train import (
        SlideTrainConfig,
        iter_train_slide_model,
        load_code_set,
    )
    from napari_xhisto.progress import run_to_end
    from napari_xhisto.synth.cohort import make_cohort, read_lesion_mask

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=None, help="bench/nic_findings.py work folder")
    ap.add_argument("--kind", default="contrastive")
    ap.add_argument("--compress-first", action="store_true",
                    help="remove the shown slide's codes first: the dock compresses it, then "
                         "explains (resources/screenshot_slide_level_compress.png)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp(prefix="xhisto_slide_level_"))
    if args.work:
        cohort = Path(args.work) / "cohort"
        labels, slides = cohort / "labels.csv", cohort / "slides"
        codes_dir = Path(args.work) / "codes" / args.kind
        data = load_code_set(codes_dir, labels)
        rows = {r["slide"][:-4]: r for r in csv.DictReader(open(labels))}
        pos = [i for i, k in enumerate(data.keys) if data.labels[i] == 1]
        pos.sort(key=lambda i: -float(rows[data.keys[i]]["lesion_fraction"]))
        held = pos[1]  # as the README figure's first held-out slide
        train = [i for i in range(len(data.keys)) if i != held]
        model, _ = run_to_end(iter_train_slide_model(
            [data.grids[i] for i in train], data.labels[train],
            SlideTrainConfig(epochs=60, width=32, hidden=32, val_fraction=0.0, seed=0)))
        key = data.keys[held]
        best = rows[key]
        codes = codes_dir / f"{key}.nic.zarr"
        lesion_root = cohort
    else:
        labels = make_cohort(tmp / "cohort", n=8, size=2048, lesion_fractions=(0.1, 0.2),
                             seed=0, workers=1)
        slides = tmp / "cohort" / "slides"
        for svs in sorted(slides.glob("*.svs")):
            run_to_end(compress_slide(svs, "contrastive", out=svs.with_suffix(".nic.zarr")))
        data = load_code_set(slides, labels)
        model, _ = run_to_end(iter_train_slide_model(
            data.grids, data.labels,
            SlideTrainConfig(epochs=40, width=8, hidden=8, batch_size=4, val_fraction=0.0,
                             seed=0)))
        rows = list(csv.DictReader(open(labels)))
        best = max((r for r in rows if r["label"] == "1"),
                   key=lambda r: float(r["lesion_fraction"]))
        key = best["slide"][:-4]
        codes = slides / f"{key}.nic.zarr"
        lesion_root = tmp / "cohort"
    save_slide_model(tmp / "model", model)

    viewer = napari.Viewer(show=True, title="napari-xhisto")
    viewer.window._qt_window.resize(1600, 1200)
    for d, kw, kind in slide_layer_data(slides / f"{key}.svs"):
        getattr(viewer, f"add_{kind}")(d, **kw)
    slide = viewer.layers[-1]
    lesion = read_lesion_mask(lesion_root / "lesions" / f"{key}.lesion.tif")
    step = lesion.placement.step_row
    polys = [np.asarray([slide.data_to_world(tuple(p))[-2:] for p in (c + 0.5) * step])
             for c in find_contours(lesion.mask.astype(float), 0.5)]
    viewer.add_shapes(polys, shape_type="polygon", name="hidden lesion", edge_color="lime",
                      face_color="transparent", edge_width=3, units="µm")
    widget = SlideLevelWidget(viewer)
    viewer.window.add_dock_widget(ScrollDock(widget), name="Slide-level", area="right")
    widget.slide_combo.setCurrentText(slide.name)
    if args.compress_first:
        import shutil

        shutil.rmtree(codes)  # the dock finds no codes and compresses the slide first
        widget.slide_combo.setCurrentText(slide.name)
    else:
        widget.codes_edit.setText(str(codes))
    widget.model_edit.setText(str(tmp / "model"))
    pump_for(0.5)
    widget.run()
    pump_until(lambda: widget.worker is None, timeout=300)
    viewer.reset_view()
    shot(viewer, "screenshot_slide_level_compress.png" if args.compress_first
         else "screenshot_slide_level.png")
    print(key, best["lesion_fraction"], widget.result_label.text())
    viewer.close()


if __name__ == "__main__":
    main()
