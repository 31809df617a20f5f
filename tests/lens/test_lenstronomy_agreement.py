"""Pixel-level agreement of the skysift lens simulator with lenstronomy (test-only reference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skysift.lens.simulator import (
    LensSimulator,
    ellipticity_from_q_phi,
    magnitude_to_flux,
    sersic_amplitude,
)

lenstronomy = pytest.importorskip("lenstronomy")

from lenstronomy.Data.imaging_data import ImageData  # noqa: E402
from lenstronomy.Data.psf import PSF  # noqa: E402
from lenstronomy.ImSim.image_model import ImageModel  # noqa: E402
from lenstronomy.LensModel.lens_model import LensModel  # noqa: E402
from lenstronomy.LightModel.light_model import LightModel  # noqa: E402

N_DRAWS = 50
SIZE = 48
SUPERSAMPLING = 3


def lenstronomy_kwargs(
    params: dict[str, np.ndarray], i: int, zero_point: float, bn_method: str
) -> tuple[list, list, list]:
    """Translate one skysift parameter set into lenstronomy keyword lists."""
    e1, e2 = ellipticity_from_q_phi(params["q"][i], params["phi"][i])
    x_lens, y_lens = params["x_lens"][i], params["y_lens"][i]
    kwargs_lens = [
        {"theta_E": params["theta_E"][i], "e1": e1, "e2": e2, "center_x": x_lens, "center_y": y_lens},
        {"gamma1": params["gamma1"][i], "gamma2": params["gamma2"][i], "ra_0": x_lens, "dec_0": y_lens},
    ]

    def sersic(prefix: str, cx: float, cy: float) -> dict:
        s_e1, s_e2 = ellipticity_from_q_phi(params[f"{prefix}_q"][i], params[f"{prefix}_phi"][i])
        flux = magnitude_to_flux(params[f"{prefix}_mag"][i], zero_point)
        amp = sersic_amplitude(flux, params[f"{prefix}_r_eff"][i], params[f"{prefix}_n"][i], bn_method)
        return {
            "amp": float(amp),
            "R_sersic": params[f"{prefix}_r_eff"][i],
            "n_sersic": params[f"{prefix}_n"][i],
            "e1": s_e1,
            "e2": s_e2,
            "center_x": cx,
            "center_y": cy,
        }

    kwargs_source = [sersic("source", x_lens + params["x_src"][i], y_lens + params["y_src"][i])]
    kwargs_light = [sersic("lens", x_lens, y_lens)]
    return kwargs_lens, kwargs_source, kwargs_light


@pytest.mark.parametrize(
    ("with_psf", "bn_method", "tolerance", "adaptive"),
    [
        # lenstronomy's own b_n: the geometry and photometry must agree to rounding.
        (False, "capaccioli", 1e-6, False),
        (True, "capaccioli", 1e-6, False),
        # Our default (Ciotti & Bertin b_n): within 1 % of the peak.
        (False, "ciotti-bertin", 0.01, False),
        (True, "ciotti-bertin", 0.01, False),
        # Adaptive supersampling (3x3 only where needed) against lenstronomy's uniform ss=3.
        (False, "capaccioli", 0.01, True),
    ],
    ids=["exact-no-psf", "exact-psf", "default-no-psf", "default-psf", "adaptive-no-psf"],
)
def test_pixels_agree_with_lenstronomy(with_psf: bool, bn_method: str, tolerance: float, adaptive: bool) -> None:
    simulator = LensSimulator(
        "lsst",
        SIZE,
        SUPERSAMPLING,
        psf="survey" if with_psf else None,
        dtype=torch.float64,
        sersic_bn_method=bn_method,
        adaptive_supersampling=adaptive,
    )
    pixel = simulator.survey.pixel_scale
    rng = np.random.default_rng(2024)
    params = simulator.draw_parameters(N_DRAWS, rng)
    ours = simulator.render(params).numpy()

    origin = -(SIZE - 1) / 2.0 * pixel
    data = ImageData(
        image_data=np.zeros((SIZE, SIZE)),
        ra_at_xy_0=origin,
        dec_at_xy_0=origin,
        transform_pix2angle=np.array([[pixel, 0.0], [0.0, pixel]]),
    )
    if with_psf:
        psf = PSF(psf_type="PIXEL", kernel_point_source=simulator.psf_kernel)
    else:
        psf = PSF(psf_type="NONE")
    model = ImageModel(
        data,
        psf,
        lens_model_class=LensModel(["SIE", "SHEAR"]),
        source_model_class=LightModel(["SERSIC_ELLIPSE"]),
        lens_light_model_class=LightModel(["SERSIC_ELLIPSE"]),
        kwargs_numerics={
            "supersampling_factor": SUPERSAMPLING,
            "supersampling_convolution": False,
            # scipy fftconvolve; lenstronomy's default fft_static trips a numpy 2 DeprecationWarning
            "convolution_type": "fft",
        },
    )
    worst = 0.0
    for i in range(N_DRAWS):
        kwargs_lens, kwargs_source, kwargs_light = lenstronomy_kwargs(
            params, i, simulator.survey.zero_point, bn_method
        )
        reference = model.image(kwargs_lens, kwargs_source, kwargs_light)
        worst = max(worst, float(np.max(np.abs(ours[i] - reference)) / np.max(reference)))
    assert worst < tolerance, f"largest difference {worst:.2e} of the image peak"


def test_arc_alone_agrees_with_lenstronomy() -> None:
    """The lensed source alone (no lens light, which dominates the peak), float32, other survey."""
    simulator = LensSimulator("hsc", SIZE, SUPERSAMPLING, psf=None, dtype=torch.float32, sersic_bn_method="capaccioli")
    pixel = simulator.survey.pixel_scale
    params = simulator.draw_parameters(20, np.random.default_rng(5))
    arc, _, _ = simulator.render_components(params)
    origin = -(SIZE - 1) / 2.0 * pixel
    data = ImageData(
        image_data=np.zeros((SIZE, SIZE)),
        ra_at_xy_0=origin,
        dec_at_xy_0=origin,
        transform_pix2angle=np.array([[pixel, 0.0], [0.0, pixel]]),
    )
    model = ImageModel(
        data,
        PSF(psf_type="NONE"),
        lens_model_class=LensModel(["SIE", "SHEAR"]),
        source_model_class=LightModel(["SERSIC_ELLIPSE"]),
        kwargs_numerics={"supersampling_factor": SUPERSAMPLING},
    )
    for i in range(20):
        kwargs_lens, kwargs_source, _ = lenstronomy_kwargs(params, i, simulator.survey.zero_point, "capaccioli")
        reference = model.image(kwargs_lens, kwargs_source)
        # float32 rounding of the deflection near the critical curve: 1e-3 of the arc peak.
        np.testing.assert_allclose(arc[i].numpy(), reference, rtol=0, atol=1e-3 * reference.max())
