"""The ``xhisto`` command line: one sub-command per core capability.

Each sub-command lives in ``napari_xhisto.commands.<name>`` and exposes ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Those modules import nothing heavy at
module level, so ``xhisto info`` never loads torch. Errors exit non-zero with one clear line on
stderr; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Order is the order shown in --help.
COMMANDS = ["synth", "info", "train", "predict", "methods", "explain", "evaluate", "bias_lab",
            "spec", "export", "demo", "batch", "train_inpainter",
            "train_attribution_net"]


def _available_commands():
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"napari_xhisto.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"napari_xhisto.commands.{name}":
                continue  # not built yet
            raise
        yield name.replace("_", "-"), mod


class _Parser(argparse.ArgumentParser):
    """Usage mistakes (unknown option, ``--batch-size abc``) as one line, like other errors."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="xhisto",
        description="Explain tissue classifiers on whole-slide images (headless napari-xhisto).",
    )
    parser.add_argument("--version", action="version", version=f"napari-xhisto {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod in _available_commands():
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _one_line_warnings(command: str):
    """XhistoWarnings print as one line, like errors; other warnings as Python prints them.

    Returns the previous ``warnings.showwarning`` (put back when the command ends)."""
    import warnings

    from .errors import XhistoWarning

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, XhistoWarning):
            print(f"xhisto {command}: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    return default


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    previous = _one_line_warnings(args.command)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("xhisto: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line for users; traceback on request
        if args.debug:
            raise
        from .errors import XhistoError

        kind = "" if isinstance(exc, XhistoError | ValueError | FileNotFoundError) else f"{type(exc).__name__}: "
        print(f"xhisto {args.command}: error: {kind}{exc}", file=sys.stderr)
        return 1
    finally:
        import warnings

        warnings.showwarning = previous


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
