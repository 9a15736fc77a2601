"""Worker plumbing (_workers.start_generator): results, progress, Cancel within one step, errors.

Needs a Qt application (pytest-qt), not a viewer canvas; marked viewer so it runs under Xvfb.
"""

import threading
import time

import pytest

from napari_xhisto.errors import ModelError

pytestmark = pytest.mark.viewer


def _steps(n, *, delay=0.0, log=None, fail_at=None, exc=None, started=None):
    """A core-style generator: yields (done, total) after each step, returns the sum."""
    total = 0
    try:
        yield 0, n
        for i in range(n):
            if started is not None:
                started.set()
            time.sleep(delay)
            if fail_at == i:
                raise exc
            total += i
            if log is not None:
                log.append(i)
            yield i + 1, n
        return total
    finally:
        if log is not None:
            log.append("closed")


@pytest.fixture
def notes():
    from napari.utils.notifications import notification_manager

    seen = []
    notification_manager.notification_ready.connect(seen.append)
    yield seen
    notification_manager.notification_ready.disconnect(seen.append)


def test_result_progress_and_finish(qtbot):
    from qtpy.QtWidgets import QProgressBar, QPushButton

    from napari_xhisto._widgets._workers import start_generator

    bar, cancel = QProgressBar(), QPushButton()
    results, progress, finished, seen_bar = [], [], [], []

    def on_progress(done, total):
        progress.append((done, total))
        seen_bar.append((bar.value(), bar.maximum()))

    worker = start_generator(lambda: _steps(5), label="sum", on_result=results.append,
                             on_progress=on_progress, on_finished=finished.append,
                             progress_bar=bar, cancel_button=cancel)
    assert cancel.isEnabled()
    qtbot.waitUntil(lambda: bool(finished), timeout=10_000)
    assert results == [0 + 1 + 2 + 3 + 4] and finished == [False]
    assert progress == [(i, 5) for i in range(6)]
    assert seen_bar[-1] == (5, 5)
    assert not cancel.isEnabled()
    assert not worker.is_running


def test_cancel_stops_within_one_step_and_closes_the_generator(qtbot):
    from qtpy.QtWidgets import QPushButton

    from napari_xhisto._widgets._workers import start_generator

    log, results, finished, progress = [], [], [], []
    cancel = QPushButton()
    start_generator(lambda: _steps(200, delay=0.02, log=log), label="slow",
                    on_result=results.append, on_finished=finished.append,
                    on_progress=lambda d, t: progress.append(d), cancel_button=cancel)
    qtbot.waitUntil(lambda: len(progress) >= 3, timeout=10_000)
    cancel.click()
    steps_at_cancel = len([x for x in log if x != "closed"])
    qtbot.waitUntil(lambda: bool(finished), timeout=10_000)
    steps_done = [x for x in log if x != "closed"]
    assert finished == [True] and results == []
    assert len(steps_done) <= steps_at_cancel + 1  # at most the step that was running
    assert log[-1] == "closed"  # the core generator's finally ran
    assert threading.active_count() >= 1


def test_user_error_is_a_plain_notification(qtbot, notes):
    from napari.utils.notifications import ErrorNotification, NotificationSeverity

    from napari_xhisto._widgets._workers import start_generator

    finished, results = [], []
    start_generator(lambda: _steps(3, fail_at=1, exc=ModelError("weights file x.safetensors is broken")),
                    label="explain", on_result=results.append, on_finished=finished.append)
    qtbot.waitUntil(lambda: bool(finished), timeout=10_000)
    assert results == []
    (note,) = [n for n in notes if n.severity == NotificationSeverity.ERROR]
    assert note.message == "explain: weights file x.safetensors is broken"
    assert not isinstance(note, ErrorNotification)


def test_bug_keeps_its_traceback(qtbot, notes):
    from napari.utils.notifications import ErrorNotification

    from napari_xhisto._widgets._workers import start_generator

    finished = []
    start_generator(lambda: _steps(3, fail_at=0, exc=KeyError("oops")), label="explain",
                    on_result=lambda r: None, on_finished=finished.append)
    qtbot.waitUntil(lambda: bool(finished), timeout=10_000)
    errors = [n for n in notes if isinstance(n, ErrorNotification)]
    assert errors and "oops" in errors[-1].message
    assert errors[-1].exception.__traceback__ is not None


def test_setup_runs_in_the_worker_thread(qtbot):
    from napari_xhisto._widgets._workers import start_generator

    where, finished = [], []

    def make():
        where.append(threading.current_thread() is threading.main_thread())
        return _steps(1)

    start_generator(make, label="x", on_result=lambda r: None, on_finished=finished.append)
    qtbot.waitUntil(lambda: bool(finished), timeout=10_000)
    assert where == [False]


def test_progress_bar_is_redrawn_a_few_times_a_second_not_per_step(qtbot):
    """Each redraw composes napari's OpenGL window (tens of ms): 300 quick steps, few redraws."""
    from qtpy.QtWidgets import QProgressBar

    from napari_xhisto._widgets._workers import PROGRESS_INTERVAL_S, start_generator

    bar, finished, progress, values = QProgressBar(), [], [], []
    bar.valueChanged.connect(values.append)
    t0 = time.monotonic()
    start_generator(lambda: _steps(300, delay=0.002), label="quick", on_result=lambda r: None,
                    on_progress=lambda d, t: progress.append(d), on_finished=finished.append,
                    progress_bar=bar, activity_dock=False)
    qtbot.waitUntil(lambda: bool(finished), timeout=20_000)
    seconds = time.monotonic() - t0
    assert progress == list(range(301))  # every step still reaches on_progress
    assert 300 in values  # the last value is always shown before the reset
    assert len(values) <= seconds / PROGRESS_INTERVAL_S + 4
    assert bar.updatesEnabled()


def test_napari_activity_spinner_runs_slower_while_a_job_runs(make_napari_viewer, qtbot):
    """Under Mesa each spinner frame composes the OpenGL window: 81% of a core at full speed."""
    from qtpy.QtWidgets import QLabel

    from napari_xhisto._widgets._workers import SPINNER_SPEED_PERCENT, start_generator

    viewer = make_napari_viewer()
    movies = [lb.movie() for lb in viewer.window._qt_window.findChildren(QLabel)
              if lb.movie() is not None]
    assert movies, "napari's activity spinner was not found"
    assert all(m.speed() == 100 for m in movies)
    speeds, finished = [], []
    start_generator(lambda: _steps(20, delay=0.02), label="spin", on_result=lambda r: None,
                    on_progress=lambda d, t: speeds.append([m.speed() for m in movies]),
                    on_finished=finished.append)
    qtbot.waitUntil(lambda: bool(finished), timeout=20_000)
    assert speeds and all(s == [SPINNER_SPEED_PERCENT] * len(movies) for s in speeds)
    assert all(m.speed() == 100 for m in movies)
