"""Click-to-explain latency in the napari viewer: from the click to the heatmap drawn.

A synthetic slide (0.5 µm/px) is opened in a real viewer with the Explain widget docked; a click
(through napari's mouse-callback machinery, as the canvas sends it) explains the 1024 x 1024
level-0 px region (512 x 512 µm) around it with the bundled demo model and LRP
(``lrp-epsilon-plus``). Timed: click -> result in the viewer (the slide-wide canvas layer painted,
or a new layer added) -> first canvas draw that shows it. Both of the widget's modes are timed:
the default canvas (one layer per method, made when explain mode is switched on) and a separate
layer per click. The first click includes loading the model; later clicks are warm. The same
region through ``explain_region`` directly (no viewer) gives the viewer's overhead. Explain mode
turns the H&E grey and keeps the outline of every explained region up to date, as a user gets it.

Writes the "click_latency" section of bench/results/viewer.json. Needs a display: re-runs
itself under ``xvfb-run`` when there is none.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "viewer.json"
MPP = 0.5
SLIDE_SIZE = 4096
REGION_PX = 1024
METHOD = os.environ.get("XHISTO_BENCH_METHOD", "lrp-epsilon-plus")


def ensure_display() -> None:
    """Re-execute this script under xvfb-run when no display is available."""
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("XHISTO_BENCH_CHILD"):
        return
    xvfb = shutil.which("xvfb-run")
    if xvfb is None:
        sys.exit("no display and no xvfb-run: cannot run the viewer benchmark")
    env = {**os.environ, "XHISTO_BENCH_CHILD": "1"}
    cmd = [xvfb, "-a", "-s", "-screen 0 1600x1200x24", sys.executable, *sys.argv]
    sys.exit(subprocess.call(cmd, env=env))


def machine() -> dict:
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    return {"platform": platform.platform(), "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "worker_torch_threads": max(1, (os.cpu_count() or 1) - 1), "device": dev,
            "gpu": torch.cuda.get_device_name(0) if dev == "cuda" else None,
            "load_average_1_5_15min": [round(v, 2) for v in os.getloadavg()],
            "note": "shared machine: other processes ran at the same time (see load average)"}


MODEL = os.environ.get("XHISTO_BENCH_MODEL", "demo")  # a spec path to time another model


def make_slide(folder: Path, size: int = SLIDE_SIZE) -> Path:
    try:
        from napari_xhisto.synth import write_slide
    except ImportError:
        from napari_xhisto.synth.writer import write_slide
    slide_path, _ = write_slide(folder / "bench.svs", size=(size, size), seed=7, format="svs",
                                mpp=MPP, ground_truth=False)
    return Path(slide_path)


def open_viewer(slide_path: Path, *, canvas: bool = True):
    """A viewer with the slide and the docked widget (demo model, LRP), explain mode on.

    ``canvas`` True is the widget's default: clicks paint one slide-wide layer per method, made
    when explain mode is switched on; False adds a new layer per click.
    """
    import napari

    from napari_xhisto._reader import slide_layer_data
    from napari_xhisto._widgets.explain_widget import ExplainWidget

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    data, kwargs, _ = slide_layer_data(str(slide_path))[0]
    layer = viewer.add_image(data, **kwargs)
    widget = ExplainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Explain")
    if MODEL != "demo":
        widget._load_spec(MODEL)
    widget.method_combo.setCurrentText(METHOD)
    widget.canvas_check.setChecked(canvas)
    widget.size_spin.setValue(REGION_PX * MPP)
    return viewer, layer, widget


def click(viewer, world) -> None:
    """A left click as napari's canvas delivers it to the viewer's mouse callbacks."""
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks

    def ev(kind):
        return ReadOnlyWrapper(SimpleNamespace(type=kind, button=1, modifiers=[], position=tuple(world),
                                               pos=(0.0, 0.0), is_dragging=False, handled=False))

    mouse_press_callbacks(viewer, ev("mouse_press"))
    mouse_release_callbacks(viewer, ev("mouse_release"))


def pump_until(cond, timeout: float = 600.0) -> None:
    """Run the Qt event loop (as napari does) until ``cond()`` is true."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop, check = QEventLoop(), QTimer()
    t0 = time.perf_counter()
    timed_out = []

    def poll():
        if cond():
            loop.quit()
        elif time.perf_counter() - t0 > timeout:
            timed_out.append(True)
            loop.quit()

    check.timeout.connect(poll)
    check.start(10)
    loop.exec()
    check.stop()
    if timed_out:
        raise TimeoutError("benchmark step timed out")


