"""Errors meant for users: each message says what is wrong and what to do."""


class XhistoError(Exception):
    """A problem with the user's input or environment, explained in plain words.

    The CLI prints it as one line (no traceback unless ``--debug``); widgets show it as a
    napari notification.
    """


class SlideError(XhistoError):
    """A slide file cannot be opened or read."""


class ModelError(XhistoError):
    """A model spec or weights file is unusable."""


class AnnotationError(XhistoError):
    """An annotation file is malformed."""


class XhistoWarning(UserWarning):
    """Something was left out or changed and the user should know (counts included).

    The CLI prints it as one line ``xhisto CMD: warning: ...``; widgets show it as a napari
    notification.
    """
