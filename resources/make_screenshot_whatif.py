"""Screenshot of the Explain widget's "What if healthy?" action (resources/screenshot_whatif.png).

Run under a display (``xvfb-run -a -s "-screen 0 1600x1200x24" .venv/bin/python
resources/make_screenshot_whatif.py``). The demo viewer (synthetic slide, demo model): a polygon
is drawn where the demo model sees the most tumour, the action fills it with the bundled
inpainter, and the window shows the inpainted tissue on the slide, p(tumour) after as a layer and
the table of patches in the widget.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "bench"))
sys.path.insert(0, str(HERE))

from click_latency import pump_for, pump_until  # noqa: E402
from make_screenshot_explain import demo_with_probability_map, look_at, shot  # noqa: E402


def main():
    import numpy as np

    viewer, widgets, slide, pmap, p, step = demo_with_probability_map()
    explain = widgets["Explain"]
    from scipy.ndimage import uniform_filter

    i, j = np.unravel_index(np.argmax(uniform_filter(p, 5)), p.shape)  # inside a tumour area
    centre = np.array([(i + 0.5) * step, (j + 0.5) * step])
    viewer.layers.remove(pmap)
    # an irregular polygon of about 200 µm around it, drawn in world units
    ang = np.linspace(0, 2 * np.pi, 9)[:-1]
    radius = np.array([1.0, 0.8, 1.1, 0.9, 1.0, 0.75, 1.05, 0.85]) * 90.0
    c_world = np.asarray(slide.data_to_world(tuple(centre)))[-2:]
    poly = c_world + np.stack([radius * np.sin(ang), radius * np.cos(ang)], axis=1)
    shapes = viewer.add_shapes([poly], shape_type="polygon", name="what if?", edge_width=2,
                               edge_color="yellow", face_color="transparent", units="µm")
    shapes.selected_data = {0}
    widgets_panel = explain.whatif
    widgets_panel.run()
    pump_until(lambda: widgets_panel.result is not None, timeout=600)
    pump_for(1.0)
    for ly in viewer.layers:
        if ly.name.startswith("p(tumour) before"):
            ly.visible = False
        if ly.name.startswith("p(tumour) after"):
            ly.opacity = 0.3
    mpp = slide.scale[-1]
    half = 260 / mpp
    look_at(viewer, slide, (centre[0] - half, centre[0] + half),
            (centre[1] - half, centre[1] + half))
    shot(viewer, "screenshot_whatif.png")
    print(widgets_panel.summary.text())
    viewer.close()


if __name__ == "__main__":
    main()
