"""One module per ``xhisto`` sub-command: ``HELP``, ``add_arguments(parser)``, ``run(args)``.

Keep them thin: parse, call a core function, print or write. Import heavy modules inside
``run`` so that ``xhisto --help`` and ``xhisto info`` stay fast.
"""


def refuse_existing(path, force: bool) -> None:
    """A result the user already has is never replaced without ``--force``."""
    from pathlib import Path

    from ..errors import XhistoError

    path = Path(path)
    if path.exists() and not force:
        raise XhistoError(f"{path} exists; choose another --out or pass --force to replace it")
