"""Kept import path: the worker plumbing lives in :mod:`napari_xhisto._widgets.common.workers`."""

from .common.workers import (  # noqa: F401
    AFTER_THE_FRAME_MS,
    PROGRESS_INTERVAL_S,
    SPINNER_SPEED_PERCENT,
    ClosingGeneratorWorker,
    deferred_repaint,
    error_message,
    import_heavy_modules,
    leave_a_core_to_the_gui,
    notify_error,
    release_thread_caches,
    restore_spinners,
    scaled,
    slow_spinners,
    start_generator,
    warm_matplotlib,
)
