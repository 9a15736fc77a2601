"""Model specs, safe loading, architectures, the bundled demo classifier, training, inference.

Imports torch (never napari or Qt).

>>> from napari_xhisto.models import load_model, predict_region   # doctest: +SKIP
>>> model = load_model("demo")                                      # doctest: +SKIP
"""

from .architectures import (
    SmallCNN,
    build_architecture,
    default_target_layer,
    list_architectures,
    register_architecture,
    target_layer_name,
)
from .inference import (
    PatchPlan,
    ProbabilityMap,
    plan_patches,
    predict_region,
    probability_layer_data,
    read_patch_batch,
)
from .loading import (
    LoadedModel,
    choose_device,
    load_model,
    read_state_dict,
    run_halving_on_oom,
    save_model,
)
from .spec import ModelSpec

__all__ = [
    "LoadedModel",
    "ModelSpec",
    "PatchPlan",
    "ProbabilityMap",
    "SmallCNN",
    "build_architecture",
    "choose_device",
    "default_target_layer",
    "list_architectures",
    "load_model",
    "plan_patches",
    "predict_region",
    "probability_layer_data",
    "read_patch_batch",
    "read_state_dict",
    "register_architecture",
    "run_halving_on_oom",
    "save_model",
    "target_layer_name",
]
