"""Options of the transit training-set stage (config section ``transit``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from skysift.options import StageOptions, param

__all__ = ["TransitOptions"]


@dataclass(frozen=True)
class TransitOptions(StageOptions):
    """Settings of :func:`~skysift.transit.dataset.make_transit_training_set`."""

    section: ClassVar[str] = "transit"

    enabled: bool = param(True, "Build, train and evaluate the transit classifier.", cli=False)
    n_samples: int = param(2000, "Light curves in the training set.", minimum=10)
    mission: str = param(
        "kepler", "Cadence and gaps of the simulated light curves.", choices=("kepler", "tess-2min", "tess-ffi", "tess-ffi-10min")
    )
    n_blocks: int = param(1, "Quarters or sectors per light curve.", minimum=1)
    positive_fraction: float = param(0.5, "Fraction of injected planets.", exclusive_minimum=0, exclusive_maximum=1)
    chunk_size: int = param(256, "Light curves per parallel task.", minimum=1)
