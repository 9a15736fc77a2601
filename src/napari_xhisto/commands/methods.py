"""``xhisto methods``: the explainer registry as a table (or JSON)."""

from __future__ import annotations

HELP = "list the explanation methods with what they need and cost"
DESCRIPTION = (
    "List every registered explanation method: a short description, whether the map is signed, "
    "what it needs (module hooks, gradients, many forward passes), its native resolution and its "
    "relative cost per patch (a forward + backward pass = 1). --json adds the parameters with "
    "their defaults and ranges."
)


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output with parameters")


def format_table(rows: list[dict]) -> str:
    """Plain-text table of ``list_explainers()`` rows."""
    head = ("method", "signed", "needs", "resolution", "cost", "description")
    lines = [(r["name"], "yes" if r["signed"] else "no", ",".join(r["needs"]) or "-",
              r["native_resolution"], f"{r['cost']:g}", r["description"]) for r in rows]
    widths = [max(len(str(x[i])) for x in [head, *lines]) for i in range(5)]
    out = ["  ".join(str(v).ljust(w) for v, w in zip(head[:5], widths)) + "  " + head[5]]
    for line in lines:
        out.append("  ".join(str(v).ljust(w) for v, w in zip(line[:5], widths)) + "  " + line[5])
    return "\n".join(out)


def run(args) -> int:
    import json
    import sys

    from ..explain import list_explainers

    rows = list_explainers()
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_table(rows))
    return 0
