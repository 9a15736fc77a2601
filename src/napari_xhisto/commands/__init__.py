"""One module per ``xhisto`` sub-command: ``HELP``, ``add_arguments(parser)``, ``run(args)``.

Keep them thin: parse, call a core function, print or write. Import heavy modules inside
``run`` so that ``xhisto --help`` and ``xhisto info`` stay fast.
"""
