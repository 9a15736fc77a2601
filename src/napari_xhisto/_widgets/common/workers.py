"""Run the project's core generators in a napari ``thread_worker`` with progress, Cancel and errors.

Core work is a plain generator that yields ``(done, total)`` (one step per batch) and returns
its result. :func:`start_generator` runs one in a worker thread and wires up:

- progress: napari's activity dock (a ``napari.utils.progress``) and, optionally, a
  ``QProgressBar`` in the widget, redrawn at most every ``PROGRESS_INTERVAL_S`` with the next
  frame (each redraw composes napari's OpenGL window: tens of ms on the GUI thread), and
  napari's activity spinner slowed to ``SPINNER_SPEED_PERCENT`` while the job runs;
- cancel: ``worker.quit()`` (the worker checks between two yields, so within one batch); the
  core generator is closed in the worker thread so its ``finally``/``with`` blocks run, and no
  result is delivered;
- errors: an :class:`~napari_xhisto.errors.XhistoError` becomes a napari error notification with
  its message (no traceback: it is the user's input); anything else is reported through napari's
  notification manager with the traceback available, since it is a bug.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Generator
from contextlib import contextmanager
from typing import Any

from napari.qt.threading import GeneratorWorker, create_worker
from qtpy.QtCore import QTimer

from ...errors import XhistoError

log = logging.getLogger(__name__)

# progress bars are redrawn at most this often (each redraw composes napari's window)
PROGRESS_INTERVAL_S = 0.25
# napari's "in progress" spinner (a 33 frames/s GIF) runs at this % of its speed while our jobs
# run: under Mesa every frame composes the whole OpenGL window, 81% of a core at full speed
SPINNER_SPEED_PERCENT = 25
# a zero timer fires before the pending repaint; this delay lets the frame that shows a result
# be drawn first (Qt processes posted repaints right after the slot that caused them)
AFTER_THE_FRAME_MS = 40


def slow_spinners(speed: int = SPINNER_SPEED_PERCENT) -> list:
    """Slow every animated ``QLabel`` movie of the application's windows (napari's activity
    spinner) to ``speed`` %; returns ``[(movie, old speed)]`` for :func:`restore_spinners`."""
    from qtpy.QtWidgets import QApplication, QLabel

    changed = []
    for top in QApplication.topLevelWidgets():
        for label in top.findChildren(QLabel):
            movie = label.movie()
            if movie is not None and movie.speed() > speed:
                changed.append((movie, movie.speed()))
                movie.setSpeed(speed)
    return changed


def restore_spinners(changed: list) -> None:
    for movie, speed in changed:
        try:
            movie.setSpeed(speed)
        except RuntimeError:  # the window was closed meanwhile
            pass


class ClosingGeneratorWorker(GeneratorWorker):
    """A :class:`GeneratorWorker` that closes its generator in the worker thread when done.

    A cancelled generator is otherwise left suspended until garbage collection, with its
    resources (model hooks, open files) still held.
    """

    def work(self):
        try:
            return super().work()
        finally:
            self._gen.close()


def _drive(make_generator: Callable[[], Generator]) -> Generator:
    """Create the core generator inside the worker thread (its set-up may be slow) and relay it."""
    gen = make_generator()
    try:
        result = yield from gen
    finally:
        gen.close()
    return result


@contextmanager
def deferred_repaint(widget):
    """Let ``widget`` repaint with the next frame instead of at once.

    ``QProgressBar.setValue`` repaints synchronously, and a repaint in napari's window composes
    the whole window with its OpenGL canvas: 20-60 ms on the GUI thread under Mesa, per call.
    With updates off during the change, re-enabling them schedules one ordinary ``update()``.
    """
    widget.setUpdatesEnabled(False)
    try:
        yield widget
    finally:
        widget.setUpdatesEnabled(True)


def error_message(exc: BaseException) -> str:
    """One line for a notification: the user's error as written, or the exception's type + text."""
    if isinstance(exc, XhistoError):
        return str(exc)
    text = str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"


def notify_error(exc: BaseException, *, context: str = "") -> None:
    """Show ``exc`` as a napari notification (message only for user errors)."""
    from napari.utils.notifications import notification_manager, show_error

    prefix = f"{context}: " if context else ""
    if isinstance(exc, XhistoError | ValueError):
        show_error(prefix + error_message(exc))
    else:
        log.error("%s%s", prefix, error_message(exc), exc_info=exc)
        notification_manager.receive_error(type(exc), exc, exc.__traceback__)


def start_generator(
    make_generator: Callable[[], Generator[tuple[int, int], Any, Any]],
    *,
    label: str,
    on_result: Callable[[Any], None],
    on_error: Callable[[BaseException], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_finished: Callable[[bool], None] | None = None,
    progress_bar=None,
    cancel_button=None,
    activity_dock: bool = True,
) -> GeneratorWorker:
    """Start ``make_generator()`` in a worker thread; return the (started) worker.

    Parameters
    ----------
    make_generator : callable
        Called in the worker thread; returns the core generator (yields ``(done, total)``,
        returns the result).
    label : str
        Text of the progress bar in the activity dock.
    on_result : callable
        Called in the GUI thread with the generator's return value (never after Cancel).
    on_error : callable, optional
        Called in the GUI thread with the exception; default :func:`notify_error`.
    on_progress : callable, optional
        ``(done, total)`` in the GUI thread after each step.
    on_finished : callable, optional
        Called last, with ``True`` when cancelled, in every case (success, error, cancel).
    progress_bar : QProgressBar, optional
        Updated with ``(done, total)``; reset at the end.
    cancel_button : QAbstractButton, optional
        Enabled while running; clicking it calls ``worker.quit()``.
    activity_dock : bool
        Show a progress bar in napari's activity dock.
    """
    worker = create_worker(_drive, make_generator, _start_thread=False, _ignore_errors=True,
                           _worker_class=ClosingGeneratorWorker)
    # napari relays worker errors with a traceback; ours says what is wrong instead.
    try:
        worker.errored.disconnect(worker._relay_error)
    except (TypeError, RuntimeError, AttributeError):  # pragma: no cover - napari internals moved
        pass
    state = {"cancelled": False, "pbar": None, "shown": 0.0}

    if activity_dock:
        from napari.utils import progress

        state["spinners"] = slow_spinners()
        state["pbar"] = progress(total=0, desc=label)

    def step(value):
        if not (isinstance(value, tuple) and len(value) == 2):
            return
        done, total = int(value[0]), int(value[1])
        now = time.monotonic()
        if done >= total or now - state["shown"] >= PROGRESS_INTERVAL_S:
            state["shown"] = now
            show_progress(done, total)
        if on_progress is not None:
            on_progress(done, total)

    def show_progress(done, total):
        pbar = state["pbar"]
        if pbar is not None:
            if pbar.total != total:
                pbar.total = total
            if done != pbar.n:
                pbar.update(done - pbar.n)
        if progress_bar is not None:
            with deferred_repaint(progress_bar):
                progress_bar.setMaximum(max(total, 1))
                progress_bar.setValue(min(done, max(total, 1)))

    def aborted():
        state["cancelled"] = True

    def finished():
        if state["pbar"] is not None:
            state["pbar"].close()
            state["pbar"] = None
        restore_spinners(state.pop("spinners", []))
        try:
            if progress_bar is not None:
                with deferred_repaint(progress_bar):
                    progress_bar.reset()
            if cancel_button is not None:
                cancel_button.setEnabled(False)
                cancel_button.clicked.disconnect(worker.quit)
        except (TypeError, RuntimeError):  # already disconnected, or the widget was closed
            pass
        if on_finished is not None:
            on_finished(state["cancelled"])

    worker.yielded.connect(step)
    worker.returned.connect(on_result)
    worker.errored.connect(on_error or (lambda exc: notify_error(exc, context=label)))
    worker.aborted.connect(aborted)
    # tidying up (the activity dock drops its bar, the widget's bar resets) repaints the window:
    # after the frame that shows the result, so that they are two short stalls, not one long
    worker.finished.connect(lambda: QTimer.singleShot(AFTER_THE_FRAME_MS, finished))
    if cancel_button is not None:
        cancel_button.setEnabled(True)
        cancel_button.clicked.connect(worker.quit)
    if progress_bar is not None:
        with deferred_repaint(progress_bar):
            progress_bar.setMaximum(0)  # busy until the first step says how many there are
            progress_bar.setValue(0)
    worker.start()
    return worker


# ---- helpers for jobs that run torch in a worker thread ----------------------------------

def import_heavy_modules() -> None:
    """Import what the explainers load lazily (torchvision, zennit), in the GUI thread.

    torchvision imports ``torch._dynamo``, which imports triton; loading triton's bundled LLVM
    after the OpenGL driver's (Mesa llvmpipe, as under Xvfb) crashes the whole process with a
    segmentation fault. We never use ``torch.compile``, so triton is kept out of the napari
    process unless it is already loaded or ``XHISTO_ALLOW_TRITON=1``.
    """
    if "triton" not in sys.modules and os.environ.get("XHISTO_ALLOW_TRITON") != "1":
        sys.modules["triton"] = None  # import triton -> ImportError: torch treats it as absent
    import torchvision  # noqa: F401
    import zennit.torchvision  # noqa: F401


def release_thread_caches() -> None:
    """Drop the LRP model copies cached in this (worker) thread's ``threading.local``.

    A napari worker runs in a Qt pool thread whose Python thread state is deleted when the job
    ends; torch modules still held by its thread-locals then crashed the process (segmentation
    fault in ``tstate_delete_common``). Freed here, while the thread state is alive.
    """
    import napari_xhisto.explain.lrp as lrp

    release = getattr(lrp, "release_thread_cache", None)
    if release is not None:
        release()
    elif hasattr(lrp, "_LOCAL"):
        lrp._LOCAL.__dict__.clear()


def leave_a_core_to_the_gui() -> None:
    """Cap torch's intra-op threads in this worker thread at (CPUs - 1).

    With as many busy compute threads as cores, the GUI thread waited hundreds of ms for a
    core, and OpenMP threads spinning at barriers slowed the explanation itself several-fold
    (measured on 2 shared cores: 17-28 s with 2 threads, 2-4 s with 1).
    """
    import torch

    cap = max(1, (os.cpu_count() or 1) - 1)
    if torch.get_num_threads() > cap:
        torch.set_num_threads(cap)


def warm_matplotlib() -> None:
    # the legend needs matplotlib (seconds to import): import it off the GUI thread, early
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401


def scaled(gen, k: int, n: int):
    """Relay ``gen``'s ``(done, total)`` as part ``k`` of ``n`` equal parts; return its result."""
    try:
        while True:
            try:
                done, total = next(gen)
            except StopIteration as stop:
                return stop.value
            total = max(int(total), 1)
            yield k * total + int(done), n * total
    finally:  # a cancelled run closes the core generator (its hooks and reads end here)
        gen.close()
