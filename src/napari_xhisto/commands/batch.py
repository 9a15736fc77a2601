"""``xhisto batch STUDY.csv``: one task over every slide of a study, on dask.distributed."""

from __future__ import annotations

HELP = "run predict/explain/evaluate/compress over every slide of a study (dask; resumable)"
DESCRIPTION = (
    "Run one task on every slide listed in STUDY.csv (columns: path, and optionally "
    "annotations, label, region 'row,col,height,width', id). Each slide's files (the same as "
    "the single-slide command writes) go to OUT/<slide-id>/, and OUT/results.csv + "
    "results.json get one row per slide (status, seconds, device, mean p, cell AUC with a 95% "
    "interval when annotations exist, errors); --task compress writes OUT/<slide-id>/"
    "<slide-id>.nic.zarr with --encoder. Re-running skips slides finished with the same "
    "inputs and settings; a failing slide fails only its own row. Runs on a local cluster of "
    "--workers processes, or on an existing dask cluster given by --scheduler."
)


def add_arguments(parser) -> None:
    parser.add_argument("study", help="STUDY.csv (path[,annotations][,label][,region][,id])")
    parser.add_argument("--task", required=True,
                        choices=["predict", "explain", "evaluate", "compress"],
                        help="what to run on each slide")
    parser.add_argument("--out", required=True, help="study folder (created; resumed if present)")
    parser.add_argument("--model", default="demo",
                        help="'demo', a spec .json or WSInfer config.json")
    parser.add_argument("--encoder", default=None,
                        help="compress: encoder spec .yaml or bundled kind (xhisto compress)")
    parser.add_argument("--method", default="lrp-epsilon-plus",
                        help="explainer for explain/evaluate (xhisto methods)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="method parameter (repeatable)")
    parser.add_argument("--target", default=None, help="class to explain (default: positive)")
    parser.add_argument("--overlap", type=float, default=0.1, help="patch overlap of explain")
    parser.add_argument("--normalize", default="global-max",
                        choices=["global-max", "per-patch", "percentile", "none"])
    parser.add_argument("--percentile", type=float, default=99.5)
    parser.add_argument("--class", dest="class_name", default=None,
                        help="class whose probability predict writes (default: positive)")
    parser.add_argument("--stride", type=float, default=None,
                        help="predict: level-0 px between patch centres")
    parser.add_argument("--tissue-threshold", type=float, default=0.1)
    parser.add_argument("--radius-um", type=float, default=None,
                        help="disc radius around each cell in µm (needed by evaluate)")
    parser.add_argument("--positive", action="append", default=None, metavar="CLASS",
                        help="positive cell class (repeatable; default: tumour)")
    parser.add_argument("--negative", action="append", default=None, metavar="CLASS")
    parser.add_argument("--localize", action="append", default=None, metavar="CLASS")
    parser.add_argument("--tile-um", type=float, default=256.0)
    parser.add_argument("--random-runs", type=int, default=20)
    parser.add_argument("--mpp", type=float, default=None,
                        help="override every slide's µm per level-0 pixel")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, cuda:1 (default: one GPU per worker if present)")
    parser.add_argument("--workers", type=int, default=None,
                        help="local worker processes (default: GPUs, else CPU cores)")
    parser.add_argument("--scheduler", default=None, metavar="ADDR",
                        help="use a running dask cluster: tcp://host:8786 or a scheduler file")
    parser.add_argument("--overwrite", action="store_true",
                        help="reuse an --out that holds a study with other settings")


def settings_from_args(args):
    """The :class:`StudySettings` of parsed ``xhisto batch`` arguments (checked)."""
    from ..cohort import StudySettings, get_task, parse_params
    from ..errors import XhistoError

    task = get_task(args.task)  # refuses tasks not built yet, with the reason
    if args.workers is not None and args.workers < 1:
        raise XhistoError(f"--workers must be at least 1, got {args.workers}")
    if args.batch_size is not None and args.batch_size < 1:
        raise XhistoError(f"--batch-size must be at least 1, got {args.batch_size}")
    if not 0.0 <= args.overlap <= 0.9:
        raise XhistoError(f"--overlap must lie in [0, 0.9], got {args.overlap}")
    if not 0.0 <= args.tissue_threshold <= 1.0:
        raise XhistoError(f"--tissue-threshold must lie in [0, 1], got {args.tissue_threshold}")
    if args.radius_um is not None and args.radius_um < 0:
        raise XhistoError(f"--radius-um must be >= 0, got {args.radius_um}")
    if task.name == "evaluate" and not args.radius_um:
        raise XhistoError("--task evaluate needs --radius-um (disc radius around each cell, µm)")
    if args.mpp is not None and not args.mpp > 0:
        raise XhistoError(f"--mpp must be positive, got {args.mpp}")
    if task.name == "compress" and not args.encoder:
        raise XhistoError("--task compress needs --encoder (a spec .yaml from xhisto "
                          "train-encoder, or a bundled kind such as 'contrastive')")
    if args.encoder and task.name != "compress":
        raise XhistoError(f"--encoder is for --task compress, not --task {task.name}")
    uses_method = "method" in task.uses
    params = parse_params(args.param, args.method) if uses_method else ()
    if args.param and not uses_method:
        raise XhistoError(f"--param is for explain/evaluate, not --task {task.name}")
    return StudySettings(
        task=task.name, model=args.model, method=args.method, params=params, target=args.target,
        overlap=args.overlap, normalize=args.normalize, percentile=args.percentile,
        class_name=args.class_name, stride=args.stride, tissue_threshold=args.tissue_threshold,
        mpp=args.mpp, radius_um=args.radius_um, positive=tuple(args.positive or ("tumour",)),
        negative=None if args.negative is None else tuple(args.negative),
        tile_um=args.tile_um, random_runs=args.random_runs,
        localize=None if args.localize is None else tuple(args.localize),
        device=args.device, batch_size=args.batch_size,
        extra={"encoder": args.encoder} if task.name == "compress" else {})


def run(args) -> int:
    from ..cohort import run_study

    settings = settings_from_args(args)
    result = run_study(args.study, settings, args.out, workers=args.workers,
                       scheduler=args.scheduler, overwrite=args.overwrite)
    auc = result.study.get("slide_auc")
    if auc and auc.get("auc") is not None:
        ci = "" if auc["low"] is None else f" (95% CI {auc['low']:.3f}-{auc['high']:.3f})"
        print(f"slide-level AUC of mean p ({auc['positive_label']} vs {auc['negative_label']}, "
              f"{auc['n_positive']}+{auc['n_negative']} slides): {auc['auc']:.3f}{ci}")
    print(f"{result.files[0]}: {result.computed} computed, {result.cached} already done, "
          f"{result.failed} failed")
    return 3 if result.failed else 0  # 3: the study ran, some slides failed (see the table)
