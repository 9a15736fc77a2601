"""The "Meta" view: meta-explanations of a slide (seed 002).

``controller`` (job, rendered figures, clicks, jumps) needs no window; ``widget`` is the Qt
view wired to it; ``dock`` is the npe2 contribution. Names are imported lazily.
"""

from importlib import import_module

_WHERE = {"MetaWidget": "widget", "MetaController": "controller", "MetaSettings": "controller",
          "MetaDock": "dock"}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
