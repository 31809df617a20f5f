"""Survey presets: what a survey's alert triplets look like.

A real/bogus classifier trained on one survey's images does not transfer to
another's alerts (pixel scale, seeing, reference depth, noise, background,
stamp conventions all differ). A :class:`SurveyPreset` gathers the numbers
the stamp simulator (:mod:`skysift.realbogus.stamps`) needs to make training
triplets that look like the survey's own alert stamps; the preset's name is
stored in the training product and in the model card, so every model says
which survey it is for.

ZTF (:data:`ZTF`): Bellm et al. 2019 (PASP 131, 018002) and Masci et al. 2019
(PASP 131, 018003): 1.01"/px, median delivered seeing ~2" FWHM (1.5-3.5"),
30 s exposures, gain ~6.2 e-/DN, read noise ~8-10 e-, references are coadds of
15-40 good-seeing frames, difference images from ZOGY (Zackay et al. 2016)
scaled to the science image. Alert stamps (ztf-avro-alert schema) are 63x63
pixels of science (not background subtracted), reference and difference,
centred on the candidate and truncated where it lies within 31 px of the
CCD-quadrant edge; negative subtractions (``isdiffpos = 'f'``) are sent too.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SURVEYS", "SurveyPreset", "ZTF", "get_survey"]


@dataclass(frozen=True)
class SurveyPreset:
    """Pixel scale, seeing, depth, noise and stamp conventions of one survey's alerts.

    Ranges are sampled uniformly per stamp (seeing, sky and depth change from
    exposure to exposure and field to field).

    Attributes
    ----------
    name : str
        Survey name, stored in products and model cards.
    pixel_scale : float
        Arcseconds per pixel.
    stamp_size : int
        Side of the alert stamps (odd).
    seeing_range : (float, float)
        Science PSF FWHM range (arcsec).
    reference_seeing_range : (float, float)
        Reference (coadd) PSF FWHM range (arcsec).
    moffat_beta_range : (float, float)
        Moffat index range of the PSF wings.
    gain : float
        Electrons per DN.
    read_noise : float
        Read noise (electrons).
    sky_range : (float, float)
        Science sky level range (DN per pixel); the science stamp is not background subtracted.
    reference_sky_range : (float, float)
        Reference sky level range (DN per pixel).
    reference_depth_range : (float, float)
        S/N of a source in the reference divided by its S/N in one science
        exposure (about the square root of the number of coadded frames).
    saturation : float
        Science saturation level (DN).
    edge_fraction : float
        Fraction of candidates within half a stamp of a CCD edge (their stamps are truncated).
    negative_fraction : float
        Fraction of real candidates that are negative subtractions (fading variables).
    """

    name: str
    pixel_scale: float
    stamp_size: int
    seeing_range: tuple[float, float]
    reference_seeing_range: tuple[float, float]
    moffat_beta_range: tuple[float, float]
    gain: float
    read_noise: float
    sky_range: tuple[float, float]
    reference_sky_range: tuple[float, float]
    reference_depth_range: tuple[float, float]
    saturation: float
    edge_fraction: float
    negative_fraction: float

    def __post_init__(self) -> None:
        if self.stamp_size % 2 == 0 or self.stamp_size < 15:
            raise ValueError(f"stamp_size must be odd and >= 15, got {self.stamp_size}")
        for name in ("seeing_range", "reference_seeing_range", "moffat_beta_range", "sky_range",
                     "reference_sky_range", "reference_depth_range"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must satisfy 0 < low <= high, got {(low, high)}")
        if self.pixel_scale <= 0 or self.gain <= 0 or self.read_noise < 0 or self.saturation <= 0:
            raise ValueError("pixel_scale, gain and saturation must be > 0 and read_noise >= 0")
        for name in ("edge_fraction", "negative_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    def fwhm_pixels(self, seeing_arcsec: float) -> float:
        """A seeing FWHM in arcseconds converted to pixels."""
        return seeing_arcsec / self.pixel_scale


#: Zwicky Transient Facility (P48, 1.01"/px); see the module notes for the sources.
ZTF = SurveyPreset(
    name="ztf",
    pixel_scale=1.01,
    stamp_size=63,
    seeing_range=(1.5, 3.5),
    reference_seeing_range=(1.6, 2.6),
    moffat_beta_range=(2.5, 4.5),
    gain=6.2,
    read_noise=9.0,
    sky_range=(80.0, 1200.0),
    reference_sky_range=(50.0, 1500.0),
    reference_depth_range=(3.0, 6.5),
    saturation=50000.0,
    edge_fraction=0.05,
    negative_fraction=0.3,
)

#: Presets by name.
SURVEYS: dict[str, SurveyPreset] = {ZTF.name: ZTF}


def get_survey(name: str) -> SurveyPreset:
    """The preset called ``name`` (case-insensitive).

    Raises
    ------
    ValueError
        If there is no such preset.
    """
    try:
        return SURVEYS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown survey {name!r}; presets: {', '.join(sorted(SURVEYS))}") from None
