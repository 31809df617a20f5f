"""Benchmark: strong-lens image simulation throughput, skysift vs lenstronomy (and caustics).

One command, from the repository root::

    .venv/bin/python benchmarks/lenses.py [--device cuda] [--n 4096] [--batch 512]

Measures images per second per core (``torch.set_num_threads(1)``) for 64x64
stamps, supersampling 3, SIE + shear + Sersic source + Sersic lens light,
PSF convolution and noise included, in float32; then lenstronomy's
``ImageModel`` (same PSF kernel, supersampling 3 and 1, noise added) and
caustics' ``LensSource`` (if installed) in the same run, and prints the ratios.
On ``--device cuda`` the skysift figure is for the GPU (all threads).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from skysift.lens.simulator import LensSimulator, ellipticity_from_q_phi, magnitude_to_flux, sersic_amplitude

SIZE, SUPERSAMPLING = 64, 3


def time_skysift(device: str, n: int, batch: int, compile: bool) -> float:
    simulator = LensSimulator("lsst", SIZE, SUPERSAMPLING, device=device, compile=compile,
                              chunk_size=16 if device == "cpu" else None)
    rng = np.random.default_rng(0)
    params = simulator.draw_parameters(batch, rng)
    simulator.simulate(params, rng)  # warm-up (and compilation)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    done = 0
    while done < n:
        params = simulator.draw_parameters(batch, rng)
        simulator.simulate(params, rng)
        done += batch
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return done / (time.perf_counter() - start)


def time_lenstronomy(supersampling: int, n: int) -> float:
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel

    simulator = LensSimulator("lsst", SIZE, supersampling, dtype=torch.float64)
    pixel = simulator.survey.pixel_scale
    origin = -(SIZE - 1) / 2.0 * pixel
    data = ImageData(image_data=np.zeros((SIZE, SIZE)), ra_at_xy_0=origin, dec_at_xy_0=origin,
                     transform_pix2angle=np.diag([pixel, pixel]))
    model = ImageModel(
        data, PSF(psf_type="PIXEL", kernel_point_source=simulator.psf_kernel),
        lens_model_class=LensModel(["SIE", "SHEAR"]),
        source_model_class=LightModel(["SERSIC_ELLIPSE"]),
        lens_light_model_class=LightModel(["SERSIC_ELLIPSE"]),
        kwargs_numerics={"supersampling_factor": supersampling, "supersampling_convolution": False,
                         "convolution_type": "fft"},
    )
    rng = np.random.default_rng(1)
    params = simulator.draw_parameters(n, rng)
    zp = simulator.survey.zero_point
    sigma_sky = np.sqrt(simulator.survey.background_variance)

    def light(i: int, prefix: str, cx: float, cy: float) -> dict:
        e1, e2 = ellipticity_from_q_phi(params[f"{prefix}_q"][i], params[f"{prefix}_phi"][i])
        amp = sersic_amplitude(magnitude_to_flux(params[f"{prefix}_mag"][i], zp), params[f"{prefix}_r_eff"][i],
                               params[f"{prefix}_n"][i], "capaccioli")
        return {"amp": float(amp), "R_sersic": params[f"{prefix}_r_eff"][i], "n_sersic": params[f"{prefix}_n"][i],
                "e1": e1, "e2": e2, "center_x": cx, "center_y": cy}

    start = time.perf_counter()
    for i in range(n):
        e1, e2 = ellipticity_from_q_phi(params["q"][i], params["phi"][i])
        xl, yl = params["x_lens"][i], params["y_lens"][i]
        kwargs_lens = [{"theta_E": params["theta_E"][i], "e1": e1, "e2": e2, "center_x": xl, "center_y": yl},
                       {"gamma1": params["gamma1"][i], "gamma2": params["gamma2"][i], "ra_0": xl, "dec_0": yl}]
        image = model.image(kwargs_lens, [light(i, "source", xl + params["x_src"][i], yl + params["y_src"][i])],
                            [light(i, "lens", xl, yl)])
        image = image + rng.normal(0.0, sigma_sky, image.shape)  # noise, as cheaply as possible
    return n / (time.perf_counter() - start)


def time_caustics(n: int) -> float:
    import caustics

    cosmology = caustics.FlatLambdaCDM(name="cosmo")
    lens = caustics.SIE(cosmology=cosmology, name="lens", z_l=0.5, z_s=1.5, x0=0.0, y0=0.0, q=0.7, phi=0.3, Rein=1.5)
    source = caustics.Sersic(name="source", x0=0.1, y0=0.1, q=0.7, phi=0.5, n=1.0, Re=0.3, Ie=1.0)
    light = caustics.Sersic(name="lenslight", x0=0.0, y0=0.0, q=0.8, phi=0.1, n=4.0, Re=1.0, Ie=0.5)
    psf = torch.as_tensor(LensSimulator("lsst", SIZE, SUPERSAMPLING).psf_kernel, dtype=torch.float32)
    simulator = caustics.LensSource(lens=lens, source=source, lens_light=light, psf=psf, pixelscale=0.2,
                                    pixels_x=SIZE, quad_level=SUPERSAMPLING)
    simulator()
    start = time.perf_counter()
    for _ in range(n):
        simulator()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=4096, help="images timed for skysift")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--n-reference", type=int, default=100, help="images timed for the references")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available")
    if args.device == "cpu":
        torch.set_num_threads(1)
    unit = "images/s per core" if args.device == "cpu" else f"images/s on {args.device}"
    print(f"64x64, supersampling {SUPERSAMPLING}, SIE+shear, Sersic source and lens light, PSF, noise; float32")
    rates = {"skysift eager": time_skysift(args.device, args.n, args.batch, compile=False)}
    if not args.no_compile:
        rates["skysift compiled"] = time_skysift(args.device, args.n, args.batch, compile=True)
    try:
        rates["lenstronomy ss=3"] = time_lenstronomy(3, args.n_reference)
        rates["lenstronomy ss=1"] = time_lenstronomy(1, args.n_reference)
    except ImportError:
        print("lenstronomy not installed: pip install lenstronomy")
    try:
        rates["caustics ss=3 (one image per call)"] = time_caustics(args.n_reference)
    except ImportError:
        print("caustics not installed (pip install caustics, only if it keeps this torch)")
    except Exception as exc:  # its API changes between releases; do not lose the other numbers
        print(f"caustics failed: {type(exc).__name__}: {exc}")
    best = max(v for k, v in rates.items() if k.startswith("skysift"))
    for name, rate in rates.items():
        print(f"{name:40s} {rate:10.1f} {unit}   skysift-best / this = {best / rate:8.1f}")
    print(f"target >= 10000 images/s per core: {'met' if best >= 1e4 else 'NOT met'} ({best:.0f})")


if __name__ == "__main__":
    main()
