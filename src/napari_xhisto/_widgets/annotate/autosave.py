"""Autosave controls of the Annotate widget (a mixin: the widget provides the view and state).

Saves are debounced (a timer after the last change) and written in a worker thread (the class
map beside them, ``<slide>.classmap.json``, on the GUI thread: a few names); the status line says
where, and a notification says once when the slide's folder is read-only and the
autosave went to the user's data directory instead.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import QFileDialog

from ...annotations import AutosaveStore


def _raise(error: BaseException):
    raise error


class AutosaveControls:
    """``set_autosave``, ``save_now`` and the status line; needs ``store``, ``autosave_folder``,
    ``_timer``, ``_workers``, ``_warned_fallback``, ``autosave_box``, ``status``, ``_guard``."""

    def _folder_dialog(self):
        folder = QFileDialog.getExistingDirectory(self, "Autosave folder")
        if folder:
            self._guard(self.set_autosave, True, folder=folder)

    def set_autosave(self, on: bool, *, folder=None):
        """Turn autosave on/off; restores the last autosave when the layers are empty."""
        if folder is not None:
            self.autosave_folder = Path(folder)
        self.store = self._make_store() if on else None
        if self.autosave_box.isChecked() != bool(on):
            self.autosave_box.setChecked(bool(on))  # re-enters once with the same state
            return
        if self.store is None:
            self.status.setText("autosave off" if not on else
                                "autosave waits for a slide layer or a folder")
            return
        if self.is_empty():
            store = self.store
            latest = store.load_latest()
            if latest is not None and not latest.is_empty():
                # the class map saved beside it first: its choices win over the suggestion
                self.annotations.mapping.load_beside([store.path, store.preferred,
                                                      store.fallback])
                self.load(latest, mode="merge")
        self._say_where()

    def _say_where(self, saved: Path | None = None) -> None:
        """Status line: where autosave writes; a notification the first time it falls back."""
        store = self.store
        if store is None:
            return
        text = f"autosaved to {saved}" if saved else f"autosave to {store.path}"
        if store.fell_back:
            text = f"{store.notice}; " + text
            if not self._warned_fallback:
                from napari.utils.notifications import show_warning

                self._warned_fallback = True
                show_warning(store.notice)
        self.status.setText(text)

    def _make_store(self) -> AutosaveStore | None:
        _, _, slide = self.slide_frame()
        slide_path = slide.metadata["xhisto"].get("slide_path") if slide is not None else None
        if slide_path is None and self.autosave_folder is None:
            return None
        if slide_path is None:
            slide_path = self.autosave_folder / "untitled"
        return AutosaveStore(slide_path, folder=self.autosave_folder, origin=self.file_origin())

    def _save_class_map(self) -> Path | None:
        """The class map beside the autosave (a few names: on the GUI thread); in the user's
        data folder when the autosave's folder cannot be written."""
        mapping = self.annotations.mapping
        for place in dict.fromkeys((self.store.path, self.store.fallback)):
            try:
                return mapping.save_beside(place)
            except OSError:
                continue
        return None

    def _schedule_autosave(self):
        if self.store is not None:
            self._timer.start()

    def save_now(self, *, background: bool = False) -> Path | None:
        """Autosave immediately; the timer saves in the background after the quiet time.

        The layers are read here (GUI thread); with ``background`` the file is written in a
        worker thread (saves are serialised by the store), so a 100k-cell save does not stall
        the viewer. Returns the path when saved in the foreground.
        """
        self._timer.stop()
        if self.store is None:
            return None
        snapshot = self._guard(self.annotation_set)
        if snapshot is None:
            return None
        self._save_class_map()
        if not background:
            path = self._guard(self.store.save, snapshot)
            if path is not None:
                self._say_where(path)
            return path
        from napari.qt.threading import create_worker

        worker = create_worker(self.store.save, snapshot)
        worker.errored.connect(lambda err: self._guard(_raise, err))
        worker.returned.connect(self._say_where)
        worker.finished.connect(lambda: self._workers.discard(worker))
        self._workers.add(worker)
        worker.start()
        return None

