"""Pure metric functions: numpy in, numbers out (no torch, no napari).

- `cells`: cell scores in discs around point annotations, cell-level ROC, baselines, per-tile ROC.
- `regions`: relevance per annotated region, model A against model B.
- `localization`: PxAP, confusion over thresholds, Dice/IoU, Hausdorff, weak localisation, area.
- `bias`: centre-bias profile, class mean heatmaps, hotspot (artefact) scan.
- `calibration`: ECE, MCE, reliability bins, temperature scaling.
- `meta`: mean maps per class and confidence bin, explanation clusters and their purity.
- `sanity`: map similarity for the weight-randomisation check (Spearman, SSIM, top overlap).
- `report`: everything for one heatmap at once (what ``xhisto evaluate`` and the widget run);
  `multi`: several heatmaps of the same cells, with paired AUC comparisons.
- `disc`: exact area-weighted disc means (cell scores at any heatmap step).
- `threshold_sweep`: PxAP and localisation-vs-threshold curves on the WSOL evaluator's grid.
- `uncertainty`: bootstrap AUC intervals, paired differences, DeLong's test.
- `conventions`: how each metric reads a signed map (recorded in every output).
- `study_scale`: one normalisation scale per slide/model/method across runs.
"""

from .bias import (
    CentreBiasProfile,
    Hotspot,
    centre_bias_profile,
    class_mean_heatmaps,
    find_hotspot,
    window_enrichment,
)
from .calibration import (
    apply_temperature,
    calibration_summary,
    expected_calibration_error,
    fit_temperature,
    maximum_calibration_error,
    reliability_bins,
)
from .cells import RocResult, TileRoc, baseline_aucs, cell_roc, cell_scores, per_tile_roc
from .conventions import CONVENTIONS, apply_convention, conventions_record
from .localization import (
    REFERENCE_STEP,
    THRESHOLDS,
    PxapResult,
    area_ratio,
    confusion_over_thresholds,
    dice_iou,
    hausdorff_distance,
    localization_at_percentiles,
    minmax_normalize,
    pxap,
    threshold_grid,
    weak_localization,
)
from .meta import cluster_purity, explanation_clusters, mean_maps_by_confidence
from .multi import evaluate_heatmaps, iter_evaluate_heatmaps
from .regions import (
    RegionComparison,
    RegionRelevance,
    compare_region_relevance,
    region_mask,
    region_relevance,
)
from .report import evaluate_heatmap, iter_evaluate_heatmap
from .sanity import map_similarity, randomization_flag
from .uncertainty import auc_interval, delong_covariance, delong_test, paired_auc_difference

__all__ = [
    "THRESHOLDS", "CentreBiasProfile", "Hotspot", "PxapResult", "RegionComparison",
    "RegionRelevance", "RocResult", "TileRoc", "apply_temperature", "area_ratio", "baseline_aucs",
    "cell_roc", "cell_scores", "centre_bias_profile", "class_mean_heatmaps",
    "compare_region_relevance", "confusion_over_thresholds", "dice_iou",
    "expected_calibration_error", "find_hotspot", "fit_temperature", "hausdorff_distance",
    "localization_at_percentiles", "maximum_calibration_error", "minmax_normalize", "per_tile_roc",
    "pxap", "region_mask", "region_relevance", "reliability_bins", "weak_localization",
    "window_enrichment", "calibration_summary", "evaluate_heatmap", "iter_evaluate_heatmap", "map_similarity",
    "randomization_flag", "cluster_purity", "explanation_clusters", "mean_maps_by_confidence",
    "CONVENTIONS", "REFERENCE_STEP", "apply_convention", "auc_interval", "conventions_record",
    "delong_covariance", "delong_test", "evaluate_heatmaps", "iter_evaluate_heatmaps",
    "paired_auc_difference", "threshold_grid",
]
