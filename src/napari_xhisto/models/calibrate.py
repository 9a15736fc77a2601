"""Patch logits against annotated labels, for temperature scaling (``xhisto calibrate``).

Each slide is cut into the model's patch grid (:func:`.inference.plan_patches`: patches side
by side at the model's µm/px, background skipped); the patches are labelled from the slide's
annotations by :func:`napari_xhisto.metrics.patch_labels.label_patches` (the rule is written
there), and only labelled patches are read and run through the network. Logits are raw network
outputs: the spec's own temperature is not applied, so a temperature fitted on them replaces
it. The CLI and the Evaluate widget's Calibration tab both use :func:`iter_collect_logits`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import XhistoError

__all__ = ["CalibrationData", "annotations_for", "check_outputs", "iter_collect_logits",
           "output_paths", "write_calibrated_spec", "write_calibration"]


@dataclass
class CalibrationData:
    """Labelled patch logits from one or more slides.

    Attributes
    ----------
    logits : (N, C) float32
    labels : (N,) int64, model class indices
    slide_index : (N,) int, which slide each patch came from
    centres : (N, 2) float, level-0 (row, col) of each patch centre
    class_names : list of str
    positive_class : str
    slides : list of dict
        Per slide: path, annotations, rule, tissue patches, labelled patches, skipped reasons,
        unmapped annotation classes, patches per class.
    """

    logits: np.ndarray
    labels: np.ndarray
    slide_index: np.ndarray
    centres: np.ndarray
    class_names: list
    positive_class: str
    slides: list = field(default_factory=list)


def annotations_for(slides, annotations=None) -> list[Path]:
    """The annotation file of each slide: one given per slide, or ``<stem>.geojson`` beside it.

    Raises
    ------
    XhistoError
        When counts do not match or a slide has no annotation file.
    """
    from ..synth.writer import ground_truth_path

    slides = [Path(s) for s in slides]
    if not slides:
        raise XhistoError("give at least one slide")
    if annotations:
        files = [Path(a) for a in annotations]
        if len(files) != len(slides):
            raise XhistoError(f"{len(slides)} slide(s) but {len(files)} annotation file(s): give "
                              "one --annotations file per slide, in the same order")
    else:
        files = [ground_truth_path(s) for s in slides]
    for slide, f in zip(slides, files):
        if not f.is_file():
            raise XhistoError(f"no annotations for {slide.name}: {f} does not exist (pass "
                              "--annotations FILE.geojson, one per slide)")
    return files


def iter_collect_logits(slides, annotations, model, *, rule: str = "auto", min_cells: int = 3,
                        tissue_threshold: float = 0.1, batch_size: int = 64,
                        mpp: float | None = None):
    """Labelled patch logits of ``slides``: a generator of (done, total) patches.

    Parameters
    ----------
    slides : list of paths or open Slides
        Slides given open stay open; those opened here are closed at the end.
    annotations : list of paths or AnnotationSets
        One annotation file (GeoJSON/CSV, level-0 pixels) or set per slide.
    model : LoadedModel, ModelSpec, path or "demo"
    rule, min_cells
        The labelling rule (:func:`napari_xhisto.metrics.patch_labels.label_patches`).
    tissue_threshold : float
        Minimum tissue fraction of a patch (as ``predict``).
    batch_size : int
    mpp : float, optional
        µm per level-0 pixel of every slide (overrides the files' metadata).

    Returns
    -------
    CalibrationData
        As the generator's return value.
    """
    from .inference import damaged_cells, read_patch_batch
    from .loading import load_model

    model = load_model(model)
    spec = model.spec
    if len(slides) != len(annotations):
        raise XhistoError("give one annotation file per slide")
    opened = []  # slides opened here (closed at the end, or on cancel); open Slides stay open
    logits, labels, index, centres, infos = [], [], [], [], []
    try:
        jobs = [_prepare(k, path, ann_path, spec, opened, rule=rule, min_cells=min_cells,
                         tissue_threshold=tissue_threshold, mpp=mpp)
                for k, (path, ann_path) in enumerate(zip(slides, annotations))]
        total = sum(len(j[3]) for j in jobs)
        done = 0
        yield 0, total
        for k, slide, plan, cells, labs, info in jobs:
            for s in range(0, len(cells), batch_size):
                c, y = cells[s:s + batch_size], labs[s:s + batch_size]
                images = read_patch_batch(slide, plan, c)
                ok = ~damaged_cells(slide, plan, c)
                if ok.any():
                    logits.append(model.predict_logits(images[ok], batch_size=batch_size))
                    labels.append(y[ok])
                    index.append(np.full(int(ok.sum()), k))
                    p = plan.placement
                    centres.append(np.stack([p.origin_row + (c[ok, 0] + 0.5) * p.step_row,
                                             p.origin_col + (c[ok, 1] + 0.5) * p.step_col], 1))
                info["damaged_patches"] = info.get("damaged_patches", 0) + int((~ok).sum())
                done += len(c)
                yield done, total
            infos.append(info)
    finally:
        for sl in opened:
            sl.close()
    n_cls = spec.num_classes
    return CalibrationData(
        logits=np.concatenate(logits) if logits else np.zeros((0, n_cls), np.float32),
        labels=np.concatenate(labels) if labels else np.zeros(0, np.int64),
        slide_index=np.concatenate(index) if index else np.zeros(0, np.int64),
        centres=np.concatenate(centres) if centres else np.zeros((0, 2)),
        class_names=list(spec.class_names), positive_class=spec.positive_class, slides=infos)


def _prepare(k, path, ann_path, spec, opened, *, rule, min_cells, tissue_threshold, mpp):
    """Open (if needed), plan and label one slide: ``(k, slide, plan, cells, labels, info)``."""
    from ..annotations import read_annotations
    from ..metrics.patch_labels import label_patches
    from ..slide import open_slide
    from .inference import plan_patches

    if hasattr(path, "read_scaled"):
        slide = path
        path = getattr(slide, "path", f"slide {k + 1}")
    else:
        slide = open_slide(path, mpp=mpp)
        opened.append(slide)
    ann_name = _name(ann_path, "annotations")
    ann = (ann_path if hasattr(ann_path, "regions") else
           read_annotations(ann_path, image_shape=slide.dimensions, warn=False))
    if ann.is_empty():
        raise XhistoError(f"{ann_name} holds no cells or regions on "
                          f"{_name(path, 'the slide')}: nothing to label patches with")
    plan = plan_patches(slide, None, spec, tissue_threshold=tissue_threshold)
    try:
        lab = label_patches(ann, plan.placement, plan.shape, plan.cells, spec.class_names,
                            spec.positive_class, rule=rule, min_cells=min_cells)
    except ValueError as exc:  # the labelling rule does not fit the annotations
        raise XhistoError(f"{ann_name}: {exc}") from None
    keep = lab.labels >= 0
    info = {"slide": str(path), "annotations": ann_name, "rule": lab.rule,
            "tissue_patches": int(len(plan.cells)), "labelled_patches": int(keep.sum()),
            "skipped": dict(lab.skipped), "unmapped_classes": lab.unmapped,
            "per_class": {c: int((lab.labels == i).sum()) for i, c in enumerate(spec.class_names)}}
    return k, slide, plan, plan.cells[keep], lab.labels[keep], info


def _name(obj, default: str) -> str:
    if isinstance(obj, str | os.PathLike):
        return Path(obj).name
    return default


def _weights_reference(weights: Path, out: Path) -> str:
    """The weights path as the new spec names it: relative when it lies under the spec's
    folder, absolute otherwise (so the spec keeps resolving wherever it is read from)."""
    weights, folder = weights.resolve(), out.resolve().parent
    try:
        return weights.relative_to(folder).as_posix()
    except ValueError:
        return str(weights)


def write_calibrated_spec(spec, out, temperature: float, *, record: dict | None = None) -> Path:
    """Write a copy of ``spec`` naming the same weights file, with ``temperature`` set.

    ``out`` ending in ``.yaml``/``.yml`` is written as YAML, anything else as JSON. ``record``
    (what the calibration measured) goes under ``training["calibration"]``.
    """
    import copy
    import json

    from .spec import ModelSpec

    out = Path(out)
    wpath = spec.weights_path()
    if wpath is None or not Path(wpath).exists():
        raise XhistoError(f"the model's weights file ({wpath}) is missing: cannot reference it")
    new = copy.deepcopy(spec)
    new.temperature = float(temperature)
    new.weights = _weights_reference(Path(wpath), out)
    new.training = dict(new.training or {})
    if record:
        new.training["calibration"] = record
    d = json.loads(json.dumps(new.to_dict()))  # plain lists/floats for YAML
    d.pop("temperature", None)
    d["temperature"] = float(temperature)
    ModelSpec.from_dict(d, source=out)  # the file must read back
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    if out.suffix.lower() in (".yaml", ".yml"):
        import yaml

        tmp.write_text(yaml.safe_dump(d, sort_keys=False, allow_unicode=True))
    else:
        tmp.write_text(json.dumps(d, indent=2) + "\n")
    os.replace(tmp, out)
    return out


def output_paths(out) -> dict:
    """The calibrated spec and the reliability PNG/JSON written beside it.

    Examples
    --------
    >>> sorted(p.name for p in output_paths("m/demo-cal.yaml").values())
    ['demo-cal.reliability.json', 'demo-cal.reliability.png', 'demo-cal.yaml']
    """
    out = Path(out)
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    return {"spec": out, "png": out.with_name(f"{stem}.reliability.png"),
            "json": out.with_name(f"{stem}.reliability.json")}


def check_outputs(out, model_spec=None, *, force: bool = False) -> dict:
    """:func:`output_paths` of ``out`` once it is safe to write them (one-line errors)."""
    out = Path(out)
    if out.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise XhistoError(f"{out.name}: a calibrated spec ends in .yaml, .yml or .json")
    if out.is_dir():
        raise XhistoError(f"{out} is a folder: give a spec file name, e.g. "
                          f"{out / 'model-calibrated.yaml'}")
    paths = output_paths(out)
    if not force:
        for p in paths.values():
            if p.exists():
                raise XhistoError(f"{p} exists: choose another name or pass --force to "
                                  "replace it")
    src = getattr(model_spec, "source", None)
    if src and Path(src).resolve() == out.resolve():
        raise XhistoError(f"{out.name} is the model's own spec: choose another name (the "
                          "original stays as it is)")
    return paths


def write_calibration(model, data: CalibrationData, report: dict, study: dict, out, *,
                      settings: dict, force: bool = False) -> dict:
    """Write the calibrated spec, ``<stem>.reliability.png`` and ``<stem>.reliability.json``.

    Parameters
    ----------
    model : LoadedModel
        The model the logits came from (its spec is copied, its weights file referenced).
    data, report, study
        :func:`iter_collect_logits`, :func:`napari_xhisto.metrics.calibration_study
        .temperature_report` and ``repeated_splits`` results.
    out : path
        The spec to write (``.yaml``/``.yml``/``.json``).
    settings : dict
        How the labels and splits were made (label rule, min cells, seed ...), recorded.
    force : bool
        Replace existing outputs.

    Returns
    -------
    dict
        ``{"spec", "png", "json"}`` paths written.
    """
    import json

    from ..export.reliability import reliability_figure
    from ..metrics.report import jsonable

    paths = check_outputs(out, model.spec, force=force)
    t = float(report["temperature"])
    spec = model.spec
    record = {"temperature": t, "command": "xhisto calibrate", **settings,
              "slides": [Path(s["slide"]).name for s in data.slides],
              "n_val": report["n_val"], "n_test": report["n_test"], "n_bins": report["n_bins"],
              "ece_before": report["before"]["ece"], "ece_after": report["after"]["ece"],
              "mce_before": report["before"]["mce"], "mce_after": report["after"]["mce"],
              "input_spec": str(spec.source) if spec.source else spec.name,
              "input_temperature": float(getattr(spec, "temperature", 1.0))}
    write_calibrated_spec(spec, paths["spec"], t, record=jsonable(record))
    fig = reliability_figure(report, study)
    fig.savefig(paths["png"], dpi=150)
    doc = {"spec": str(paths["spec"]), "model": model.provenance(), "temperature": t,
           "labelling": {**settings, "slides": data.slides},
           "n_patches": int(len(data.labels)),
           "per_class": {c: int((data.labels == i).sum()) for i, c in enumerate(data.class_names)},
           "test_split": report, "repeated_splits": study}
    paths["json"].write_text(json.dumps(jsonable(doc), indent=2) + "\n")
    return paths
