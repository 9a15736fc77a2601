"""``xhisto synth-cohort DIR``: synthetic slides with slide-level labels (tumour focus present)."""

from __future__ import annotations

HELP = "write a synthetic cohort: slides, slide-level labels.csv and hidden lesion masks"
DESCRIPTION = (
    "Write N synthetic H&E slides (Aperio SVS) under DIR/slides/. Half of them (shuffled) carry "
    "one tumour focus covering a given fraction of the tissue (positives cycle through "
    "--lesion-fraction), the others none; DIR/labels.csv gives the slide-level label "
    "(1 = focus present) and DIR/lesions/<slide>.lesion.tif the focus outline, kept apart for "
    "evaluating explanations only. Deterministic by --seed."
)


def add_arguments(parser) -> None:
    parser.add_argument("out", help="output folder (created)")
    parser.add_argument("--n", type=int, default=200, help="number of slides (default 200)")
    parser.add_argument("--lesion-fraction", default="0.02,0.05,0.1,0.2",
                        help="comma-separated focus areas as fractions of the tissue area; "
                             "positives cycle through them (default 0.02,0.05,0.1,0.2)")
    parser.add_argument("--size", default="2048",
                        help="level-0 size of each slide: N or HEIGHTxWIDTH px (default 2048)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--mpp", type=float, default=0.5, help="µm per level-0 px (default 0.5)")
    parser.add_argument("--positive-share", type=float, default=0.5,
                        help="share of slides with a focus (default 0.5)")
    parser.add_argument("--workers", type=int, default=2, help="threads per slide (default 2)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a cohort already in the folder")


def parse_fractions(text: str) -> tuple[float, ...]:
    from .. import options

    parts = [p for p in str(text).split(",") if p.strip()]
    if not parts:
        raise options.OptionError("--lesion-fraction needs at least one number in (0, 1)")
    return tuple(options.real_number(p, "--lesion-fraction", minimum=1e-4, maximum=0.9)
                 for p in parts)


def run(args) -> int:
    import time
    from pathlib import Path

    from .. import options
    from ..progress import run_to_end, text_progress
    from ..synth.cohort import iter_make_cohort
    from .synth import _size

    n = options.whole_number(args.n, "--n", minimum=2, maximum=100000)
    fractions = parse_fractions(args.lesion_fraction)
    size = _size(args.size)
    options.real_number(args.mpp, "--mpp", minimum=0.05, maximum=10.0)
    share = options.real_number(args.positive_share, "--positive-share", minimum=0.01,
                                maximum=0.99)
    options.seed(args.seed)
    workers = options.threads(args.workers, "--workers")
    start = time.perf_counter()
    labels = run_to_end(iter_make_cohort(Path(args.out), n=n, lesion_fractions=fractions,
                                         size=size, seed=args.seed, mpp=args.mpp,
                                         positive_share=share, workers=workers,
                                         overwrite=args.overwrite),
                        on_progress=text_progress("synth-cohort"))
    print(f"wrote {n} slides and {labels} in {time.perf_counter() - start:.1f} s "
          f"(lesion masks in {Path(args.out) / 'lesions'}, for evaluation only)")
    return 0
