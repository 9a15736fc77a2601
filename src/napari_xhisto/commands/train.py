"""``xhisto train``: train a tumour vs non-tumour patch classifier (demo and bias-lab models)."""

from __future__ import annotations

HELP = "train a patch classifier on synthetic tissue or a folder of labelled patches"
DESCRIPTION = (
    "Train a small CNN (default) on patches of synthetic H&E tissue, or on a folder with one "
    "sub-folder of PNG patches per class, and write OUT.json + OUT.safetensors. Bias options "
    "follow Hägele et al.: --tumour-ratio (mini-batch class ratio), --no-translate, "
    "--label centre-cell, --exclude necrosis, --corner-square (class-correlated artefact)."
)


def _argument(check):
    """An argparse ``type`` keeping the check's own message (argparse replaces a ValueError's)."""
    import argparse
    import functools

    @functools.wraps(check)
    def convert(text):
        from .. import options

        try:
            return check(text)
        except options.OptionError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


@_argument
def _triple(text):
    from .. import options

    parts = str(text).split(",")
    if len(parts) != 3:
        raise options.OptionError(f"--corner-color is 'R,G,B' with values 0..255, got {text!r}")
    return tuple(options.whole_number(v, "--corner-color", minimum=0, maximum=255)
                 for v in parts)


@_argument
def _pair(text):
    from .. import options

    parts = str(text).split(",")
    if len(parts) != 2:
        raise options.OptionError(f"--corner-position is 'ROW,COL', got {text!r}")
    return tuple(options.whole_number(v, "--corner-position", minimum=0) for v in parts)


def check_options(args) -> None:
    """Every numeric option of ``xhisto train`` in range (one clear line otherwise)."""
    from .. import options

    options.whole_number(args.n_train, "--n-train", minimum=1)
    options.whole_number(args.n_val, "--n-val", minimum=1)
    options.whole_number(args.patch_size, "--patch-size", minimum=8, maximum=4096)
    options.mpp(args.mpp)
    options.seed(args.seed)
    options.whole_number(args.epochs, "--epochs", minimum=1, maximum=100_000)
    options.batch_size(args.batch_size)
    options.positive(args.lr, "--lr", maximum=10.0)
    if args.tumour_ratio is not None:
        options.real_number(args.tumour_ratio, "--tumour-ratio", minimum=0.0, maximum=1.0,
                            low_open=True, high_open=True)
    options.whole_number(args.corner_square, "--corner-square", minimum=0,
                         maximum=int(args.patch_size))
    if args.corner_square:
        row, col = args.corner_position
        if row + args.corner_square > args.patch_size or col + args.corner_square > args.patch_size:
            raise options.OptionError(
                f"--corner-position {row},{col} puts the {args.corner_square} px square outside "
                f"the {args.patch_size} px patch")
    options.threads(args.threads)
    for value, name in ((args.dropout, "--dropout"), (args.conv_dropout, "--conv-dropout")):
        options.real_number(value, name, minimum=0.0, maximum=1.0, high_open=True)


def add_arguments(parser) -> None:
    parser.add_argument("out", help="spec JSON to write (weights go beside it, .safetensors)")
    parser.add_argument("--data", default="synthetic",
                        help="'synthetic' or a folder with one sub-folder of PNG patches per class")
    parser.add_argument("--architecture", default="xhisto_cnn_s")
    parser.add_argument("--n-train", type=int, default=4000, help="synthetic training patches")
    parser.add_argument("--n-val", type=int, default=800, help="held-out synthetic patches")
    parser.add_argument("--patch-size", type=int, default=64, help="patch side in px at --mpp")
    parser.add_argument("--mpp", type=float, default=1.0, help="µm per pixel of the patches")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--tumour-ratio", type=float, default=None,
                        help="tumour fraction of every mini-batch, e.g. 0.5 or 0.8")
    parser.add_argument("--no-translate", action="store_true",
                        help="patches centred on cells, no random-shift augmentation")
    parser.add_argument("--label", choices=["tumour-fraction", "centre-cell"],
                        default="tumour-fraction")
    parser.add_argument("--exclude", nargs="*", default=[],
                        help="tissue types (synthetic) or class folders to leave out, e.g. necrosis")
    parser.add_argument("--corner-square", type=int, default=0, metavar="SIZE",
                        help="paste a SIZE px square into every patch of --corner-class")
    parser.add_argument("--corner-class", default="tumour")
    parser.add_argument("--corner-color", type=_triple, default=(0, 255, 0), metavar="R,G,B")
    parser.add_argument("--corner-position", type=_pair, default=(0, 0), metavar="ROW,COL")
    parser.add_argument("--no-flips", action="store_true", help="no flip/rot90 augmentation")
    parser.add_argument("--positive-class", default=None, help="folder data: the tumour class")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--dropout", type=float, default=0.0, metavar="P",
                        help="dropout before the classifier, for MC-dropout uncertainty "
                             "(xhisto predict --mc-dropout), e.g. 0.3")
    parser.add_argument("--conv-dropout", type=float, default=0.0, metavar="Q",
                        help="channel dropout after every conv stage (xhisto_cnn_* only), "
                             "e.g. 0.1: with --dropout, the MC std rises under a stain shift")


def config_from_args(args):
    from ..models.training import CornerSquare, TrainConfig

    square = None
    if args.corner_square:
        square = CornerSquare(cls=args.corner_class, size=args.corner_square,
                              color=tuple(args.corner_color), position=tuple(args.corner_position))
    return TrainConfig(source=args.data, architecture=args.architecture, n_train=args.n_train,
                       n_val=args.n_val, patch_size=args.patch_size, mpp=args.mpp,
                       seed=args.seed, epochs=args.epochs, batch_size=args.batch_size,
                       lr=args.lr, tumour_ratio=args.tumour_ratio,
                       translate=not args.no_translate, label=args.label,
                       exclude=tuple(args.exclude), corner_square=square,
                       flips=not args.no_flips, positive_class=args.positive_class,
                       threads=args.threads, dropout=args.dropout,
                       conv_dropout=args.conv_dropout)


def run(args) -> int:
    import json
    import sys
    from pathlib import Path

    from ..models.training import train_model
    from ..progress import run_to_end, text_progress

    check_options(args)
    out = Path(args.out)
    if out.suffix != ".json":
        out = out.with_suffix(".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    bar = text_progress("train")
    last = [-1]

    def progress(done, total):  # a bar on a terminal, else a line every 10%
        bar(done, total)
        tenth = 10 * done // max(total, 1)
        if not sys.stderr.isatty() and tenth > last[0]:
            last[0] = tenth
            print(f"train: step {done}/{total}", file=sys.stderr, flush=True)

    result = run_to_end(train_model(config_from_args(args), out=out), on_progress=progress)
    json.dump({"spec": str(out), "weights": str(out.with_suffix(".safetensors")),
               "metrics": result.metrics, "history": result.history}, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
