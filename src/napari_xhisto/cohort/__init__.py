"""Studies: one task over many slides on dask.distributed, resumable, with one results table.

Headless (no Qt, no napari). Each slide runs the same core functions as its single-slide
command (``xhisto predict`` / ``explain`` / ``evaluate``) and writes the same files into
``DIR/<slide-id>/``; ``DIR/results.csv`` and ``results.json`` hold one row per slide.

>>> from napari_xhisto.cohort import StudySettings, run_study          # doctest: +SKIP
>>> run = run_study("study.csv", StudySettings(task="predict"), "out")   # doctest: +SKIP
>>> run.computed, run.cached, run.failed                                 # doctest: +SKIP
(16, 0, 0)
"""

from .runner import StudyRun, default_workers, open_client, plan_study, run_study
from .settings import StudySettings, parse_params
from .study import StudyRow, read_study
from .summary import auc_interval, study_auc
from .tasks import TASKS, Task, get_task, register_task

__all__ = [
    "TASKS",
    "StudyRow",
    "StudyRun",
    "StudySettings",
    "Task",
    "auc_interval",
    "default_workers",
    "get_task",
    "open_client",
    "parse_params",
    "plan_study",
    "read_study",
    "register_task",
    "run_study",
    "study_auc",
]