def pump_for(seconds: float) -> None:
    end = time.perf_counter() + seconds
    pump_until(lambda: time.perf_counter() >= end)


def watch_results(viewer, widget, marks: dict):
    """Record in ``marks["result"]`` when a result reaches the viewer (layer added or canvas
    painted) and in ``marks["drawn"]`` the first canvas draw after it; returns an undo."""
    canvas = viewer.window._qt_viewer.canvas
    paste = widget.canvases.paste

    def pasted(*args, **kwargs):
        out = paste(*args, **kwargs)
        marks.setdefault("result", time.perf_counter())
        return out

    def inserted(event):
        if event.value.metadata.get("xhisto", {}).get("pastes", [None]):  # not an empty canvas
            marks.setdefault("result", time.perf_counter())

    def drawn(event):
        if "result" in marks:
            marks.setdefault("drawn", time.perf_counter())

    widget.canvases.paste = pasted
    viewer.layers.events.inserted.connect(inserted)
    canvas._scene_canvas.events.draw.connect(drawn)

    def undo():
        widget.canvases.paste = paste
        viewer.layers.events.inserted.disconnect(inserted)
        canvas._scene_canvas.events.draw.disconnect(drawn)

    return undo


def timed_click(viewer, layer, widget, row: int, col: int) -> dict:
    """Seconds from click to the result in the viewer and to the first draw that shows it."""
    marks: dict = {}
    undo = watch_results(viewer, widget, marks)
    try:
        t0 = time.perf_counter()
        click(viewer, layer.data_to_world((row, col)))
        pump_until(lambda: "drawn" in marks and widget.worker is None)
    finally:
        undo()
    return {"click_to_layer_s": marks["result"] - t0, "click_to_drawn_s": marks["drawn"] - t0}


def direct_seconds(slide_path: Path, row: int, col: int) -> float:
    from napari_xhisto._widgets.layers import region_centred_at
    from napari_xhisto.explain import explain_region
    from napari_xhisto.models import load_model
    from napari_xhisto.progress import run_to_end
    from napari_xhisto.slide import open_slide

    model = load_model(MODEL)
    with open_slide(slide_path) as slide:
        region = region_centred_at(row + 0.5, col + 0.5, REGION_PX, REGION_PX,
                                   slide_shape=slide.dimensions, snap=model.spec.mpp / MPP)
        t0 = time.perf_counter()
        run_to_end(explain_region(slide, region, model, METHOD, target=model.spec.positive_index))
        return time.perf_counter() - t0


def write_section(name: str, payload: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[name] = payload
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")


def clicks(slide_path: Path, *, canvas: bool) -> dict:
    viewer, layer, widget = open_viewer(slide_path, canvas=canvas)
    widget.set_explain_mode(True)
    pump_for(0.5)
    centres = [(1024, 1024), (2048, 2600), (3000, 1500)]
    runs = [timed_click(viewer, layer, widget, r, c) for r, c in centres]
    viewer.close()
    warm = runs[1:]
    return {
        "cold_click_s (includes model load)": round(runs[0]["click_to_drawn_s"], 3),
        "warm_click_to_drawn_s": [round(r["click_to_drawn_s"], 3) for r in warm],
        "warm_click_to_result_s": [round(r["click_to_layer_s"], 3) for r in warm],
        "warm_median_s": round(float(np.median([r["click_to_drawn_s"] for r in warm])), 3),
    }


def main() -> None:
    ensure_display()
    load_before = [round(v, 2) for v in os.getloadavg()]
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as tmp:
        slide_path = make_slide(Path(tmp))
        modes = {"canvas (default: one slide-wide layer per method)": clicks(slide_path, canvas=True),
                 "separate layer per click": clicks(slide_path, canvas=False)}
        direct = [direct_seconds(slide_path, 2048, 2600) for _ in range(2)]
    default = next(iter(modes.values()))
    result = {
        "what": f"click -> {REGION_PX} x {REGION_PX} level-0 px ({REGION_PX * MPP:g} µm) heatmap "
                f"drawn in the viewer; demo model, {METHOD}, slide {SLIDE_SIZE}^2 px at {MPP} µm/px",
        **modes,
        "direct_explain_region_s": [round(d, 3) for d in direct],
        "viewer_overhead_s (default mode)": round(default["warm_median_s"] - float(np.median(direct)), 3),
        "model": MODEL,
        "machine": {**machine(), "load_average_at_start": load_before},
    }
    write_section("click_latency", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
