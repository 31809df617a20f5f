"""Benchmark: strong-lens image simulation throughput, skysift vs lenstronomy (and caustics).

One command, from the repository root::

    .venv/bin/python benchmarks/lenses.py [--device cuda] [--n 4096] [--batch 512]

Measures images per second per core (``torch.set_num_threads(1)``; pin with
``taskset -c 0``) for 64x64 stamps: SIE + external shear ray shooting, Sersic
source, Sersic lens light, LSST Moffat PSF (31x31, FFT) and noise, float32, with
(a) uniform supersampling 3 (every pixel on a 3x3 sub-grid) and (b) adaptive
supersampling 3 (3x3 only where the surface brightness needs it, see
``LensSimulator`` Notes; its worst pixel error against uniform ss=3 over 300
draws is printed). Then lenstronomy's ``ImageModel`` (same PSF kernel,
supersampling 3 and 1, noise added) and caustics' ``LensSource`` (batched with
``torch.vmap`` over its parameters) in the same run, and the ratios.

Rates are the median over repeats of images / CPU-seconds of this process
(``time.process_time``), so that other jobs on a shared machine do not count
against us; wall-clock rates are printed beside them. On ``--device cuda`` the
skysift figure is wall-clock on the GPU. The untimed warm-up compiles the
``torch.compile`` kernels: several minutes when inductor's on-disk cache is cold.
On a shared machine the CPU-time rates still vary by ~10 % from run to run
(other processes on the sibling hyperthread and in the shared caches).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from skysift.lens.simulator import LensSimulator, ellipticity_from_q_phi, magnitude_to_flux, sersic_amplitude

SIZE, SUPERSAMPLING = 64, 3


def time_skysift(device: str, n: int, batch: int, compile: bool, adaptive: bool) -> tuple[float, float]:
    """Median (CPU-time, wall-clock) rates over batches of ``batch`` images, ``n`` images in all."""
    chunk = (64 if adaptive else 16) if device == "cpu" else None
    simulator = LensSimulator("lsst", SIZE, SUPERSAMPLING, device=device, compile=compile, chunk_size=chunk,
                              adaptive_supersampling=adaptive)
    rng = np.random.default_rng(0)
    for _ in range(2):  # warm-up (and compilation, also of the dynamic-shape kernels)
        simulator.simulate(simulator.draw_parameters(batch, rng), rng)
    cpu, wall = [], []
    for _ in range(max(3, n // batch)):
        params = simulator.draw_parameters(batch, rng)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        simulator.simulate(params, rng)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start_wall)
    return batch / float(np.median(cpu)), batch / float(np.median(wall))


def adaptive_error(n: int = 300) -> float:
    """Worst pixel |adaptive - uniform| / image peak over ``n`` draws (float64, noise-free, with PSF)."""
    params = LensSimulator.draw_parameters(n, np.random.default_rng(123))
    uniform = LensSimulator("lsst", SIZE, SUPERSAMPLING, dtype=torch.float64).render(params)
    adaptive = LensSimulator("lsst", SIZE, SUPERSAMPLING, dtype=torch.float64, adaptive_supersampling=True).render(params)
    return float(((adaptive - uniform).abs().amax(dim=(1, 2)) / uniform.amax(dim=(1, 2))).max())


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

    start = time.process_time()
    for i in range(n):
        e1, e2 = ellipticity_from_q_phi(params["q"][i], params["phi"][i])
        xl, yl = params["x_lens"][i], params["y_lens"][i]
        kwargs_lens = [{"theta_E": params["theta_E"][i], "e1": e1, "e2": e2, "center_x": xl, "center_y": yl},
                       {"gamma1": params["gamma1"][i], "gamma2": params["gamma2"][i], "ra_0": xl, "dec_0": yl}]
        image = model.image(kwargs_lens, [light(i, "source", xl + params["x_src"][i], yl + params["y_src"][i])],
                            [light(i, "lens", xl, yl)])
        image = image + rng.normal(0.0, sigma_sky, image.shape)  # noise, as cheaply as possible
    return n / (time.process_time() - start)


def time_caustics(n: int, batch: int = 64) -> float:
    """caustics' LensSource, batched: ``torch.vmap`` over a (batch, n_params) array of its dynamic parameters."""
    import caustics

    cosmology = caustics.FlatLambdaCDM(name="cosmo")
    lens = caustics.SIE(cosmology=cosmology, name="lens", z_l=0.5, z_s=1.5, x0=0.0, y0=0.0, q=0.7, phi=0.3, Rein=1.5)
    source = caustics.Sersic(name="source", x0=0.1, y0=0.1, q=0.7, phi=0.5, n=1.0, Re=0.3, Ie=1.0)
    light = caustics.Sersic(name="lenslight", x0=0.0, y0=0.0, q=0.8, phi=0.1, n=4.0, Re=1.0, Ie=0.5)
    psf = torch.as_tensor(LensSimulator("lsst", SIZE, SUPERSAMPLING).psf_kernel, dtype=torch.float32)
    simulator = caustics.LensSource(lens=lens, source=source, lens_light=light, psf=psf, pixelscale=0.2,
                                    pixels_x=SIZE, quad_level=SUPERSAMPLING)
    for module, names in ((lens, ("x0", "y0", "q", "phi", "Rein")),
                          (source, ("x0", "y0", "q", "phi", "n", "Re", "Ie")),
                          (light, ("x0", "y0", "q", "phi", "n", "Re", "Ie"))):
        for name in names:
            getattr(module, name).to_dynamic()
    values = simulator.get_values()
    # Small per-image jitter: distinct systems, all valid parameters.
    generator = torch.Generator().manual_seed(0)
    batched = values[None] * (1.0 + 0.05 * torch.rand(batch, values.shape[0], generator=generator))
    render = torch.vmap(simulator)
    render(batched)
    times = []
    for _ in range(max(3, n // batch)):
        start = time.process_time()
        render(batched)
        times.append(time.process_time() - start)
    return batch / float(np.median(times))


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
    print(f"64x64, SIE+shear ray shooting, Sersic source, Sersic lens light, LSST Moffat PSF (31x31, FFT), "
          "noise; float32; rates = images per CPU-second of one thread (wall-clock in brackets)")
    error = adaptive_error()
    rates: dict[str, float] = {}
    walls: dict[str, float] = {}
    variants = [(False, False), (True, False)] + ([] if args.no_compile else [(False, True), (True, True)])
    for adaptive, compiled in variants:
        name = (f"skysift {'adaptive' if adaptive else 'uniform'} ss=3 {'compiled' if compiled else 'eager'}")
        rates[name], walls[name] = time_skysift(args.device, args.n, args.batch, compile=compiled, adaptive=adaptive)
    try:
        rates["lenstronomy ss=3"] = time_lenstronomy(3, args.n_reference)
        rates["lenstronomy ss=1"] = time_lenstronomy(1, args.n_reference)
    except ImportError:
        print("lenstronomy not installed: pip install lenstronomy")
    try:
        rates["caustics ss=3 (vmap batch of 64)"] = time_caustics(args.n_reference)
    except ImportError:
        print("caustics not installed (pip install caustics, only if it keeps this torch)")
    except Exception as exc:  # its API changes between releases; do not lose the other numbers
        print(f"caustics failed: {type(exc).__name__}: {exc}")
    best_uniform = max(v for k, v in rates.items() if k.startswith("skysift uniform"))
    best_adaptive = max(v for k, v in rates.items() if k.startswith("skysift adaptive"))
    for name, rate in rates.items():
        wall = f"({walls[name]:8.1f} wall)" if name in walls else " " * 15
        print(f"{name:40s} {rate:9.1f} {wall} {unit}   uniform-best/this = {best_uniform / rate:6.1f}"
              f"   adaptive-best/this = {best_adaptive / rate:6.1f}")
    print(f"adaptive supersampling 3 (only where needed; max pixel error vs full ss=3 = {100 * error:.3f}% of peak, "
          "300 draws)")
    for label, best in (("uniform ss=3", best_uniform), ("adaptive ss=3", best_adaptive)):
        print(f"target >= 10000 images/s per core, {label}: {'met' if best >= 1e4 else 'NOT met'} ({best:.0f})")


if __name__ == "__main__":
    main()
