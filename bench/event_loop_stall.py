"""Longest event-loop stall of the viewer while the widget explains a 2048 x 2048 region.

A QTimer probe ticks every 5 ms in the GUI thread; the gap between two ticks minus the interval
is how long the event loop could not run (goal: <= 50 ms). Measured during a 2048 x 2048 level-0
px explanation (demo model, ``lrp-epsilon-plus``) started from the widget, from the click until
the layer is added and drawn, and, for scale, while idle.

Writes the "event_loop_stall" section of bench/results/viewer.json.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from click_latency import (
    METHOD,
    MODEL,
    MPP,
    click,
    ensure_display,
    machine,
    make_slide,
    open_viewer,
    pump_for,
    pump_until,
    write_section,
)

REGION_PX = 2048
TICK_MS = 5
GOAL_MS = 50.0


class Probe:
    """Records the GUI thread's tick times from a fast QTimer."""

    def __init__(self, interval_ms: int = TICK_MS):
        from qtpy.QtCore import QTimer

        self.interval = interval_ms / 1000
        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def __enter__(self):
        self.ticks.clear()
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.stop()

    def stalls_ms(self) -> np.ndarray:
        gaps = np.diff(np.asarray(self.ticks)) - self.interval
        return np.maximum(gaps, 0) * 1000


def summary(stalls: np.ndarray, seconds: float) -> dict:
    return {"seconds": round(seconds, 2), "ticks": int(stalls.size + 1),
            "max_stall_ms": round(float(stalls.max()), 1) if stalls.size else None,
            "p99_stall_ms": round(float(np.percentile(stalls, 99)), 1) if stalls.size else None,
            "stalls_over_50ms": int((stalls > GOAL_MS).sum())}


def main() -> None:
    ensure_display()
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as tmp:
        slide_path = make_slide(Path(tmp))
        viewer, layer, widget = open_viewer(slide_path)
        widget.size_spin.setValue(REGION_PX * MPP)
        widget._model()  # load the model first: the stall measured is the explanation's
        pump_for(0.5)
        probe = Probe()
        with probe:
            pump_for(2.0)
        idle = summary(probe.stalls_ms(), 2.0)
        added = []
        viewer.layers.events.inserted.connect(lambda e: added.append(time.perf_counter()))
        with probe:
            t0 = time.perf_counter()
            click(viewer, layer.data_to_world((2048, 2048)))
            pump_until(lambda: added and widget.worker is None)
            pump_for(0.5)  # include the first draws of the new layer
        busy = summary(probe.stalls_ms(), time.perf_counter() - t0)
        worst = np.sort(probe.stalls_ms())[-5:][::-1].round(1).tolist()
        viewer.close()
    result = {
        "what": f"longest GUI event-loop stall (QTimer probe every {TICK_MS} ms) while explaining "
                f"{REGION_PX} x {REGION_PX} level-0 px with the demo model and {METHOD} from the widget",
        "goal_ms": GOAL_MS,
        "during_explanation": {**busy, "five_worst_ms": worst},
        "idle": idle,
        "met_goal": bool(busy["max_stall_ms"] is not None and busy["max_stall_ms"] <= GOAL_MS),
        "model": MODEL,
        "machine": machine(),
    }
    write_section("event_loop_stall", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
