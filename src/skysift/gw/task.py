"""The GW detection task of the shared trainer: a 1-D CNN on whitened H1/L1 strain."""

from __future__ import annotations

from skysift.train.tasks import TaskSpec, register_task

__all__ = ["TASK"]

TASK = register_task(
    TaskSpec(
        "gw",
        ("strain",),
        "skysift.gw.model:build_model",
        description="1-D CNN on whitened H1/L1 strain (George & Huerta 2018; deeper residual variant)",
        split_group="waveform_id",
        gallery="skysift.gw.plots:gw_gallery",
    )
)
