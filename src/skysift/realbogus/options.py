"""Options of the cutout and real/bogus training-set stages (config section ``realbogus``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from skysift.errors import ConfigError
from skysift.options import StageOptions, param

__all__ = ["RealbogusOptions"]


@dataclass(frozen=True)
class RealbogusOptions(StageOptions):
    """Settings of :func:`~skysift.cutouts.make_cutouts` and the injection training set."""

    section: ClassVar[str] = "realbogus"

    enabled: bool = param(True, "Build, train and apply the real/bogus classifier.", cli=False)
    cutout_size: int = param(
        63, "Side of the triplet cutouts; the classifier's stamp_size must match.", unit="pix", minimum=15, maximum=255, odd=True
    )
    n_training_pairs: int = param(
        2, "Simulated pairs without transients (rb00, rb01...) used for injection.", minimum=1, cli=False
    )
    n_injections_per_image: int = param(50, "Point sources injected per image and repeat.", minimum=1)
    n_repeats: int = param(1, "Independent injection rounds per pair.", minimum=1)
    snr_min: float = param(5.0, "Lowest injected S/N.", exclusive_minimum=0)
    snr_max: float = param(50.0, "Highest injected S/N.", exclusive_minimum=0)
    n_cosmic_rays: int = param(15, "Cosmic-ray hits added per image and repeat (bogus).", minimum=0)
    real_fraction: float = param(
        0.5, "Target fraction of real (injected) samples in the training set.", exclusive_minimum=0, exclusive_maximum=1
    )
    detected_only: bool = param(
        True,
        "Keep only injections and cosmic rays that the subtraction detected, cut at the candidate "
        "(the classifier only sees candidates).",
    )
    survey: str = param(
        "simulated",
        "'simulated' trains on injections into skysift's simulated pairs (rb00...); a survey preset ('ztf') trains "
        "on that survey's alert-like stamps (skysift realbogus survey-set).",
        choices=("simulated", "ztf"),
    )
    n_survey_samples: int = param(6000, "Triplets of the survey training set (survey presets only).", minimum=100)
    survey_snr_max: float = param(
        300.0, "Highest S/N of real candidates in the survey training set (the lowest is snr_min).", exclusive_minimum=0
    )
    real_backgrounds: list[str] = param(
        [], "Alert-packet directories whose real science/template/difference stamps host the injections (survey "
        "presets only; empty for simulated backgrounds alone).",
    )
    real_background_fraction: float = param(
        0.5, "Fraction of survey training triplets on real backgrounds when real_backgrounds is set.", minimum=0, maximum=1
    )
    evaluation_alerts: list[str] = param(
        [], "Alert-packet directories to measure the model against ZTF's rb/drb (alerts used as training backgrounds "
        "are left out).", cli=False,
    )
    ztf_alerts: str | None = param(
        None, "Directory of ZTF Avro alert packets to score with the trained model (null for none).",
        path="existing-dir", cli=False,
    )

    def check(self) -> None:
        if self.snr_max < self.snr_min:
            raise ConfigError(f"realbogus: snr_max ({self.snr_max}) is below snr_min ({self.snr_min})")
