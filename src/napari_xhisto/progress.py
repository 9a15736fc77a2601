"""Drive the project's long-running generators (they yield ``(done, total)`` and return a result).

Core work is written as plain generators so widgets can wrap them in napari's ``thread_worker``
(progress bar, Cancel) while the CLI and tests run them here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator
from typing import Any, TypeVar

T = TypeVar("T")


def run_to_end(gen: Generator[Any, Any, T], *, on_progress: Callable[[int, int], None] | None = None) -> T:
    """Exhaust ``gen`` and return its ``return`` value, reporting each ``(done, total)`` yield."""
    while True:
        try:
            step = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None and isinstance(step, tuple) and len(step) == 2:
            on_progress(int(step[0]), int(step[1]))


def shifted(gen: Generator[Any, Any, T], *, offset: int, total: int) -> Generator[tuple[int, int], Any, T]:
    """Relay ``gen``'s progress as ``(offset + done, total)`` (one step of a longer run); return its result.

    Use as ``result = yield from shifted(step_generator, offset=done_so_far, total=run_total)``.
    """
    while True:
        try:
            step = next(gen)
        except StopIteration as stop:
            return stop.value
        yield offset + int(step[0]), total


def text_progress(label: str, *, stream=sys.stderr) -> Callable[[int, int], None]:
    """A progress callback that draws a one-line bar on a terminal (nothing when not a TTY)."""
    interactive = hasattr(stream, "isatty") and stream.isatty()

    def report(done: int, total: int) -> None:
        if not interactive or total <= 0:
            return
        width = 30
        filled = int(width * done / total)
        stream.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done >= total:
            stream.write("\n")
        stream.flush()

    return report
