"""The transit task of the shared trainer: AstroNet on global/local and vetting views."""

from __future__ import annotations

from skysift.train.tasks import TaskSpec, register_task

__all__ = ["TASK"]

TASK = register_task(
    TaskSpec(
        "transit",
        # skysift.transit.dataset.INPUT_NAMES (not imported here: the dataset module is heavy).
        ("global_view", "local_view", "secondary_view", "odd_view", "even_view", "scalars"),
        "skysift.transit.model:build_model",
        description="AstroNet 1-D CNN on global/local views (Shallue & Vanderburg 2018) with secondary, odd/even "
        "views and scalar diagnostics (Ansdell et al. 2018; Yu et al. 2019)",
        gallery="skysift.transit.plots:transit_gallery",
    )
)
