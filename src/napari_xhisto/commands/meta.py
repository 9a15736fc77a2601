"""``xhisto meta``: meta-explanations of a slide (seed 002)."""

from __future__ import annotations

HELP = "meta-explanations: mean maps by class x confidence, t-SNE clusters, confident disagreements"
DESCRIPTION = (
    "Sample --n tissue patches of a slide, predict and explain each for its predicted class "
    "(--method, see `xhisto methods`), and write into --out: the mean map per predicted class "
    "and confidence bin (6 equal bins on [1/classes, 1]) as meta_grid.png, a t-SNE embedding of "
    "all maps clustered by k-means (k = number of classes) with patch thumbnails as "
    "meta_embedding.png, and patches.csv/json (positions in level-0 px and µm, class, "
    "confidence, cluster, label). With --annotations (GeoJSON/CSV; cells in a patch vote for "
    "its label, else the region at its centre), it reports the clusters' purity against the "
    "labels and lists confident disagreements (p > --threshold for another class than the "
    "label) in disagreements.csv/json. An existing non-empty --out is kept: the results go to "
    "a numbered sibling folder."
)


def add_arguments(parser) -> None:
    parser.add_argument("slide", help="slide file (SVS, OME-TIFF, ...)")
    parser.add_argument("--model", default="demo", help="'demo', a spec .json or WSInfer config.json")
    parser.add_argument("--method", default="gradcam", help="explainer name (xhisto methods)")
    parser.add_argument("--n", type=int, default=2000, help="patches to sample (default 2000)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--annotations", default=None,
                        help="ground truth (GeoJSON or CSV) for labels, purity and disagreements")
    parser.add_argument("--seed", type=int, default=0, help="sampling, t-SNE and k-means seed")
    parser.add_argument("--threshold", type=float, default=0.9,
                        help="list patches whose other-than-label class has p above this")
    parser.add_argument("--bins", type=int, default=6, help="confidence bins (default 6)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--tissue-threshold", type=float, default=0.1,
                        help="minimum tissue fraction of a sampled patch")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="method parameter (repeatable)")
    parser.add_argument("--threads", type=int, default=1,
                        help="compute threads (torch, OpenMP, BLAS); 1 is fastest on a busy "
                             "machine, try the number of idle cores otherwise (default 1)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA if present)")
    parser.add_argument("--mpp", type=float, default=None,
                        help="override the slide's µm per level-0 pixel")


def run(args) -> int:
    import json
    import sys
    from pathlib import Path

    from .. import options
    from ..demo import fresh_dir
    from ..errors import XhistoError
    from ..explain import get_explainer
    from ..progress import run_to_end, text_progress
    from .explain import _convert, parse_params

    n = options.whole_number(args.n, "--n", minimum=1)
    bins = options.whole_number(args.bins, "--bins", minimum=1)
    seed = options.seed(args.seed)
    batch_size = options.batch_size(args.batch_size)
    threshold = options.real_number(args.threshold, "--threshold", minimum=0.0, maximum=1.0)
    if threshold >= 1.0:
        raise XhistoError("--threshold must be below 1 (no probability exceeds 1)")
    tissue = options.tissue_threshold(args.tissue_threshold)
    threads = options.threads(args.threads)
    mpp = options.optional(options.mpp, args.mpp, "--mpp")
    try:
        explainer = get_explainer(args.method)
        raw = parse_params(args.param)
        params = {k: _convert(explainer.params, k, v) for k, v in raw.items()}
        explainer.check_params(**params)
    except ValueError as exc:
        raise XhistoError(str(exc)) from None
    annotations = None
    if args.annotations:
        if not Path(args.annotations).exists():
            raise XhistoError(f"--annotations {args.annotations}: no such file")
        from ..annotations import read_annotations

        annotations = read_annotations(args.annotations)
    from ..explain.meta_study import iter_meta_study
    from ..export.meta_figures import write_meta_outputs
    from ..models import load_model
    from ..slide import open_slide

    model = load_model(args.model, device=args.device, batch_size=batch_size)
    with open_slide(args.slide, mpp=mpp) as slide:
        result = run_to_end(iter_meta_study(slide, model, args.method, n=n, seed=seed,
                                            annotations=annotations, n_bins=bins,
                                            threshold=threshold, batch_size=batch_size,
                                            tissue_threshold=tissue, params=params,
                                            threads=threads),
                            on_progress=text_progress("meta"))
    out = fresh_dir(args.out)
    if out != Path(args.out):
        print(f"xhisto meta: {args.out} is not empty; writing to {out}", file=sys.stderr)
    files = write_meta_outputs(result, out)
    for note in result.notes:
        print(f"xhisto meta: note: {note}", file=sys.stderr)
    _print_disagreements(result, sys.stderr)
    summary = {k: v for k, v in result.summary().items() if k not in ("groups", "provenance")}
    summary["out"] = str(out)
    summary["files"] = {k: str(v) for k, v in files.items()}
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _print_disagreements(result, stream, *, show: int = 10) -> None:
    rows = result.disagreement_records()
    if not (result.labels >= 0).any():
        return
    print(f"xhisto meta: {len(rows)} confident disagreement(s) with the annotations "
          f"(p > {result.threshold:g} for another class than the label)", file=stream)
    for d in rows[:show]:
        print(f"  patch {d['index']}: label {d['label']}, predicted {d['predicted']} "
              f"p={d['p']:.3f} at x {d['x_um']:.0f} µm, y {d['y_um']:.0f} µm "
              f"(level-0 row {d['row_px']:.0f}, col {d['col_px']:.0f})", file=stream)
    if len(rows) > show:
        print(f"  ... {len(rows) - show} more in disagreements.csv", file=stream)
